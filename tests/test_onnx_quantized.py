"""Dynamically quantized ONNX models (what ``onnxruntime.quantization.quantize_dynamic`` writes)
against ONNX Runtime running the same files.

``com.microsoft`` ``DynamicQuantizeLSTM`` is dequantized at load (``w = scale * (q - zero)``)
and runs on the float32 engine, so it is checked two ways: against ONNX Runtime running the
float LSTM with those dequantized weights (the project's float32 tolerance), and against ONNX
Runtime's quantized kernel itself, which also rounds X and each h_t to uint8 -- there pylstm
must be as close as ONNX Runtime's own float kernel is (see ``test_quantize_dynamic_torch``).
The numpy quantized operators are checked against ONNX Runtime one node at a time.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
quantization = pytest.importorskip("onnxruntime.quantization")

from onnx import helper, numpy_helper

import pylstm
from pylstm.assemble import from_onnx_model

rng = np.random.default_rng(7)
F32_TOL = 3e-5  # float32 outputs of unit scale (ARCHITECTURE.md, Tolerances)
INT8_TOL = 3e-2  # precision="int8": tests/test_precision.py MAX_ABS_ERROR


def _ort(model_bytes, feeds):
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


class Head(torch.nn.Module):
    def __init__(self, bidirectional):
        super().__init__()
        self.lstm = torch.nn.LSTM(12, 16, batch_first=True, bidirectional=bidirectional)
        self.fc = torch.nn.Linear(32 if bidirectional else 16, 5)
        with torch.no_grad():  # weights 3x PyTorch's initial scale: the gates saturate
            for p in self.lstm.parameters():
                p.mul_(3.0)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y)


def _quantized_torch_model(tmp_path, bidirectional: bool, per_channel: bool):
    path = tmp_path / "float.onnx"
    torch.onnx.export(
        Head(bidirectional).eval(),
        (torch.randn(2, 5, 12),),
        str(path),
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch", 1: "time"}},
    )
    qpath = tmp_path / "quantized.onnx"
    quantization.quantize_dynamic(
        str(path),
        str(qpath),
        per_channel=per_channel,
        weight_type=quantization.QuantType.QInt8,
    )
    return onnx.load(str(qpath))


def _dequantized_float(model):
    """``model`` with each DynamicQuantizeLSTM replaced by the float LSTM of its dequantized
    weights (computed here, independently of pylstm)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        if node.op_type != "DynamicQuantizeLSTM":
            nodes.append(node)
            continue
        ins = list(node.input) + [""] * (12 - len(node.input))
        floats = []
        for q, s, z in ((ins[1], ins[8], ins[9]), (ins[2], ins[10], ins[11])):
            qa, sc = inits[q].astype(np.float64), inits[s].astype(np.float64)
            zp = inits[z].astype(np.float64) if z else np.zeros_like(sc)
            D = qa.shape[0]
            w = (qa - zp.reshape(D, 1, -1)) * sc.reshape(D, 1, -1)  # [D, K, 4H]
            name = q + "_float"
            model.graph.initializer.append(
                numpy_helper.from_array(w.transpose(0, 2, 1).astype(np.float32), name)
            )
            floats.append(name)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        nodes.append(
            helper.make_node(
                "LSTM", [ins[0], *floats, *ins[3:8]], list(node.output), node.name, **attrs
            )
        )
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


@pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "bidirectional"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_quantize_dynamic_torch(tmp_path, bidirectional, per_channel):
    q = _quantized_torch_model(tmp_path, bidirectional, per_channel)
    ops = [(n.domain, n.op_type) for n in q.graph.node]
    assert ("com.microsoft", "DynamicQuantizeLSTM") in ops
    assert ("", "MatMulInteger") in ops and ("", "DynamicQuantizeLinear") in ops
    x = rng.normal(size=(3, 9, 12)).astype(np.float32)
    model = from_onnx_model(q)
    (ours,) = model.run(None, {"x": x})
    (ort_quantized,) = _ort(q.SerializeToString(), {"x": x})
    deq = _dequantized_float(q)
    (ort_float,) = _ort(deq.SerializeToString(), {"x": x})
    (ours_float,) = from_onnx_model(deq).run(None, {"x": x})
    # The LSTM's weights are dequantized exactly as ONNX Runtime's float run of the
    # dequantized model uses them; the head's MatMulInteger path is the same on both sides
    # (DynamicQuantizeLinear quantizes the same LSTM output), so pylstm on the quantized file
    # equals pylstm on the dequantized float file up to the head's quantization of a float32
    # LSTM output that differs by at most F32_TOL: compare with ONNX Runtime's float run.
    np.testing.assert_allclose(ours_float, ort_float, rtol=0, atol=F32_TOL)
    # Against ONNX Runtime's quantized kernel, which also rounds X and every h_t to uint8
    # (steps of range/255): pylstm must be as close to it as ONNX Runtime's own float kernel
    # on the same dequantized weights is, plus the float32 tolerance.
    ort_own = np.abs(ort_float - ort_quantized).max()
    assert np.abs(ours - ort_quantized).max() <= ort_own + 2 * F32_TOL + 1e-2 * ort_own
    assert ort_own < 0.1  # sanity: the activation rounding stays small at these scales


