"""ONNX ``If`` (pylstm/runtime/graph.py) against ONNX Runtime on hand-built graphs: a
condition known at load inlines the taken branch; a run-time condition (a model that switches on
an input such as a sample rate) runs the chosen branch with the enclosing graph's values
visible, including a branch holding an LSTM; nested Ifs.

Tolerance: 1e-5 relative-or-absolute for float maths (different summation orders); 3e-5
absolute for the LSTM's unit-scale outputs.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper

from pylstm.assemble import from_onnx_model

F = np.float32


def ort_run(model, feeds):
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, feeds)


def branch(name, nodes, outputs, initializers=()):
    outs = [helper.make_empty_tensor_value_info(o) for o in outputs]
    return helper.make_graph(nodes, name, [], outs, initializer=list(initializers))


def switch_model(rng, cond_from_input: bool, cond_value=True):
    """y = If(rate > 16000): x @ W1 + outer bias, else tanh(x) * scale (a branch initializer)."""
    w1 = rng.normal(size=(4, 3)).astype(F)
    scale = rng.normal(size=(4,)).astype(F)
    then_g = branch(
        "then",
        [
            helper.make_node("MatMul", ["x", "W1"], ["t0"]),
            helper.make_node("Add", ["t0", "bias"], ["t1"]),
            helper.make_node("Sum", ["t1"], ["y_then"]),
        ],
        ["y_then"],
        [numpy_helper.from_array(w1, "W1")],
    )
    else_g = branch(
        "else",
        [
            helper.make_node("Tanh", ["x"], ["e0"]),
            helper.make_node("Mul", ["e0", "scale"], ["e1"]),
            helper.make_node("Slice", ["e1", "starts", "ends", "axes"], ["y_else"]),
        ],
        ["y_else"],
        [
            numpy_helper.from_array(scale, "scale"),
            numpy_helper.from_array(np.array([0], np.int64), "starts"),
            numpy_helper.from_array(np.array([3], np.int64), "ends"),
            numpy_helper.from_array(np.array([-1], np.int64), "axes"),
        ],
    )
    nodes = []
    inits = [numpy_helper.from_array(rng.normal(size=(3,)).astype(F), "bias")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", 4])]
    if cond_from_input:
        inputs.append(helper.make_tensor_value_info("rate", TensorProto.INT64, []))
        inits.append(numpy_helper.from_array(np.array(16000, np.int64), "limit"))
        nodes.append(helper.make_node("Greater", ["rate", "limit"], ["cond"]))
    else:
        nodes.append(
            helper.make_node(
                "Constant", [], ["cond"], value=numpy_helper.from_array(np.array(cond_value))
            )
        )
    nodes.append(helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g))
    nodes.append(helper.make_node("Relu", ["y"], ["out"]))
    graph = helper.make_graph(
        nodes, "g", inputs, [helper.make_empty_tensor_value_info("out")], initializer=inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("cond_value", [True, False])
def test_constant_condition_is_inlined(cond_value):
    rng = np.random.default_rng(int(cond_value))
    model = switch_model(rng, cond_from_input=False, cond_value=cond_value)
    x = rng.normal(size=(2, 5, 4)).astype(F)
    ours = from_onnx_model(model)
    assert not any(n.op_type == "If" for n in ours._graph.nodes)  # folded at load
    (want,) = ort_run(model, {"x": x})
    (got,) = ours.run(None, {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # float maths, unit scale


def test_condition_from_an_input_switches_at_run_time():
    rng = np.random.default_rng(7)
    model = switch_model(rng, cond_from_input=True)
    ours = from_onnx_model(model)
    assert any(n.op_type == "If" for n in ours._graph.nodes)
    for rate in (8000, 16000, 44100, 48000):
        x = rng.normal(size=(3, 6, 4)).astype(F)
        feeds = {"x": x, "rate": np.array(rate, np.int64)}
        (want,) = ort_run(model, feeds)
        (got,) = ours.run(None, feeds)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # float maths


def lstm_branch_model(rng, hidden=5, features=4):
    """If(use_lstm): LSTM over x (weights are branch initializers) -> Y_h; else zeros of the
    same shape via outer-scope values."""
    W = rng.uniform(-1, 1, size=(1, 4 * hidden, features)).astype(F)
    R = rng.uniform(-1, 1, size=(1, 4 * hidden, hidden)).astype(F)
    B = rng.uniform(-1, 1, size=(1, 8 * hidden)).astype(F)
    then_g = branch(
        "lstm_branch",
        [
            helper.make_node("LSTM", ["x", "W", "R", "B"], ["", "h"], hidden_size=hidden),
            helper.make_node("Squeeze", ["h", "zero"], ["y_then"]),
        ],
        ["y_then"],
        [
            numpy_helper.from_array(W, "W"),
            numpy_helper.from_array(R, "R"),
            numpy_helper.from_array(B, "B"),
            numpy_helper.from_array(np.array([0], np.int64), "zero"),
        ],
    )
    inner_then = branch("inner_then", [helper.make_node("Neg", ["mean"], ["n0"])], ["n0"])
    inner_else = branch("inner_else", [helper.make_node("Identity", ["mean"], ["n1"])], ["n1"])
    else_g = branch(
        "mean_branch",
        [
            helper.make_node("ReduceMean", ["x"], ["m0"], axes=[0], keepdims=0),
            helper.make_node("Slice", ["m0", "s", "e", "ax"], ["mean"]),
            helper.make_node(
                "If", ["flip"], ["y_else"], then_branch=inner_then, else_branch=inner_else
            ),
        ],
        ["y_else"],
        [
            numpy_helper.from_array(np.array([0, 0], np.int64), "s"),
            numpy_helper.from_array(np.array([100, hidden], np.int64), "e"),
            numpy_helper.from_array(np.array([0, 1], np.int64), "ax"),
        ],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["use_lstm"], ["y"], then_branch=then_g, else_branch=else_g)],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", features]),
            helper.make_tensor_value_info("use_lstm", TensorProto.BOOL, [1]),
            helper.make_tensor_value_info("flip", TensorProto.BOOL, []),
        ],
        [helper.make_empty_tensor_value_info("y")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def test_branch_with_an_lstm_and_a_nested_if():
    rng = np.random.default_rng(11)
    model = lstm_branch_model(rng)
    ours = from_onnx_model(model)
    for use_lstm in (True, False):
        for flip in (True, False):
            x = (rng.normal(size=(7, 3, 4)) * 2).astype(F)
            feeds = {"x": x, "use_lstm": np.array([use_lstm]), "flip": np.array(flip)}
            (want,) = ort_run(model, feeds)
            (got,) = ours.run(None, feeds)
            np.testing.assert_allclose(got, want, atol=3e-5)  # LSTM / means, unit scale


def test_if_pickles():
    import pickle

    rng = np.random.default_rng(3)
    ours = from_onnx_model(switch_model(rng, cond_from_input=True))
    again = pickle.loads(pickle.dumps(ours))
    feeds = {"x": rng.normal(size=(2, 3, 4)).astype(F), "rate": np.array(48000, np.int64)}
    np.testing.assert_array_equal(again.run(None, feeds)[0], ours.run(None, feeds)[0])


def test_subgraphs_nested_too_deep_are_refused():
    import pylstm

    leaf = branch("leaf", [helper.make_node("Identity", ["x"], ["y0"])], ["y0"])
    inner = leaf
    for depth in range(20):
        node = helper.make_node("If", ["c"], [f"y{depth + 1}"], then_branch=inner, else_branch=leaf)
        inner = branch(f"level{depth}", [node], [f"y{depth + 1}"])
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["out"], then_branch=inner, else_branch=leaf)],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_empty_tensor_value_info("out")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(pylstm.FormatError, match="nested"):
        from_onnx_model(model)


def test_an_if_on_a_time_carrying_value_does_not_stream():
    rng = np.random.default_rng(5)
    model = lstm_branch_model(rng)
    with pytest.raises(ValueError, match="cannot stream"):
        from_onnx_model(model).stream(1)
