"""Input dtypes (README, PyTorch quick start): float16, bfloat16 (torch tensors, ml_dtypes arrays), float32 and
float64 are accepted wherever inputs enter and converted to float32.

Each low-precision input is compared with the framework itself run on the float32 the input
converts to exactly (every float16 and bfloat16 value is a float32 value), so the tolerance is
the fp32 one: 3e-5 absolute for unit-scale outputs (different summation order)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers import make_module, torch_forward

import pylstm

ATOL = 3e-5  # fp32 agreement with the framework on the converted input, unit-scale outputs
T, B, I, H = 7, 3, 5, 6


def _ml_bfloat16(x):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16)


#: name -> (float32 values -> the input in that form)
FORMS = {
    "numpy float16": lambda x: x.astype(np.float16),
    "numpy float16 strided": lambda x: np.repeat(x.astype(np.float16), 2, axis=-1)[..., ::2],
    "numpy float64": lambda x: x.astype(np.float64),
    "torch float16": lambda x: torch.from_numpy(x).half(),
    "torch bfloat16": lambda x: torch.from_numpy(x).bfloat16(),
    "torch bfloat16 requiring grad": lambda x: torch.from_numpy(x).bfloat16().requires_grad_(),
    "ml_dtypes bfloat16": _ml_bfloat16,
}


def as_float32(a) -> np.ndarray:
    """The float32 values an input form holds (exact widening)."""
    if isinstance(a, torch.Tensor):
        return a.detach().float().numpy()
    return np.asarray(a).astype(np.float32)


def values(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.fixture(scope="module")
def lstm_module():
    return make_module("lstm", I, H, num_layers=2, bidirectional=True, rng=np.random.default_rng(1))


@pytest.mark.parametrize("form", FORMS)
def test_torch_model_inputs(lstm_module, form):
    model = pylstm.from_torch(lstm_module)
    x = FORMS[form](values((T, B, I)))
    y, (h, c) = model(x)
    ref_y, ref_h, ref_c = torch_forward(lstm_module, as_float32(x))
    np.testing.assert_allclose(y, ref_y, atol=ATOL, rtol=0)
    np.testing.assert_allclose(h, ref_h, atol=ATOL, rtol=0)
    np.testing.assert_allclose(c, ref_c, atol=ATOL, rtol=0)
    assert y.dtype == np.float32


@pytest.mark.parametrize("form", ["torch bfloat16", "numpy float16", "ml_dtypes bfloat16"])
def test_torch_model_initial_state_and_lengths(form):
    """hx in a low precision too, with packed-sequence lengths (GRU, batch first)."""
    module = make_module("gru", I, H, num_layers=2, batch_first=True, rng=np.random.default_rng(2))
    model = pylstm.from_torch(module)
    x = FORMS[form](values((B, T, I), seed=3))
    h0 = FORMS[form](values((2, B, H), seed=4))
    lengths = [T, 2, 5]
    y, h = model(x, h0, lengths=lengths)
    ref_y, ref_h, _ = torch_forward(module, as_float32(x), hx=as_float32(h0), lengths=lengths)
    np.testing.assert_allclose(y, ref_y, atol=ATOL, rtol=0)
    np.testing.assert_allclose(h, ref_h, atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "form",
    [
        "torch bfloat16",
        "numpy float16",
        "ml_dtypes bfloat16",
    ],
)
def test_stream_chunks(form):
    module = make_module("lstm", I, H, rng=np.random.default_rng(5))
    stream = pylstm.from_torch(module).stream(B)
    x = FORMS[form](values((T, B, I), seed=6))
    ys = [stream.step(x[:3]), stream.step(x[3:])]
    ref_y, _, _ = torch_forward(module, as_float32(x))
    np.testing.assert_allclose(np.concatenate(ys), ref_y, atol=ATOL, rtol=0)


@pytest.mark.parametrize("form", ["torch bfloat16", "numpy float16", "ml_dtypes bfloat16"])
def test_onnx_model_feeds(form):
    """A float ONNX model fed float16 / bfloat16: as ONNX Runtime on the float32 values."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx_oracle import make_model, random_case

    arrays = random_case("GRU", np.random.default_rng(7), T=T, B=B, I=I, H=H)
    proto = make_model("GRU", arrays, {})
    model = pylstm.from_onnx(proto)
    x = FORMS[form](arrays["X"])
    got = model.run(None, {"X": x})
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, {"X": as_float32(x)})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=ATOL, rtol=0)


@pytest.mark.parametrize("form", ["torch bfloat16", "numpy float16", "ml_dtypes bfloat16"])
def test_keras_model_inputs(form):
    """A live Keras LSTM called on float16 / bfloat16 input: as Keras on the float32 values."""
    from test_keras_common import import_keras, saturate

    keras = import_keras()
    layer = keras.layers.LSTM(H, return_sequences=True)
    layer(np.zeros((B, T, I), np.float32))
    saturate([layer], np.random.default_rng(8))
    model = pylstm.from_keras(layer)
    x = FORMS[form](values((B, T, I), seed=9))
    want = keras.ops.convert_to_numpy(layer(as_float32(x)))
    np.testing.assert_allclose(model(x), want, atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "bad", [np.zeros((T, B, I), np.int32), np.zeros((T, B, I), bool), torch.zeros(T, B, I).int()]
)
def test_other_dtypes_are_refused_with_the_accepted_list(lstm_module, bad):
    model = pylstm.from_torch(lstm_module)
    with pytest.raises(TypeError, match="float16, bfloat16, float32 or float64"):
        model(bad)
