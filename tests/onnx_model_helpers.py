"""What the whole-model ONNX tests share (tests/test_onnx_models*.py): PyTorch models exported
with torch.onnx.export, a tf2onnx-style hand-built graph, an ONNX Runtime session maker, and the
tolerance (see test_onnx_models.py's docstring)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper

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
