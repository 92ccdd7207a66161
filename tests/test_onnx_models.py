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

import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from child_process import child_env
from onnx import TensorProto, helper, numpy_helper
from onnx_oracle import assert_close, make_model, random_case

import pylstm
from pylstm.assemble import from_onnx_model

ATOL = 3e-5


def ort_session(path_or_model):
    options = ort.SessionOptions()
    options.log_severity_level = 4
    src = path_or_model if isinstance(path_or_model, str) else path_or_model.SerializeToString()
    return ort.InferenceSession(src, options, providers=["CPUExecutionProvider"])


def saturate(module, seed=0, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-1, 1, generator=gen).mul_(scale / max(p.shape[-1], 1) ** 0.5)
    return module.eval()


class Tagger(torch.nn.Module):
    """Embedding -> recurrent stack -> Linear head (+ softmax), states as extra outputs."""

    def __init__(self, cell, batch_first, embed=False, head=True, softmax=False, **kw):
        super().__init__()
        self.embed = torch.nn.Embedding(30, 6) if embed else None
        self.rnn = getattr(torch.nn, cell)(6, 8, batch_first=batch_first, **kw)
        out = 8 * (2 if kw.get("bidirectional") else 1)
        self.head = torch.nn.Linear(out, 5) if head else None
        self.softmax = softmax

    def forward(self, x, *state):
        if self.embed is not None:
            x = self.embed(x)
        hx = None
        if state:
            hx = tuple(state) if len(state) == 2 else state[0]
        y, st = self.rnn(x, hx)
        if self.head is not None:
            y = self.head(y)
        if self.softmax:
            y = torch.softmax(y, dim=-1)
        states = st if isinstance(st, tuple) else (st,)
        return (y, *states)


# fmt: off
EXPORTS = {
    # name: (cell, batch_first, kwargs, model options, opset, with initial state inputs)
    "lstm-2layer-bidirectional-batch_first-head": ("LSTM", True, {"num_layers": 2, "bidirectional": True}, {}, 14, False),
    "lstm-embedding-state_inputs-softmax": ("LSTM", True, {"num_layers": 2}, {"embed": True, "softmax": True}, 17, True),
    "gru-3layer-time_major": ("GRU", False, {"num_layers": 3}, {"head": False}, 9, False),
    "gru-bidirectional-state_input": ("GRU", True, {"bidirectional": True}, {}, 13, True),
    "rnn-relu-head": ("RNN", True, {"nonlinearity": "relu"}, {}, 11, False),
    "rnn-tanh-2layer-nobias": ("RNN", False, {"num_layers": 2, "bias": False}, {"head": False}, 7, True),
    "lstm-opset20": ("LSTM", False, {}, {}, 20, True),
}
# fmt: on


def export(tmp_path, name):
    cell, batch_first, kw, opts, opset, with_state = EXPORTS[name]
    module = saturate(Tagger(cell, batch_first, **opts, **kw), seed=len(name))
    layers = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    x = torch.randint(0, 30, (2, 3)) if opts.get("embed") else torch.randn(2, 3, 6)
    if not batch_first and not opts.get("embed"):
        x = x.transpose(0, 1).contiguous()
    args = [x]
    names = ["x"]
    batch_axis = 0 if batch_first else 1
    axes = {"x": {0: "batch", 1: "time"} if batch_first else {0: "time", 1: "batch"}}
    if with_state:
        args.append(torch.randn(layers, 2, 8))
        names.append("h0")
        axes["h0"] = {1: "batch"}
        if cell == "LSTM":
            args.append(torch.randn(layers, 2, 8))
            names.append("c0")
            axes["c0"] = {1: "batch"}
    outputs = ["y", "h_n"] + (["c_n"] if cell == "LSTM" else [])
    path = str(tmp_path / f"{name}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(args),
            path,
            dynamo=False,
            opset_version=opset,
            input_names=names,
            output_names=outputs,
            dynamic_axes=axes,
        )
    return path, names, batch_first, batch_axis, layers, opts.get("embed", False)


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