def _lstm_only(W_q, R_q, scales, zeros, B, direction="forward"):
    """One DynamicQuantizeLSTM node (hand-built), outputs Y, Y_h, Y_c."""
    _, inp, G = W_q.shape
    H = G // 4
    names = ["W", "R", "B", "", "", "", "", "Ws", "Wz", "Rs", "Rz"]
    inits = [
        numpy_helper.from_array(W_q, "W"),
        numpy_helper.from_array(R_q, "R"),
        numpy_helper.from_array(B, "B"),
        numpy_helper.from_array(scales[0], "Ws"),
        numpy_helper.from_array(zeros[0], "Wz"),
        numpy_helper.from_array(scales[1], "Rs"),
        numpy_helper.from_array(zeros[1], "Rz"),
    ]
    node = helper.make_node(
        "DynamicQuantizeLSTM",
        ["X", *names],
        ["Y", "Y_h", "Y_c"],
        "qlstm",
        domain="com.microsoft",
        hidden_size=H,
        direction=direction,
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, ["T", "B", inp])],
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in node.output],
        inits,
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
        ir_version=8,
    )


@pytest.mark.parametrize("wtype", [np.int8, np.uint8])
def test_hand_built_dynamic_quantize_lstm(wtype):
    D, inp, H = 2, 6, 8
    lo, hi = (-127, 128) if wtype == np.int8 else (0, 256)
    W_q = rng.integers(lo, hi, size=(D, inp, 4 * H)).astype(wtype)
    R_q = rng.integers(lo, hi, size=(D, H, 4 * H)).astype(wtype)
    zeros = [np.zeros((D, 4 * H), wtype), np.zeros(D, wtype)]  # ONNX Runtime wants 0
    scales = [
        rng.uniform(0.01, 0.03, size=(D, 4 * H)).astype(np.float32),  # per channel
        np.array([0.015, 0.02], np.float32),  # per tensor
    ]
    if wtype == np.uint8:  # all-positive weights: smaller scales keep the gates alive
        scales = [s / 4 for s in scales]
    B = rng.normal(size=(D, 8 * H)).astype(np.float32)
    m = _lstm_only(W_q, R_q, scales, zeros, B, direction="bidirectional")
    x = rng.normal(size=(7, 3, inp)).astype(np.float32)
    ours = from_onnx_model(m).run(None, {"X": x})
    theirs = _ort(m.SerializeToString(), {"X": x})
    floats = _ort(_dequantized_float(m).SerializeToString(), {"X": x})
    for a, f, q in zip(ours, floats, theirs):
        np.testing.assert_allclose(a, f, rtol=0, atol=F32_TOL)  # dequantized exactly
        # as close to ONNX Runtime's quantized kernel as its float kernel is (see above)
        assert np.abs(a - q).max() <= np.abs(f - q).max() + 2 * F32_TOL
    int8 = from_onnx_model(m, precision="int8").run(None, {"X": x})
    for a, f in zip(int8, floats):
        np.testing.assert_allclose(a, f, rtol=0, atol=INT8_TOL)  # pylstm's int8 path


def test_nonzero_zero_points():
    """The contrib specification allows zero points; ONNX Runtime's kernel refuses non-zero
    ones, so pylstm is checked against ONNX Runtime's float run of the dequantized weights."""
    D, inp, H = 1, 5, 6
    W_q = rng.integers(0, 256, size=(D, inp, 4 * H)).astype(np.uint8)
    R_q = rng.integers(0, 256, size=(D, H, 4 * H)).astype(np.uint8)
    zeros = [rng.integers(120, 136, size=(D, 4 * H)).astype(np.uint8), np.full(D, 128, np.uint8)]
    scales = [np.full((D, 4 * H), 0.02, np.float32), np.array([0.03], np.float32)]
    B = rng.normal(size=(D, 8 * H)).astype(np.float32)
    m = _lstm_only(W_q, R_q, scales, zeros, B)
    x = rng.normal(size=(6, 2, inp)).astype(np.float32)
    ours = from_onnx_model(m).run(None, {"X": x})
    floats = _ort(_dequantized_float(m).SerializeToString(), {"X": x})
    for a, f in zip(ours, floats):
        np.testing.assert_allclose(a, f, rtol=0, atol=F32_TOL)


