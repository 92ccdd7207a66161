"""``model.stream(batch_size)`` on ONNX models: chunks of time steps with every recurrent
node's state carried over give the same outputs as one ``run`` on the whole sequence, for
exported PyTorch models (heads, embeddings, initial-state inputs, several layers) and single
operators in both layouts; graphs that cannot be streamed are refused with the node named.

Tolerance streamed vs whole: 1e-6 (scaled by the row for unbounded outputs): the same arithmetic,
except that a chunk's input projection is one GEMM over its rows, which may block differently.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from onnx import TensorProto, helper
from onnx_oracle import assert_close, make_model, random_case

import pylstm
from pylstm.assemble import from_onnx_model

TOL = 1e-6
CHUNKS = [1, 3, 2, 7, 1, 6]  # 20 steps


def _export(tmp_path, module, args, names, axes, outputs, opset=14):
    path = str(tmp_path / "m.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            args,
            path,
            dynamo=False,
            opset_version=opset,
            input_names=names,
            output_names=outputs,
            dynamic_axes=axes,
        )
    return pylstm.load(path)


class Head(torch.nn.Module):
    def __init__(self, rnn, embed=False, softmax=True):
        super().__init__()
        self.embed = torch.nn.Embedding(20, rnn.input_size) if embed else None
        self.rnn = rnn
        self.head = torch.nn.Linear(rnn.hidden_size, 4)
        self.softmax = softmax

    def forward(self, x, *hx):
        if self.embed is not None:
            x = self.embed(x)
        y, st = self.rnn(x, (hx if len(hx) == 2 else hx[0]) if hx else None)
        y = self.head(y)
        y = torch.softmax(y, -1) if self.softmax else torch.relu(y)
        return (y, *(st if isinstance(st, tuple) else (st,)))


def _split(x, axis):
    out, start = [], 0
    for n in CHUNKS:
        out.append(np.take(x, range(start, start + n), axis=axis))
        start += n
    return out


def _check_stream(model, feeds, time_input, axis, batch):
    whole = model.run(None, feeds)
    stream = model.stream(batch)
    outs = []
    for k, chunk in enumerate(_split(feeds[time_input], axis)):
        step_feeds = {time_input: chunk}
        if k == 0:
            step_feeds.update({n: v for n, v in feeds.items() if n != time_input})
        outs.append(stream.step(step_feeds))
    for j, out in enumerate(model.get_outputs()):
        t_axis = stream.output_axes[out.name]
        got = (
            np.concatenate([o[j] for o in outs], axis=t_axis) if t_axis is not None else outs[-1][j]
        )
        assert_close(got, whole[j], atol=TOL, what=f"streamed {out.name}")
    return stream


def test_lstm_stack_with_head_batch_first(tmp_path):
    torch.manual_seed(0)
    rnn = torch.nn.LSTM(5, 7, num_layers=2, batch_first=True)
    model = _export(
        tmp_path,
        Head(rnn),
        (torch.randn(2, 3, 5),),
        ["x"],
        {"x": {0: "b", 1: "t"}},
        ["p", "h", "c"],
    )
    x = np.random.default_rng(1).normal(size=(3, 20, 5)).astype(np.float32)
    stream = _check_stream(model, {"x": x}, "x", 1, 3)
    assert stream.input_axes == {"x": 1}
    assert stream.output_axes == {"p": 1, "h": None, "c": None}
    # a bare array works when the model has one time input; reset() starts over
    stream.reset()
    first = stream.step(x[:, :4])
    stream.reset()
    again = stream.step(x[:, :4])
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_gru_embedding_with_initial_state_input_time_major(tmp_path):
    torch.manual_seed(1)
    rnn = torch.nn.GRU(6, 8, num_layers=2)
    model = _export(
        tmp_path,
        Head(rnn, embed=True, softmax=False),
        (torch.randint(0, 20, (3, 2)), torch.randn(2, 2, 8)),
        ["tok", "h0"],
        {"tok": {0: "t", 1: "b"}, "h0": {1: "b"}},
        ["y", "h"],
        opset=11,
    )
    rng = np.random.default_rng(2)
    feeds = {
        "tok": rng.integers(0, 20, size=(20, 4)).astype(np.int64),
        "h0": rng.uniform(-1, 1, size=(2, 4, 8)).astype(np.float32),
    }
    stream = _check_stream(model, feeds, "tok", 0, 4)
    assert stream.input_axes == {"tok": 0, "h0": None}


@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_single_operator_with_initial_states(op, layout):
    rng = np.random.default_rng(3)
    arrays = random_case(op, rng, T=20, B=3, layout=layout, initial=True, peephole=op == "LSTM")
    runtime = ("X", "initial_h", "initial_c")
    model = from_onnx_model(make_model(op, arrays, {"layout": layout}, runtime=runtime))
    feeds = {k: arrays[k] for k in runtime if k in arrays}
    _check_stream(model, feeds, "X", layout, 3)


def test_stream_errors_name_the_node():
    rng = np.random.default_rng(4)
    for direction in ("reverse", "bidirectional"):
        arrays = random_case("GRU", rng, direction=direction)
        model = from_onnx_model(make_model("GRU", arrays, {"direction": direction}))
        with pytest.raises(ValueError, match=f"gru0.*{direction}"):
            model.stream(3)
    arrays = random_case("LSTM", rng, lengths=[5, 2, 3])
    model = from_onnx_model(make_model("LSTM", arrays, {}, runtime=("X", "sequence_lens")))
    with pytest.raises(ValueError, match="sequence_lens"):
        model.stream(3)
    arrays = random_case("RNN", rng)
    model = from_onnx_model(make_model("RNN", arrays, {}))
    stream = model.stream(2)
    with pytest.raises(ValueError, match=r"batch_size 2.*3 sequences"):
        stream.step(arrays["X"])
    with pytest.raises(TypeError):
        model.stream(1.5)


def _rnn_then(rng, nodes, outputs, opset=13, extra_inits=()):
    """An RNN node followed by ``nodes``; graph outputs ``outputs``."""
    arrays = random_case("RNN", rng)
    model = make_model("RNN", arrays, {}, opset=opset)
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(extra_inits)
    del model.graph.output[:]
    model.graph.output.extend(helper.make_empty_tensor_value_info(o) for o in outputs)
    return from_onnx_model(model), arrays


@pytest.mark.parametrize(
    ("what", "nodes", "inits", "message"),
    [
        (
            "last step",
            [helper.make_node("Gather", ["Y", "last"], ["o"], axis=0)],
            [onnx.numpy_helper.from_array(np.array(-1, np.int64), "last")],
            "selects steps",
        ),
        ("mean over time", [helper.make_node("ReduceMean", ["Y"], ["o"], axes=[0])], [], "reduces"),
        ("softmax over time", [helper.make_node("Softmax", ["Y"], ["o"], axis=0)], [], "reduces"),
        (
            "state added to every step",
            [helper.make_node("Add", ["Y", "Y_h"], ["o"])],
            [],
            "summarises",
        ),
        (
            "flatten time and batch",
            [helper.make_node("Flatten", ["Y"], ["o"], axis=3)],
            [],
            "merges",
        ),
        (
            "unknown op",
            [helper.make_node("TopK", ["Y", "k"], ["o", "i"], axis=0)],
            [onnx.numpy_helper.from_array(np.array([1], np.int64), "k")],
            None,
        ),
    ],
)
def test_graphs_that_mix_time_steps_are_refused(what, nodes, inits, message):
    rng = np.random.default_rng(5)
    if what == "unknown op":  # run by ONNX Runtime (without it: tests/test_onnx_fallback.py)
        model, arrays = _rnn_then(rng, nodes, ["o"], extra_inits=inits)
        model.run(None, {"X": arrays["X"]})
        with pytest.raises(ValueError, match=r"cannot stream.*TopK.*time axis"):
            model.stream(3)
        return
    model, arrays = _rnn_then(rng, nodes, ["o"], extra_inits=inits)
    model.run(None, {"X": arrays["X"]})  # runs as a whole
    with pytest.raises(ValueError, match=f"cannot stream.*{message}"):
        model.stream(3)


def test_state_only_outputs_stream_as_values_at_the_chunk_end():
    """Y_h alone (and what is computed from it alone) streams: each step returns its value
    after the chunk."""
    rng = np.random.default_rng(6)
    model, _ = _rnn_then(
        rng, [helper.make_node("Tanh", ["Y_h"], ["o"])], ["o", "Y_h"], extra_inits=()
    )
    x = rng.normal(size=(20, 3, 4)).astype(np.float32)
    whole = model.run(None, {"X": x})
    stream = model.stream(3)
    assert stream.output_axes == {"o": None, "Y_h": None}
    last = [stream.step(c) for c in _split(x, 0)][-1]
    for g, w in zip(last, whole):
        assert_close(g, w, atol=TOL, what="state output")


def test_tf2onnx_style_transposes_and_states(tmp_path):
    """Batch-major input transposed for the LSTM, zero states built from the batch size, Y
    squeezed and transposed back, a Dense head as MatMul + Add."""
    rng = np.random.default_rng(7)
    from test_onnx_models import _tf2onnx_style_model

    model_proto = _tf2onnx_style_model(rng)
    # without the masking part: feed the LSTM full sequences
    graph = model_proto.graph
    lstm = next(n for n in graph.node if n.op_type == "LSTM")
    lstm.input[4] = ""
    keep = [
        n for n in graph.node if n.op_type not in ("Equal", "Not", "ReduceMax", "ReduceSum", "Cast")
    ]
    del graph.node[:]
    graph.node.extend(keep)
    model = from_onnx_model(model_proto)
    x = rng.normal(size=(2, 20, 4)).astype(np.float32)
    stream = _check_stream(model, {"x": x}, "x", 1, 2)
    assert stream.input_axes == {"x": 1}


def test_unknown_rank_input_is_refused():
    rng = np.random.default_rng(8)
    arrays = random_case("RNN", rng)
    model = make_model("RNN", arrays, {})
    model.graph.input[0].type.tensor_type.ClearField("shape")
    ours = from_onnx_model(model)
    with pytest.raises(ValueError, match="rank"):
        ours.stream(3)
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT


def test_constant_that_varies_along_time_is_refused():
    """A fixed-length table added to every step (e.g. positional encodings) cannot be chunked."""
    rng = np.random.default_rng(9)
    table = onnx.numpy_helper.from_array(rng.normal(size=(5, 1, 1, 5)).astype(np.float32), "pos")
    model, arrays = _rnn_then(
        rng, [helper.make_node("Add", ["Y", "pos"], ["o"])], ["o"], extra_inits=[table]
    )
    model.run(None, {"X": arrays["X"]})
    with pytest.raises(ValueError, match="'pos' varies along the time axis"):
        model.stream(3)
