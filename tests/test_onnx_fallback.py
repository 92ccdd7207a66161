"""Operators pylstm does not implement run through ONNX Runtime (runtime/ops/ort_fallback.py),
the recurrent nodes staying on pylstm's engine; without onnxruntime they are refused naming the
operator and what to install.

Whole models are compared with ONNX Runtime running the same file: float32 outputs of unit scale
within 3e-5 (ARCHITECTURE.md, Tolerances; the LSTM runs on pylstm's engine, whose arithmetic
order differs from ONNX Runtime's).
"""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper

import pylstm
from pylstm.assemble import from_onnx_model
from pylstm.runtime.graph import ORT_GROUP
from pylstm.runtime.graph_recurrent import OnnxRecurrent

TOL = 3e-5
rng = np.random.default_rng(11)
I, H, O = 6, 8, 5


def _ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _model(extra_nodes, outputs, extra_inits=(), opsets=()):
    """X [T, B, I] -> LSTM -> Squeeze -> Ys [T, B, H], then ``extra_nodes``."""
    W = (rng.normal(size=(1, 4 * H, I)) * 0.8).astype(np.float32)
    R = (rng.normal(size=(1, 4 * H, H)) * 0.8).astype(np.float32)
    B = rng.normal(size=(1, 8 * H)).astype(np.float32)
    nodes = [
        helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Y_h"], "lstm", hidden_size=H),
        helper.make_node("Squeeze", ["Y", "one"], ["Ys"], "squeeze"),
        *extra_nodes,
    ]
    inits = [
        numpy_helper.from_array(W, "W"),
        numpy_helper.from_array(R, "R"),
        numpy_helper.from_array(B, "B"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        *extra_inits,
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", I])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        inits,
    )
    ops = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, v) for d, v in opsets)]
    return helper.make_model(graph, opset_imports=ops, ir_version=8)


def _head():
    """Ys -> com.microsoft FusedMatMul -> Shrink -> Sinh (three operators pylstm lacks, adjacent:
    one ONNX Runtime session) -> Add (numpy)."""
    nodes = [
        helper.make_node(
            "FusedMatMul", ["Ys", "Wfc"], ["z"], "fc", domain="com.microsoft", alpha=0.5
        ),
        helper.make_node("Shrink", ["z"], ["s"], "shrink", lambd=0.2, bias=0.1),
        helper.make_node("Sinh", ["s"], ["t"], "sinh"),
        helper.make_node("Add", ["t", "bfc"], ["out"], "add"),
    ]
    inits = [
        numpy_helper.from_array(rng.normal(size=(H, O)).astype(np.float32), "Wfc"),
        numpy_helper.from_array(rng.normal(size=O).astype(np.float32), "bfc"),
    ]
    return _model(nodes, ["out", "Y_h"], inits, [("com.microsoft", 1)])


def test_unimplemented_operators_run_in_onnxruntime():
    m = _head()
    model = from_onnx_model(m)
    nodes = model._graph.nodes
    assert [n.op_type for n in nodes] == ["LSTM", "Squeeze", ORT_GROUP, "Add"]
    assert isinstance(nodes[0].run, OnnxRecurrent)  # the LSTM runs on pylstm's engine
    assert "fc (FusedMatMul)" in nodes[2].name and "sinh (Sinh)" in nodes[2].name
    for T, B in ((7, 3), (1, 1), (12, 5)):
        x = rng.normal(size=(T, B, I)).astype(np.float32)
        ours = model.run(None, {"X": x})
        theirs = _ort(m, {"X": x})
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=TOL, atol=TOL)
    x = rng.normal(size=(4, 2, I)).astype(np.float64)  # another feed type: cast as declared
    np.testing.assert_allclose(
        model.run(["out"], {"X": x})[0],
        _ort(m, {"X": x.astype(np.float32)})[0],
        rtol=TOL,
        atol=TOL,
    )


def test_fallback_models_pickle():
    m = _head()
    model = from_onnx_model(m)
    x = rng.normal(size=(5, 2, I)).astype(np.float32)
    before = model.run(None, {"X": x})
    again = pickle.loads(pickle.dumps(model))
    for a, b in zip(again.run(None, {"X": x}), before):
        np.testing.assert_array_equal(a, b)


def test_fallback_nodes_do_not_stream():
    """pylstm cannot tell how an operator it does not implement treats the time axis."""
    model = from_onnx_model(_head())
    with pytest.raises(ValueError, match=r"cannot stream.*FusedMatMul.*time axis"):
        model.stream(2)
    # what does not depend on them still streams
    assert from_onnx_model(_head()).stream(2, output_names=["Y_h"]) is not None


