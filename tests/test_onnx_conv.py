"""The ONNX convolution family (pylstm/runtime/ops/conv.py) against ONNX Runtime: Conv and
ConvTranspose (1-D and 2-D, pads, auto_pad, strides, dilations, group), MaxPool, AveragePool
(count_include_pad, ceil_mode), global pools, BatchNormalization, Pad and Resize on hand-built
single-node graphs, and a torch.onnx.export of a conv front end followed by a bidirectional LSTM.

Tolerance: 1e-5 relative-or-absolute for float maths (float64 sums here, float32 in ONNX
Runtime, a few dozen products per output); 3e-5 absolute for the LSTM model's unit-scale outputs.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from test_onnx_ops import _model

from pylstm.assemble import from_onnx_model

rng = np.random.default_rng(1234)
F = np.float32


def f(*shape):
    return rng.normal(size=shape).astype(F)


# (id, op, opset, inputs, attrs)
# fmt: off
CASES = [
    ("conv1d", "Conv", 13, [f(2, 3, 11), f(4, 3, 3), f(4)], {}),
    ("conv1d-pads-stride-dil", "Conv", 13, [f(2, 3, 12), f(5, 3, 3)], {"pads": [2, 1], "strides": [2], "dilations": [2]}),
    ("conv1d-same-upper", "Conv", 13, [f(2, 4, 10), f(6, 4, 4), f(6)], {"auto_pad": "SAME_UPPER", "strides": [3]}),
    ("conv1d-same-lower", "Conv", 13, [f(2, 4, 10), f(6, 4, 4)], {"auto_pad": "SAME_LOWER"}),
    ("conv1d-valid-group", "Conv", 13, [f(2, 4, 9), f(6, 2, 3), f(6)], {"auto_pad": "VALID", "group": 2}),
    ("conv1d-depthwise", "Conv", 11, [f(1, 4, 9), f(4, 1, 5)], {"group": 4, "pads": [2, 2]}),
    ("conv2d", "Conv", 13, [f(2, 3, 7, 8), f(4, 3, 3, 2), f(4)], {"pads": [1, 0, 1, 1], "strides": [2, 1]}),
    ("conv2d-dil-group", "Conv", 13, [f(1, 4, 9, 9), f(6, 2, 3, 3)], {"dilations": [2, 1], "group": 2, "pads": [2, 1, 2, 1]}),
    ("conv3d", "Conv", 13, [f(1, 2, 4, 5, 6), f(3, 2, 2, 3, 2), f(3)], {"pads": [1, 0, 1, 0, 1, 0], "strides": [1, 2, 1]}),
    ("convT3d", "ConvTranspose", 13, [f(1, 2, 3, 3, 4), f(2, 2, 2, 2, 3)], {"strides": [2, 1, 1]}),
    ("maxpool3d", "MaxPool", 12, [f(1, 2, 4, 5, 6)], {"kernel_shape": [2, 2, 3], "strides": [2, 1, 2]}),
    ("convT1d-same-lower", "ConvTranspose", 13, [f(1, 3, 5), f(3, 2, 4)], {"strides": [2], "auto_pad": "SAME_LOWER"}),
    ("convT1d", "ConvTranspose", 13, [f(2, 3, 6), f(3, 4, 3), f(4)], {}),
    ("convT1d-stride-pads-outpad", "ConvTranspose", 13, [f(2, 3, 6), f(3, 2, 4)], {"strides": [2], "pads": [1, 2], "output_padding": [1]}),
    ("convT1d-group-dil", "ConvTranspose", 13, [f(1, 4, 5), f(4, 3, 3), f(6)], {"group": 2, "dilations": [2], "strides": [2]}),
    ("convT1d-output-shape", "ConvTranspose", 13, [f(1, 3, 5), f(3, 2, 3)], {"strides": [2], "output_shape": [10]}),
    ("convT1d-same-upper", "ConvTranspose", 13, [f(1, 3, 5), f(3, 2, 4)], {"strides": [2], "auto_pad": "SAME_UPPER"}),
    ("convT2d", "ConvTranspose", 13, [f(2, 3, 4, 5), f(3, 2, 3, 3), f(2)], {"strides": [2, 1], "pads": [1, 0, 0, 1]}),
    ("maxpool1d", "MaxPool", 12, [f(2, 3, 11)], {"kernel_shape": [3], "strides": [2]}),
    ("maxpool1d-pads-ceil", "MaxPool", 12, [f(2, 3, 10)], {"kernel_shape": [3], "strides": [2], "pads": [1, 1], "ceil_mode": 1}),
    ("maxpool1d-dil", "MaxPool", 12, [f(2, 3, 10)], {"kernel_shape": [2], "dilations": [2], "pads": [1, 1]}),
    ("maxpool1d-same", "MaxPool", 12, [f(2, 3, 10)], {"kernel_shape": [4], "strides": [3], "auto_pad": "SAME_UPPER"}),
    ("maxpool2d", "MaxPool", 12, [f(2, 3, 7, 6)], {"kernel_shape": [2, 3], "strides": [2, 2], "pads": [0, 1, 1, 1]}),
    ("avgpool1d", "AveragePool", 11, [f(2, 3, 11)], {"kernel_shape": [3], "strides": [2]}),
    ("avgpool1d-pads", "AveragePool", 11, [f(2, 3, 10)], {"kernel_shape": [4], "strides": [3], "pads": [2, 1]}),
    ("avgpool1d-pads-include", "AveragePool", 11, [f(2, 3, 10)], {"kernel_shape": [4], "strides": [3], "pads": [2, 1], "count_include_pad": 1}),
    ("avgpool1d-ceil-include", "AveragePool", 11, [f(2, 3, 10)], {"kernel_shape": [3], "strides": [2], "pads": [1, 1], "ceil_mode": 1, "count_include_pad": 1}),
    ("avgpool1d-same-lower", "AveragePool", 11, [f(2, 3, 10)], {"kernel_shape": [3], "strides": [2], "auto_pad": "SAME_LOWER"}),
    ("avgpool2d", "AveragePool", 11, [f(1, 2, 7, 8)], {"kernel_shape": [3, 2], "pads": [1, 1, 1, 0], "count_include_pad": 1}),
    ("globalavg1d", "GlobalAveragePool", 13, [f(2, 3, 9)], {}),
    ("globalmax2d", "GlobalMaxPool", 13, [f(2, 3, 4, 5)], {}),
    ("globalavg2d", "GlobalAveragePool", 13, [f(2, 3, 4, 5)], {}),
    ("batchnorm1d", "BatchNormalization", 15, [f(2, 3, 7), f(3), f(3), f(3), np.abs(f(3)) + 0.5], {"epsilon": 1e-3}),
    ("pad-constant", "Pad", 13, [f(2, 3, 5), np.array([0, 0, 2, 0, 0, 1], np.int64), np.array(1.5, F)], {}),
    ("pad-reflect", "Pad", 13, [f(2, 3, 5), np.array([0, 0, 2, 0, 0, 3], np.int64)], {"mode": "reflect"}),
    ("pad-edge", "Pad", 13, [f(2, 3, 5), np.array([0, 1, 2, 0, 0, 3], np.int64)], {"mode": "edge"}),
    ("resize-nearest-scales", "Resize", 13, [f(1, 2, 5), np.array([], F), np.array([1, 1, 2.0], F)], {"mode": "nearest"}),
    ("resize-nearest-sizes-asym-floor", "Resize", 13, [f(1, 2, 4, 5), np.array([], F), np.array([], F), np.array([1, 2, 7, 3], np.int64)], {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}),
    ("resize-nearest-half-ceil", "Resize", 13, [f(1, 2, 6), np.array([], F), np.array([1, 1, 1.5], F)], {"mode": "nearest", "nearest_mode": "round_prefer_ceil"}),
    ("resize-linear-half", "Resize", 13, [f(1, 2, 5), np.array([], F), np.array([1, 1, 2.5], F)], {"mode": "linear"}),
    ("resize-linear-align", "Resize", 13, [f(1, 2, 4, 5), np.array([], F), np.array([], F), np.array([1, 2, 7, 9], np.int64)], {"mode": "linear", "coordinate_transformation_mode": "align_corners"}),
    ("resize-linear-pytorch", "Resize", 13, [f(1, 2, 4, 5), np.array([], F), np.array([1, 1, 0.5, 1.8], F)], {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}),
    ("resize-linear-asym-down", "Resize", 13, [f(1, 2, 9), np.array([], F), np.array([1, 1, 0.4], F)], {"mode": "linear", "coordinate_transformation_mode": "asymmetric"}),
    ("upsample9-nearest", "Upsample", 9, [f(1, 2, 5, 4), np.array([1, 1, 2, 3], F)], {"mode": "nearest"}),
    ("upsample9-linear", "Upsample", 9, [f(1, 2, 5, 4), np.array([1, 1, 2, 3], F)], {"mode": "linear"}),
    ("resize10-nearest-down", "Resize", 10, [f(1, 2, 9, 8), np.array([1, 1, 0.6, 2.5], F)], {"mode": "nearest"}),
    ("resize10-linear", "Resize", 10, [f(1, 2, 9, 8), np.array([1, 1, 0.3, 0.7], F)], {"mode": "linear"}),
    ("resize-opset11-sizes", "Resize", 11, [f(1, 2, 6), np.array([], F), np.array([], F), np.array([1, 2, 9], np.int64)], {"mode": "linear"}),
]
# fmt: on


@pytest.mark.parametrize(
    ("op", "opset", "inputs", "attrs"), [pytest.param(*c[1:], id=c[0]) for c in CASES]
)
def test_conv_family_matches_onnxruntime(op, opset, inputs, attrs):
    model = _model(op, opset, inputs, attrs, 1)
    feeds = {f"in{k}": a for k, a in enumerate(inputs)}
    if op == "Resize" and opset >= 13:  # an empty roi / scales: omitted (ONNX Runtime wants "")
        node = model.graph.node[0]
        for k, a in enumerate(inputs):
            if k and a.size == 0:
                node.input[k] = ""
                feeds.pop(f"in{k}")
        kept = [vi for vi in model.graph.input if vi.name in feeds]
        del model.graph.input[:]
        model.graph.input.extend(kept)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    (want,) = session.run(None, feeds)
    (got,) = from_onnx_model(model).run(None, feeds)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # float maths (see above)


def test_exported_conv_front_end_bidirectional_lstm(tmp_path):
    torch = pytest.importorskip("torch")

    class FrontEnd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(4, 8, 5, padding=2)
            self.bn = torch.nn.BatchNorm1d(8)
            self.pool = torch.nn.MaxPool1d(2)
            self.conv2 = torch.nn.Conv1d(8, 8, 3, stride=1, padding=1, groups=2)
            self.avg = torch.nn.AvgPool1d(3, stride=1, padding=1)
            self.lstm = torch.nn.LSTM(8, 6, batch_first=True, bidirectional=True)
            self.head = torch.nn.Linear(12, 3)

        def forward(self, x):  # x [B, 4, T]
            h = self.pool(torch.relu(self.bn(self.conv(x))))
            h = self.avg(torch.tanh(self.conv2(h)))
            h = torch.nn.functional.interpolate(h, scale_factor=2.0, mode="linear")
            y, _ = self.lstm(h.transpose(1, 2))
            return self.head(y)

    torch.manual_seed(0)
    net = FrontEnd().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
    path = str(tmp_path / "front.onnx")
    torch.onnx.export(
        net,
        (torch.randn(2, 4, 16),),
        path,
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "B", 2: "T"}, "y": {0: "B", 1: "T2"}},
    )
    import pylstm

    ours = pylstm.load(path)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    for batch, steps in ((3, 20), (1, 9)):
        x = (rng.normal(size=(batch, 4, steps)) * 2).astype(F)
        (want,) = session.run(None, {"x": x})
        (got,) = ours.run(None, {"x": x})
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=3e-5)  # unit-scale outputs
        np.testing.assert_allclose(got, ref, atol=3e-5)  # and torch itself
    with pytest.raises(ValueError, match="cannot stream"):  # bidirectional, convolutions
        ours.stream(2)


def test_resize_to_a_huge_size_is_refused_before_allocating():
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest")
    scales = numpy_helper.from_array(np.array([1, 1, 1e9], F), "s")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4])],
        [helper.make_empty_tensor_value_info("y")],
        initializer=[scales],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(ValueError, match="would produce"):
        from_onnx_model(model).run(None, {"x": np.ones((1, 1, 4), F)})


def test_a_convolution_over_time_refuses_to_stream(tmp_path):
    torch = pytest.importorskip("torch")

    class ConvLSTM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(3, 4, 3, padding=1)
            self.lstm = torch.nn.LSTM(4, 5, batch_first=True)

        def forward(self, x):  # x [B, 3, T]
            return self.lstm(self.conv(x).transpose(1, 2))[0]

    path = str(tmp_path / "conv_lstm.onnx")
    torch.onnx.export(
        ConvLSTM().eval(),
        (torch.randn(1, 3, 7),),
        path,
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "B", 2: "T"}},
    )
    import pylstm

    with pytest.raises(ValueError, match=r"Conv.*neighbouring time steps"):
        pylstm.load(path).stream(1)
