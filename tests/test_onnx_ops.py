"""The numpy graph executor's operators (pylstm/runtime/ops/onnx_ops.py) against ONNX Runtime, one
single-node model per case, in the attribute and input forms of several opsets.

Inputs are graph inputs (so the node runs at run time, not folded at load), fresh random data.
Tolerance: exact for integer and shape operators, 1e-5 relative-or-absolute for float maths
(numpy and ONNX Runtime use different exp/erf/tanh implementations and summation orders).
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import helper, numpy_helper

from pylstm.assemble import from_onnx_model

rng = np.random.default_rng(0)
F = np.float32


def f(*shape):
    return rng.normal(size=shape).astype(F)


def i64(*values):
    return np.array(values, np.int64)


BIG = np.iinfo(np.int64).max
# (id, op, opset, inputs, attrs, number of outputs)
# fmt: off
CASES = [
    ("slice-attrs", "Slice", 9, [f(4, 5, 6)], {"starts": [1, -4], "ends": [BIG, -1], "axes": [0, 2]}, 1),
    ("slice-inputs-neg-step", "Slice", 13, [f(4, 5, 6), i64(-1, 4), i64(-BIG, 0), i64(0, 1), i64(-1, -2)], {}, 1),
    ("slice-inputs-default-axes", "Slice", 11, [f(4, 5), i64(1, 1), i64(3, 100)], {}, 1),
    ("reshape-0-minus1", "Reshape", 13, [f(2, 3, 4, 5), i64(0, 0, -1)], {}, 1),
    ("reshape-allowzero", "Reshape", 14, [f(2, 3, 4), i64(4, 6)], {"allowzero": 1}, 1),
    ("squeeze-attr", "Squeeze", 11, [f(1, 3, 1, 4)], {"axes": [0, -2]}, 1),
    ("squeeze-input", "Squeeze", 13, [f(1, 3, 1, 4), i64(2)], {}, 1),
    ("squeeze-all", "Squeeze", 13, [f(1, 3, 1, 4)], {}, 1),
    ("unsqueeze-attr", "Unsqueeze", 11, [f(3, 4)], {"axes": [0, 3]}, 1),
    ("unsqueeze-input", "Unsqueeze", 13, [f(3, 4), i64(-1, 1)], {}, 1),
    ("split-attr", "Split", 11, [f(6, 4)], {"axis": 0, "split": [1, 2, 3]}, 3),
    ("split-input", "Split", 13, [f(3, 7), i64(3, 4)], {"axis": 1}, 2),
    ("split-equal", "Split", 13, [f(6, 4)], {}, 3),
    ("split-num_outputs", "Split", 18, [f(3, 7)], {"axis": 1, "num_outputs": 3}, 3),
    ("gather-neg", "Gather", 13, [f(5, 4), i64(-1, 0, 2)], {"axis": 0}, 1),
    ("gather-axis1-scalar", "Gather", 13, [f(5, 4, 3), np.array(2, np.int64)], {"axis": 1}, 1),
    ("gather_elements", "GatherElements", 13, [f(3, 4), np.array([[0, 3], [1, -1], [2, 2]], np.int64)], {"axis": 1}, 1),
    ("gather_nd", "GatherND", 13, [f(2, 3, 4), np.array([[0, 1], [1, 2]], np.int64)], {}, 1),
    ("concat", "Concat", 13, [f(2, 3), f(2, 1), f(2, 4)], {"axis": -1}, 1),
    ("transpose-default", "Transpose", 13, [f(2, 3, 4)], {}, 1),
    ("transpose-perm", "Transpose", 13, [f(2, 3, 4, 5)], {"perm": [0, 2, 1, 3]}, 1),
    ("expand", "Expand", 13, [f(3, 1), i64(2, 1, 4)], {}, 1),
    ("tile", "Tile", 13, [f(2, 3), i64(2, 3)], {}, 1),
    ("range-int", "Range", 11, [np.array(2, np.int64), np.array(11, np.int64), np.array(3, np.int64)], {}, 1),
    ("range-float", "Range", 11, [np.array(0.5, F), np.array(-2, F), np.array(-0.7, F)], {}, 1),
    ("constant_of_shape", "ConstantOfShape", 13, [i64(2, 3)], {"value": numpy_helper.from_array(np.array([1.5], F))}, 1),
    ("constant_of_shape-default", "ConstantOfShape", 13, [i64(2, 0, 3)], {}, 1),
    ("shape", "Shape", 13, [f(2, 3, 4)], {}, 1),
    ("shape-start-end", "Shape", 15, [f(2, 3, 4, 5)], {"start": 1, "end": -1}, 1),
    ("size", "Size", 13, [f(2, 3, 4)], {}, 1),
    ("cast-float-int", "Cast", 13, [f(3, 4) * 3], {"to": onnx.TensorProto.INT32}, 1),
    ("cast-int-float", "Cast", 13, [i64(3, -4, 5)], {"to": onnx.TensorProto.FLOAT}, 1),
    ("cast-bool", "Cast", 13, [np.array([0.0, 1.5, -2.0], F)], {"to": onnx.TensorProto.BOOL}, 1),
    ("softmax-opset11-2d", "Softmax", 11, [f(2, 3, 4)], {"axis": 1}, 1),
    ("softmax-opset13", "Softmax", 13, [f(2, 3, 4)], {"axis": 1}, 1),
    ("logsoftmax", "LogSoftmax", 13, [f(2, 3, 4)], {}, 1),
    ("matmul-3d-2d", "MatMul", 13, [f(2, 3, 4), f(4, 5)], {}, 1),
    ("matmul-1d", "MatMul", 13, [f(4), f(2, 4, 3)], {}, 1),
    ("gemm", "Gemm", 13, [f(4, 3), f(5, 4), f(5)], {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0}, 1),
    ("gemm-no-c", "Gemm", 13, [f(3, 4), f(4, 5)], {}, 1),
    ("reduce-mean-attr", "ReduceMean", 13, [f(2, 3, 4)], {"axes": [1], "keepdims": 0}, 1),
    ("reduce-mean-input", "ReduceMean", 18, [f(2, 3, 4), i64(0, 2)], {}, 1),
    ("reduce-sum-input", "ReduceSum", 13, [f(2, 3, 4), i64(-1)], {"keepdims": 0}, 1),
    ("reduce-sum-all", "ReduceSum", 13, [f(2, 3, 4)], {}, 1),
    ("reduce-max-attr", "ReduceMax", 13, [f(2, 3, 4)], {"axes": [2]}, 1),
    ("argmax", "ArgMax", 13, [f(3, 5)], {"axis": 1, "keepdims": 0}, 1),
    ("argmax-last", "ArgMax", 13, [np.array([[1, 3, 3], [2, 2, 0]], F)], {"axis": 1, "select_last_index": 1}, 1),
    ("where", "Where", 13, [rng.random((3, 4)) > 0.5, f(3, 4), f(1, 4)], {}, 1),
    ("equal", "Equal", 13, [i64(1, 2, 3), i64(1, 0, 3)], {}, 1),
    ("less", "Less", 13, [f(3, 4), f(4)], {}, 1),
    ("greater_or_equal", "GreaterOrEqual", 16, [f(3, 4), f(3, 1)], {}, 1),
    ("not-and-or", "Not", 13, [rng.random(5) > 0.5], {}, 1),
    ("and", "And", 13, [rng.random(5) > 0.5, rng.random(5) > 0.5], {}, 1),
    ("div-int-trunc", "Div", 13, [i64(7, -7, 7, -7), i64(2, 2, -2, -2)], {}, 1),
    ("div-float", "Div", 13, [f(3, 4), f(4) + 3], {}, 1),
    ("mod", "Mod", 13, [i64(7, -7, 7, -7), i64(3, 3, -3, -3)], {}, 1),
    ("mod-fmod", "Mod", 13, [f(5) * 5, f(5) + 3], {"fmod": 1}, 1),
    ("pow", "Pow", 15, [np.abs(f(3, 4)) + 0.1, f(4)], {}, 1),
    ("add-sub-mul", "Sub", 14, [f(2, 3, 4), f(3, 1)], {}, 1),
    ("clip-attrs", "Clip", 6, [f(3, 4)], {"min": -0.5, "max": 0.3}, 1),
    ("clip-inputs", "Clip", 13, [f(3, 4), np.array(-0.2, F)], {}, 1),
    ("leaky_relu", "LeakyRelu", 16, [f(3, 4)], {"alpha": 0.2}, 1),
    ("elu", "Elu", 6, [f(3, 4)], {}, 1),
    ("selu", "Selu", 6, [f(3, 4)], {}, 1),
    ("celu", "Celu", 12, [f(3, 4)], {"alpha": 0.7}, 1),
    ("hard_sigmoid", "HardSigmoid", 6, [f(3, 4) * 4], {"alpha": 0.3}, 1),
    ("hard_swish", "HardSwish", 14, [f(3, 4) * 4], {}, 1),
    ("thresholded_relu", "ThresholdedRelu", 10, [f(3, 4)], {"alpha": 0.4}, 1),
    ("prelu", "PRelu", 16, [f(2, 3, 4), f(4)], {}, 1),
    ("softplus", "Softplus", 1, [f(3, 4) * 10], {}, 1),
    ("softsign", "Softsign", 1, [f(3, 4)], {}, 1),
    ("sigmoid", "Sigmoid", 13, [f(3, 4) * 10], {}, 1),
    ("tanh", "Tanh", 13, [f(3, 4)], {}, 1),
    ("relu", "Relu", 14, [f(3, 4)], {}, 1),
    ("erf", "Erf", 13, [f(3, 4)], {}, 1),
    ("gelu", "Gelu", 20, [f(3, 4)], {}, 1),
    ("gelu-tanh", "Gelu", 20, [f(3, 4)], {"approximate": "tanh"}, 1),
    ("sqrt-exp-log", "Log", 13, [np.abs(f(3, 4)) + 0.1], {}, 1),
    ("reciprocal", "Reciprocal", 13, [f(3, 4) + 5], {}, 1),
    ("flatten-0", "Flatten", 13, [f(2, 3, 4)], {"axis": 0}, 1),
    ("flatten-neg", "Flatten", 13, [f(2, 3, 4)], {"axis": -1}, 1),
    ("layer_norm", "LayerNormalization", 17, [f(2, 3, 4), f(4), f(4)], {"epsilon": 1e-3}, 1),
    ("batch_norm", "BatchNormalization", 15, [f(2, 3, 4), f(3), f(3), f(3), np.abs(f(3)) + 0.5], {}, 1),
    ("pad-constant", "Pad", 13, [f(2, 3), i64(0, 1, 1, 2), np.array(0.5, F)], {}, 1),
    ("pad-reflect", "Pad", 13, [f(3, 4), i64(1, 2, 1, 0)], {"mode": "reflect"}, 1),
    ("pad-edge-attrs", "Pad", 2, [f(3, 4)], {"pads": [1, 0, 0, 2], "mode": "edge"}, 1),
    ("cumsum", "CumSum", 14, [f(3, 4), np.array(1, np.int64)], {"exclusive": 1, "reverse": 1}, 1),
    ("trilu", "Trilu", 14, [f(4, 4), np.array(-1, np.int64)], {"upper": 0}, 1),
    ("onehot", "OneHot", 11, [i64(0, 3, -1), np.array(4, np.int64), np.array([0, 2], F)], {"axis": 0}, 1),
    ("nonzero", "NonZero", 13, [np.array([[0, 1, 0], [2, 0, 3]], F)], {}, 1),
    ("einsum", "Einsum", 12, [f(2, 3, 4), f(4, 5)], {"equation": "btk,kn->btn"}, 1),
    ("mean", "Mean", 13, [f(3, 4), f(4), f(3, 1)], {}, 1),
    ("max", "Max", 13, [f(3, 4), f(4)], {}, 1),
    ("sum", "Sum", 13, [f(3, 4), f(3, 4), f(3, 4)], {}, 1),
    ("dropout", "Dropout", 13, [f(3, 4)], {}, 1),
    ("identity", "Identity", 16, [f(3, 4)], {}, 1),
    ("isinf", "IsInf", 10, [np.array([1.0, np.inf, -np.inf], F)], {"detect_negative": 0}, 1),
]
# fmt: on


def _model(op, opset, inputs, attrs, n_out):
    names = [f"in{k}" for k in range(len(inputs))]
    outs = [f"out{k}" for k in range(n_out)]
    vis = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
        for n, a in zip(names, inputs)
    ]
    out_vis = [helper.make_empty_tensor_value_info(o) for o in outs]
    node = helper.make_node(op, names, outs, name=f"node_{op}", **attrs)
    graph = helper.make_graph([node], "g", vis, out_vis)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize(
    ("op", "opset", "inputs", "attrs", "n_out"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_operator_matches_onnxruntime(op, opset, inputs, attrs, n_out):
    model = _model(op, opset, inputs, attrs, n_out)
    feeds = {f"in{k}": a for k, a in enumerate(inputs)}
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    want = session.run(None, feeds)
    got = from_onnx_model(model).run(None, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype, f"{op}: dtype {g.dtype} != {w.dtype}"
        assert g.shape == w.shape, f"{op}: shape {g.shape} != {w.shape}"
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(g, w)


def test_constant_folding_covers_constant_inputs():
    """The same nodes with initializer inputs are computed once at load (no node left)."""
    inputs = [f(2, 3, 4), i64(0, 0, -1)]
    model = _model("Reshape", 13, inputs, {}, 1)
    model.graph.ClearField("input")
    for k, a in enumerate(inputs):
        model.graph.initializer.append(numpy_helper.from_array(a, f"in{k}"))
    ours = from_onnx_model(model)
    assert ours._graph.nodes == []
    np.testing.assert_array_equal(ours.run(None, {})[0], inputs[0].reshape(2, 3, 4))


def test_runtime_error_names_the_node():
    model = _model("MatMul", 13, [f(2, 3), f(3, 4)], {}, 1)
    model.graph.input[1].type.tensor_type.shape.dim[0].dim_param = "k"
    ours = from_onnx_model(model)
    with pytest.raises(ValueError, match="node_MatMul"):
        ours.run(None, {"in0": f(2, 3), "in1": f(5, 4)})