def test_without_onnxruntime(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    with pytest.raises(pylstm.UnsupportedError, match=r"FusedMatMul.*com.microsoft.*pip install"):
        from_onnx_model(_head())
    m = _model([helper.make_node("LpNormalization", ["Ys"], ["n"], "norm")], ["n"])
    with pytest.raises(pylstm.UnsupportedError, match=r"LpNormalization.*norm.*onnxruntime"):
        from_onnx_model(m)
    # what pylstm implements runs without it
    m = _model([helper.make_node("Tanh", ["Ys"], ["t"])], ["t"])
    x = rng.normal(size=(3, 2, I)).astype(np.float32)
    monkeypatch.delitem(sys.modules, "onnxruntime")
    expected = _ort(m, {"X": x})[0]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    np.testing.assert_allclose(from_onnx_model(m).run(None, {"X": x})[0], expected, atol=TOL)


def test_unpickled_without_onnxruntime(monkeypatch):
    data = pickle.dumps(from_onnx_model(_head()))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    model = pickle.loads(data)
    with pytest.raises(pylstm.UnsupportedError, match="pip install onnxruntime"):
        model.run(None, {"X": np.zeros((2, 1, I), np.float32)})


def test_operators_nobody_implements():
    m = _model([helper.make_node("NoSuchOp", ["Ys"], ["n"], "mystery", domain="my.ops")], ["n"])
    m.opset_import.append(helper.make_opsetid("my.ops", 1))
    with pytest.raises(pylstm.UnsupportedError, match=r"NoSuchOp.*my.ops.*neither"):
        from_onnx_model(m)


def _loop_body():
    """Loop body: acc <- acc * decay + Ys[i] (the outer Ys and decay read from the enclosing
    graph)."""
    nodes = [
        helper.make_node("Gather", ["Ys", "i"], ["step"], axis=0),
        helper.make_node("Mul", ["acc_in", "decay"], ["scaled"]),
        helper.make_node("Add", ["scaled", "step"], ["acc_out"]),
        helper.make_node("Identity", ["cond_in"], ["cond_out"]),
    ]
    return helper.make_graph(
        nodes,
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, None),
        ],
    )


def test_loop_runs_in_onnxruntime():
    """A Loop over the LSTM's steps (outer-scope reads included) runs in ONNX Runtime."""
    nodes = [
        helper.make_node("Shape", ["Ys"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["T"], axis=0),
        helper.make_node("Gather", ["Ys", "zero"], ["acc0"], axis=0),
        helper.make_node("Mul", ["acc0", "zerof"], ["acc_init"]),
        helper.make_node("Loop", ["T", "", "acc_init"], ["acc"], "loop", body=_loop_body()),
    ]
    inits = [
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zerof"),
        numpy_helper.from_array(np.array(0.7, np.float32), "decay"),
    ]
    m = _model(nodes, ["acc", "Y_h"], inits)
    model = from_onnx_model(m)
    assert ORT_GROUP in [n.op_type for n in model._graph.nodes]
    x = rng.normal(size=(6, 3, I)).astype(np.float32)
    for a, b in zip(model.run(None, {"X": x}), _ort(m, {"X": x})):
        np.testing.assert_allclose(a, b, rtol=TOL, atol=TOL)


def test_scan_runs_in_onnxruntime():
    body = helper.make_graph(
        [
            helper.make_node("Add", ["s_in", "x_t"], ["s_out"]),
            helper.make_node("Identity", ["s_out"], ["y_t"]),
        ],
        "scan_body",
        [
            helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [None, H]),
            helper.make_tensor_value_info("x_t", TensorProto.FLOAT, [None, H]),
        ],
        [
            helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [None, H]),
            helper.make_tensor_value_info("y_t", TensorProto.FLOAT, [None, H]),
        ],
    )
    nodes = [
        helper.make_node("Gather", ["Ys", "zero"], ["first"], axis=0),
        helper.make_node(
            "Scan", ["first", "Ys"], ["final", "cums"], "scan", body=body, num_scan_inputs=1
        ),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero")]
    m = _model(nodes, ["final", "cums"], inits)
    model = from_onnx_model(m)
    x = rng.normal(size=(5, 2, I)).astype(np.float32)
    for a, b in zip(model.run(None, {"X": x}), _ort(m, {"X": x})):
        np.testing.assert_allclose(a, b, rtol=TOL, atol=TOL)


def test_scripted_lstmcell_loop(tmp_path):
    """``torch.jit.script`` + the TorchScript exporter puts an LSTMCell-in-a-loop in a ``Loop``
    carrying an ONNX sequence (SequenceEmpty -> Loop -> ConcatFromSequence): ONNX Runtime runs
    the three as one session (the cell's steps are in the Loop body, so not on pylstm's
    engine), for any length. (Tracing unrolls the loop at the export length instead, in
    operators pylstm implements.)"""
    torch = pytest.importorskip("torch")

    class Cells(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = torch.nn.LSTMCell(I, H)
            self.hidden = H

        def forward(self, x):
            h = torch.zeros(x.shape[1], self.hidden)
            c = torch.zeros(x.shape[1], self.hidden)
            ys = []
            for t in range(x.shape[0]):
                h, c = self.cell(x[t], (h, c))
                ys.append(h)
            return torch.stack(ys)

    path = str(tmp_path / "cells.onnx")
    torch.onnx.export(
        torch.jit.script(Cells().eval()),
        (torch.randn(4, 2, I),),
        path,
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "T", 1: "B"}},
    )
    model = pylstm.load(path)
    assert [n.op_type for n in model._graph.nodes].count(ORT_GROUP) == 1
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for T in (4, 9):
        x = rng.normal(size=(T, 3, I)).astype(np.float32)
        np.testing.assert_allclose(
            model.run(None, {"x": x})[0], sess.run(None, {"x": x})[0], rtol=TOL, atol=TOL
        )