def test_quantized_weights_must_be_constants():
    D, inp, H = 1, 4, 3
    m = _lstm_only(
        np.zeros((D, inp, 4 * H), np.int8),
        np.zeros((D, H, 4 * H), np.int8),
        [np.ones(D, np.float32)] * 2,
        [np.zeros(D, np.int8)] * 2,
        np.zeros((D, 8 * H), np.float32),
    )
    m.graph.initializer[3].dims[:] = [2]  # Ws of the wrong shape
    m.graph.initializer[3].float_data[:] = [1.0, 1.0]
    m.graph.initializer[3].ClearField("raw_data")
    with pytest.raises(pylstm.FormatError, match="W_scale must have shape"):
        from_onnx_model(m)


# -- the numpy quantized operators, one node at a time ------------------------------------------
def _single(op, inputs, n_out, domain=""):
    names = [f"i{k}" if v is not None else "" for k, v in enumerate(inputs)]
    node = helper.make_node(op, names, [f"o{k}" for k in range(n_out)], domain=domain)
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
            for n, v in zip(names, inputs)
            if n
        ],
        [onnx.ValueInfoProto(name=o) for o in node.output],
    )
    opsets = [helper.make_opsetid("", 17)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    m = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    feeds = {n: v for n, v in zip(names, inputs) if n}
    return from_onnx_model(m).run(None, feeds), _ort(m.SerializeToString(), feeds)


def u8(*shape):
    return rng.integers(0, 256, size=shape).astype(np.uint8)


def s8(*shape):
    return rng.integers(-128, 128, size=shape).astype(np.int8)


@pytest.mark.parametrize(
    "x",
    [
        rng.normal(size=(4, 5, 6)).astype(np.float32),
        rng.uniform(0.5, 3.0, size=(7, 3)).astype(np.float32),  # all positive: zero point 0
        -rng.uniform(0.5, 3.0, size=(7, 3)).astype(np.float32),  # all negative: zero point 255
        np.zeros((3, 2), np.float32),  # empty range: scale 1
    ],
    ids=["normal", "positive", "negative", "zeros"],
)
def test_dynamic_quantize_linear(x):
    ours, theirs = _single("DynamicQuantizeLinear", [x], 3)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-6)  # scale: one float32 division
    assert ours[2] == theirs[2] and ours[2].dtype == np.uint8
    # rounding x / scale: the same float32 operations, exact
    np.testing.assert_array_equal(ours[0], theirs[0])


@pytest.mark.parametrize(
    "inputs",
    [
        [u8(3, 5), s8(5, 4)],
        [u8(2, 3, 5), s8(5, 4), np.array(128, np.uint8), np.array(0, np.int8)],
        [u8(3, 5), u8(5, 4), u8(1), u8(4)],  # per-column B zero points
        [s8(3, 5), s8(5, 4), None, s8(4)],
    ],
    ids=["no-zero-points", "scalar-zero-points", "per-column", "int8-int8"],
)
def test_matmul_integer(inputs):
    ours, theirs = _single("MatMulInteger", inputs, 1)
    assert ours[0].dtype == np.int32
    np.testing.assert_array_equal(ours[0], theirs[0])  # integer products: exact


def test_matmul_integer_per_row_zero_point():
    """Per-row A zero points (in the specification; ONNX Runtime's kernel takes scalars only)
    against integer arithmetic."""
    a, b, za, zb = u8(3, 5), s8(5, 4), u8(3), s8(4)
    node = type("N", (), {"opset": 10})()
    from pylstm.runtime.ops.common import OPS

    (y,) = OPS["MatMulInteger"](node, a, b, za, zb)
    expected = (a.astype(np.int64) - za[:, None]) @ (b.astype(np.int64) - zb)
    np.testing.assert_array_equal(y, expected)


def test_matmul_integer_to_float():
    a, b = u8(4, 6), s8(6, 3)
    inputs = [
        a,
        b,
        np.array(0.02, np.float32),
        rng.uniform(0.01, 0.05, size=3).astype(np.float32),
        np.array(121, np.uint8),
        np.zeros(3, np.int8),
        rng.normal(size=3).astype(np.float32),
    ]
    ours, theirs = _single("MatMulIntegerToFloat", inputs, 1, domain="com.microsoft")
    # exact integer sums times two float32 scales: float32 rounding of a few products
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5, atol=1e-5)


def test_dynamic_quantize_matmul():
    inputs = [
        rng.normal(size=(2, 4, 6)).astype(np.float32),
        s8(6, 3),
        rng.uniform(0.01, 0.05, size=3).astype(np.float32),
        np.zeros(3, np.int8),
        rng.normal(size=3).astype(np.float32),
    ]
    ours, theirs = _single("DynamicQuantizeMatMul", inputs, 1, domain="com.microsoft")
    # same uint8 quantization of A (checked exactly above), exact integer sums, float32 scales
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5, atol=1e-5)


def test_quantized_model_does_not_stream(tmp_path):
    q = _quantized_torch_model(tmp_path, False, False)
    with pytest.raises(ValueError, match="DynamicQuantizeLinear"):
        from_onnx_model(q).stream(2)