def _tf2onnx_style_model(rng, I=4, H=6, O=3):
    """The graph tf2onnx makes of Keras Masking -> LSTM(return_sequences) -> Dense: batch-major
    input transposed, sequence_lens from the mask (NotEqual as Equal+Not, Cast, ReduceSum),
    zero initial states from the batch size (Shape, Gather, Concat, ConstantOfShape/Expand),
    Y squeezed on the direction axis, Dense as MatMul + Add, Identity on the outputs."""
    G = 4
    k = 3 / np.sqrt(H)
    inits = [
        numpy_helper.from_array(rng.uniform(-k, k, (1, G * H, I)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.uniform(-k, k, (1, G * H, H)).astype(np.float32), "R"),
        numpy_helper.from_array(rng.uniform(-k, k, (1, 2 * G * H)).astype(np.float32), "B"),
        numpy_helper.from_array(rng.normal(size=(H, O)).astype(np.float32), "kernel"),
        numpy_helper.from_array(rng.normal(size=(O,)).astype(np.float32), "bias"),
        numpy_helper.from_array(np.zeros((), np.float32), "zero"),
        numpy_helper.from_array(np.array([1], np.int64), "one_i"),
        numpy_helper.from_array(np.array([1, 0, 2], np.int64), "perm_unused"),
        numpy_helper.from_array(np.array([0], np.int64), "idx0"),
        numpy_helper.from_array(np.array([H], np.int64), "hsize"),
        numpy_helper.from_array(np.array([1], np.int64), "axes1"),
        numpy_helper.from_array(np.array([2], np.int64), "axes2"),
    ]
    nodes = [
        helper.make_node("Equal", ["x", "zero"], ["is_pad_el"]),
        helper.make_node("Not", ["is_pad_el"], ["valid_el"]),
        helper.make_node("Cast", ["valid_el"], ["valid_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", ["valid_f"], ["valid_step"], axes=[2], keepdims=0),
        helper.make_node("ReduceSum", ["valid_step", "axes1"], ["len_f"], keepdims=0),
        helper.make_node("Cast", ["len_f"], ["seq_lens"], to=TensorProto.INT32),
        helper.make_node("Transpose", ["x"], ["x_tm"], perm=[1, 0, 2]),
        helper.make_node("Shape", ["x"], ["x_shape"]),
        helper.make_node("Gather", ["x_shape", "idx0"], ["batch"], axis=0),
        helper.make_node("Concat", ["one_i", "batch", "hsize"], ["state_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["state_shape"], ["h0"]),
        helper.make_node("Expand", ["zero", "state_shape"], ["c0"]),
        helper.make_node(
            "LSTM",
            ["x_tm", "W", "R", "B", "seq_lens", "h0", "c0"],
            ["Y", "Y_h", "Y_c"],
            hidden_size=H,
            name="lstm",
        ),
        helper.make_node("Squeeze", ["Y", "axes1"], ["y_sq"]),
        helper.make_node("Transpose", ["y_sq"], ["y_bm"], perm=[1, 0, 2]),
        helper.make_node("MatMul", ["y_bm", "kernel"], ["dense_mm"]),
        helper.make_node("Add", ["dense_mm", "bias"], ["dense"]),
        helper.make_node("Identity", ["dense"], ["out"]),
        helper.make_node("Squeeze", ["Y_h", "idx0"], ["state"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tf2onnx_style",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["unk__1", "unk__2", I])],
        [
            helper.make_tensor_value_info("out", TensorProto.FLOAT, ["unk__1", "unk__2", O]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, ["unk__1", H]),
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


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


def test_weights_computed_at_run_time_are_refused():
    rng = np.random.default_rng(4)
    arrays = random_case("LSTM", rng)
    model = make_model("LSTM", arrays, {}, runtime=("X", "W"))
    with pytest.raises(NotImplementedError, match=r"lstm0.*W.*load time"):
        from_onnx_model(model)


def test_unsupported_operator_is_named(tmp_path):
    rng = np.random.default_rng(5)
    model = make_model("RNN", random_case("RNN", rng), {})
    model.graph.node.append(helper.make_node("TopK", ["Y", "k"], ["v", "i"], name="my_topk"))
    path = str(tmp_path / "topk.onnx")
    onnx.save(model, path)
    with pytest.raises(pylstm.UnsupportedError, match=r"TopK.*my_topk"):
        pylstm.load(path)
    model = make_model("RNN", random_case("RNN", rng), {})
    model.graph.node.append(
        helper.make_node("FusedGemm", ["Y"], ["z"], name="ms", domain="com.microsoft")
    )
    with pytest.raises(NotImplementedError, match=r"FusedGemm.*com.microsoft"):
        from_onnx_model(model)
    model = make_model(
        "LSTM", random_case("LSTM", rng), {"activations": ["Sigmoid", "Gelu", "Tanh"]}
    )
    with pytest.raises(NotImplementedError, match="Gelu"):
        from_onnx_model(model)


def test_external_data(tmp_path):
    """A model saved with its tensors in one external file (all of them, threshold 0) loads;
    moving the data file away gives a FormatError naming it."""
    rng = np.random.default_rng(6)
    arrays = random_case("LSTM", rng, H=64, I=32, direction="bidirectional", peephole=True)
    model = make_model("LSTM", arrays, {"direction": "bidirectional"})
    path = tmp_path / "big.onnx"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="big.weights",
        size_threshold=0,
    )
    assert (tmp_path / "big.weights").stat().st_size > 4 * 2 * 4 * 64 * 96
    ours = pylstm.load(path)
    got = ours.run(None, {"X": arrays["X"]})
    want = ort_session(str(path)).run(None, {"X": arrays["X"]})
    for g, w in zip(got, want):
        assert_close(g, w, atol=ATOL, what="external data")
    os.rename(tmp_path / "big.weights", tmp_path / "elsewhere.weights")
    with pytest.raises(pylstm.FormatError, match=r"big\.weights"):
        pylstm.load(path)
    # truncated data file
    data = (tmp_path / "elsewhere.weights").read_bytes()
    (tmp_path / "big.weights").write_bytes(data[: len(data) // 2])
    with pytest.raises(pylstm.FormatError, match="truncated"):
        pylstm.load(path)


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    rng = np.random.default_rng(7)
    model = make_model("RNN", random_case("RNN", rng), {})
    w = model.graph.initializer[0]
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("raw_data")
    entry = w.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    path = tmp_path / "escape.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(pylstm.FormatError, match="outside the model's folder"):
        pylstm.load(path)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty_graph"])
def test_corrupt_files_raise_format_error(tmp_path, damage):
    rng = np.random.default_rng(8)
    data = make_model("GRU", random_case("GRU", rng), {}).SerializeToString()
    path = tmp_path / "bad.onnx"
    if damage == "truncated":
        path.write_bytes(data[: len(data) * 2 // 3])
    elif damage == "garbage":
        path.write_bytes(b"\x08\x07" + bytes(rng.integers(0, 256, 300, dtype=np.uint8)))
    else:
        path.write_bytes(helper.make_model(helper.make_graph([], "g", [], [])).SerializeToString())
        model = pylstm.load(path)  # an empty graph is valid: nothing to run
        assert model.run(None, {}) == []
        return
    with pytest.raises(pylstm.FormatError, match=r"bad\.onnx"):
        pylstm.load(path)


def test_inconsistent_weights_raise_format_error():
    rng = np.random.default_rng(9)
    arrays = random_case("LSTM", rng, H=5)
    arrays["B"] = arrays["B"][:, :-1]
    with pytest.raises(pylstm.FormatError, match=r"lstm0.*B must have shape"):
        from_onnx_model(make_model("LSTM", arrays, {}))
    arrays = random_case("LSTM", rng, H=5)
    with pytest.raises(pylstm.FormatError, match="hidden_size"):
        from_onnx_model(make_model("LSTM", arrays, {"hidden_size": 4}))
    with pytest.raises(pylstm.FormatError, match="direction"):
        from_onnx_model(make_model("LSTM", arrays, {"direction": "sideways"}))
    with pytest.raises(pylstm.FormatError, match="3 function"):
        from_onnx_model(make_model("LSTM", arrays, {"activations": ["Sigmoid", "Tanh"]}))
    with pytest.raises(pylstm.FormatError, match="clip"):
        from_onnx_model(make_model("LSTM", arrays, {"clip": -1.0}))


def test_feeds_are_checked_like_onnxruntime():
    rng = np.random.default_rng(10)
    arrays = random_case("LSTM", rng, T=4, B=2, lengths=[4, 2])
    model = from_onnx_model(
        make_model("LSTM", arrays, {}, runtime=("X", "sequence_lens"), dynamic=True)
    )
    feeds = {"X": arrays["X"], "sequence_lens": np.array([4, 2], np.int32)}
    model.run(None, feeds)
    with pytest.raises(ValueError, match="'x'"):
        model.run(None, {**feeds, "x": arrays["X"]})
    with pytest.raises(ValueError, match="sequence_lens"):
        model.run(None, {"X": arrays["X"]})
    with pytest.raises(TypeError, match=r"'X'.*int"):
        model.run(None, {**feeds, "X": arrays["X"].astype(np.int32)})
    with pytest.raises(TypeError, match="sequence_lens"):
        model.run(None, {**feeds, "sequence_lens": np.array([4.0, 2.0])})
    with pytest.raises(ValueError, match="rank"):
        model.run(None, {**feeds, "X": arrays["X"][0]})
    with pytest.raises(ValueError, match="between 0 and the sequence length 4"):
        model.run(None, {**feeds, "sequence_lens": np.array([5, 2], np.int32)})
    with pytest.raises(ValueError, match="between 0"):
        model.run(None, {**feeds, "sequence_lens": np.array([-1, 2], np.int32)})
    with pytest.raises(ValueError, match="'nope'"):
        model.run(["Y", "nope"], feeds)
    with pytest.raises(TypeError, match="dict"):
        model.run(None, [arrays["X"]])
    # float64 and int64 feeds are cast within their kind; torch tensors are accepted
    y64 = model.run(
        ["Y"],
        {
            "X": torch.from_numpy(arrays["X"].astype(np.float64)),
            "sequence_lens": np.array([4, 2], np.int64),
        },
    )[0]
    np.testing.assert_array_equal(y64, model.run(["Y"], feeds)[0])
    fixed = from_onnx_model(make_model("LSTM", arrays, {}, dynamic=False))
    with pytest.raises(ValueError, match="axis 1 must be 2"):
        fixed.run(None, {"X": np.zeros((4, 3, arrays["X"].shape[2]), np.float32)})


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


def test_import_pylstm_without_onnx_and_loading_says_what_to_install(tmp_path):
    rng = np.random.default_rng(14)
    path = tmp_path / "m.onnx"
    onnx.save(make_model("RNN", random_case("RNN", rng), {}), str(path))
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'onnx' or name.startswith('onnx.'):\n"
        "            raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import pylstm\n"
        "try:\n"
        f"    pylstm.load({str(path)!r})\n"
        "except ImportError as e:\n"
        "    print('IMPORT-ERROR', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(),
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "IMPORT-ERROR" in out.stdout and "pip install onnx" in out.stdout


@pytest.mark.parametrize(
    "dtype",
    [
        "float32",
        "float64",
        "float16",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "int64",
        "uint32",
        "uint64",
        "bool",
        "complex64",
    ],
)
def test_tensor_decoding_matches_onnx(dtype):
    """Initializers and Constant values in raw bytes and in the typed fields decode as
    onnx.numpy_helper does (pylstm has its own decoder, with bounds checks)."""
    from pylstm.read.onnx_tensors import tensor_to_array

    rng = np.random.default_rng(15)
    values = (rng.normal(size=(3, 4)) * 50).astype(dtype)
    raw = numpy_helper.from_array(values, "t")
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    typed = helper.make_tensor("t", elem, values.shape, values.reshape(-1).tolist())
    for tensor in (raw, typed):
        got = tensor_to_array(tensor, source="test")
        want = numpy_helper.to_array(tensor)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    broken = numpy_helper.from_array(values, "t")
    broken.raw_data = broken.raw_data[:-1]
    with pytest.raises(pylstm.FormatError, match="'t'"):
        tensor_to_array(broken, source="test")
