"""Whole ONNX models through ``pylstm.load``: PyTorch exports (torch.onnx.export, TorchScript
exporter) and a hand-built graph in the style of tf2onnx, against ONNX Runtime on other batch
sizes and lengths than at export; ``run``/``get_inputs``/``get_outputs`` as ONNX Runtime's;
files with external data; and every way loading or running can fail (corrupt and truncated
files, missing external data, unsupported operators, weights computed at run time, bad feeds,
no onnx package).

Tolerance against ONNX Runtime: 3e-5 absolute for unit-scale float32 outputs, scaled by the
row's largest magnitude for unbounded ones (Linear heads); bf16/int8 weights 3e-2/6e-2.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper
from onnx_model_helpers import (
    ATOL,
    EXPORTS,
    _tf2onnx_style_model,
    export,
    ort_session,
)
from onnx_oracle import assert_close, make_model, random_case

import pylstm
from pylstm.assemble import from_onnx_model


@pytest.mark.parametrize("name", list(EXPORTS))
def test_exported_pytorch_models_match_onnxruntime(tmp_path, name):
    path, names, batch_first, _, layers, embed = export(tmp_path, name)
    model = pylstm.load(path)
    session = ort_session(path)
    assert [a.name for a in model.get_inputs()] == [a.name for a in session.get_inputs()]
    assert [a.name for a in model.get_outputs()] == [a.name for a in session.get_outputs()]
    for a, b in zip(model.get_inputs(), session.get_inputs()):
        assert (a.shape, a.type) == (b.shape, b.type)
    rng = np.random.default_rng(1)
    for batch, steps in ((1, 1), (5, 13), (3, 40)):  # export was batch 2, 3 steps
        shape = (batch, steps) if batch_first or embed else (steps, batch)
        if embed:
            x = rng.integers(0, 30, size=shape).astype(np.int64)
        else:
            x = rng.normal(size=(*shape, 6)).astype(np.float32)
        feeds = {"x": x}
        for state in names[1:]:
            feeds[state] = rng.uniform(-1, 1, size=(layers, batch, 8)).astype(np.float32)
        got = model.run(None, feeds)
        want = session.run(None, feeds)
        for out, g, w in zip(model.get_outputs(), got, want):
            assert g.dtype == w.dtype
            assert_close(g, w, atol=ATOL, what=f"{name} {out.name} B={batch} T={steps}")
        # a subset of outputs, in another order
        names_out = [o.name for o in model.get_outputs()][::-1][:2]
        for g, w in zip(model.run(names_out, feeds), session.run(names_out, feeds)):
            assert_close(g, w, atol=ATOL, what=f"{name} reordered outputs")


def test_tf2onnx_style_graph_with_mask_lengths_matches_onnxruntime():
    rng = np.random.default_rng(2)
    model = _tf2onnx_style_model(rng)
    ours, session = from_onnx_model(model), ort_session(model)
    for batch, steps in ((1, 3), (4, 9)):
        x = rng.normal(size=(batch, steps, 4)).astype(np.float32)
        for b in range(batch):  # Keras masking pads at the end with zeros
            x[b, rng.integers(1, steps + 1) :] = 0
        got, want = ours.run(None, {"x": x}), session.run(None, {"x": x})
        for g, w in zip(got, want):
            assert_close(g, w, atol=ATOL, what=f"tf2onnx-style B={batch} T={steps}")


def test_weights_from_constant_subgraphs_are_folded():
    """W given as a Constant node, R as Transpose(initializer), B as Concat of two halves."""
    rng = np.random.default_rng(3)
    arrays = random_case("GRU", rng, H=5, I=4)
    r_t = np.ascontiguousarray(arrays["R"].transpose(0, 2, 1))
    nodes = [
        helper.make_node("Constant", [], ["W"], value=numpy_helper.from_array(arrays["W"])),
        helper.make_node("Transpose", ["R_t"], ["R"], perm=[0, 2, 1]),
        helper.make_node("Concat", ["Bw", "Br"], ["B"], axis=1),
        helper.make_node("GRU", ["X", "W", "R", "B"], ["Y", "Y_h"], hidden_size=5),
    ]
    inits = [
        numpy_helper.from_array(r_t, "R_t"),
        numpy_helper.from_array(arrays["B"][:, :15], "Bw"),
        numpy_helper.from_array(arrays["B"][:, 15:], "Br"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, None, 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y", "Y_h")],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    got = from_onnx_model(model).run(None, {"X": arrays["X"]})
    want = ort_session(model).run(None, {"X": arrays["X"]})
    for g, w in zip(got, want):
        assert_close(g, w, atol=ATOL, what="folded weights")


def test_outputs_are_owned_by_the_caller():
    rng = np.random.default_rng(11)
    model = make_model("RNN", random_case("RNN", rng), {})
    model.graph.output.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, None))
    ours = from_onnx_model(model)
    x = rng.normal(size=(5, 3, 4)).astype(np.float32)
    w1 = ours.run(["W"], {"X": x})[0]
    w1[...] = 0
    assert np.abs(ours.run(["W"], {"X": x})[0]).max() > 0


@pytest.mark.parametrize(("precision", "atol"), [("bf16", 3e-2), ("int8", 6e-2)])
def test_reduced_precision_weights(tmp_path, precision, atol):
    """bf16 keeps 8 bits of mantissa, int8 about 7 bits per row: errors of a few 1e-2 after
    saturating gates (weights only; states and sums stay float32)."""
    rng = np.random.default_rng(12)
    arrays = random_case("LSTM", rng, T=8, B=2, I=16, H=32, scale=1.0)
    path = tmp_path / "m.onnx"
    onnx.save(make_model("LSTM", arrays, {}), str(path))
    got = pylstm.load(path, precision=precision).run(None, {"X": arrays["X"]})
    want = ort_session(str(path)).run(None, {"X": arrays["X"]})
    for g, w in zip(got, want):
        assert_close(g, w, atol=atol, what=precision)
    with pytest.raises(TypeError, match="prefix"):
        pylstm.load(path, prefix="x")


def test_concurrent_runs_from_threads():
    rng = np.random.default_rng(13)
    arrays = random_case("GRU", rng, T=20, B=4, H=16, I=8, direction="bidirectional")
    model = from_onnx_model(make_model("GRU", arrays, {"direction": "bidirectional"}))
    inputs = [rng.normal(size=(20, 4, 8)).astype(np.float32) for _ in range(4)]
    expected = [model.run(None, {"X": x}) for x in inputs]
    results = [None] * 4

    def work(k):
        for _ in range(10):
            results[k] = model.run(None, {"X": inputs[k]})

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
