"""NaN and infinity in the input propagate as PyTorch, Keras and ONNX Runtime propagate them.

A NaN at step t of a sequence makes that sequence's outputs NaN from t on (its state is NaN),
other sequences of the batch are untouched; an infinity saturates the gates it reaches
(sigmoid(+-inf) = 1/0, tanh(+-inf) = +-1), and the outputs stay finite where the framework's do.
Checked on every instruction set (``PYLSTM_SIMD``), for every cell, stacked and bidirectional
layers, streaming, packed lengths, reduced-precision weights, against torch, ONNX Runtime and
Keras, with the same random saturating weights as the parity tests.

Comparison (``assert_same``): NaN exactly where the reference has NaN, infinities of the same
sign where it has them, finite values within the tolerance written at each call (fp32 3e-5 for
unit-scale outputs, as everywhere in the tests).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_module, torch_forward

import pylstm

torch = pytest.importorskip("torch")
F = torch.nn.functional

ISAS = list(pylstm._core.supported_isas())
ATOL = 3e-5  # fp32, unit-scale outputs


def assert_same(actual, expected, *, atol, scaled=False, what=""):
    """NaN where ``expected`` is NaN, the same infinities, finite values within ``atol``
    (times ``max(1, max |row|)`` with ``scaled``, for unbounded outputs such as c_n)."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, what
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    assert np.array_equal(nan_a, nan_e), (
        f"{what}: NaN at {np.argwhere(nan_a & ~nan_e)[:5].tolist()} (not in the reference), "
        f"missing at {np.argwhere(nan_e & ~nan_a)[:5].tolist()}"
    )
    inf_e = np.isinf(expected)
    assert np.array_equal(np.isinf(actual), inf_e), f"{what}: infinities differ"
    assert np.array_equal(actual[inf_e], expected[inf_e]), f"{what}: infinities' signs differ"
    fin = np.isfinite(expected)
    bound = np.full(expected.shape, atol)
    if scaled:
        row = np.abs(np.where(fin, expected, 0)).max(axis=-1, keepdims=True)
        bound = bound * np.maximum(1.0, row)
    err = np.abs(np.where(fin, actual, 0) - np.where(fin, expected, 0))
    assert (err <= bound).all(), f"{what}: max error {err.max():.3g} > {atol}"


# -- each activation on its own ------------------------------------------------------------------

VALUES = np.array(
    [np.nan, np.inf, -np.inf, 1e30, -1e30, 100.0, -100.0, 88.5, -88.5, 0.5, -3.0], np.float32
)
PARAMS = {
    "affine": (0.7, -0.3),
    "leakyrelu": (0.1, 0.0),
    "thresholdedrelu": (0.5, 0.0),
    "scaledtanh": (1.5, 0.8),
    "hardsigmoid": (0.2, 0.5),
    "elu": (1.3, 0.0),
    "celu": (0.8, 0.0),
}
# torch's function for each engine activation (the formula for ONNX's own ones); evaluated one
# element at a time: torch's vectorised CPU gelu gives NaN at +inf where its scalar path (and the
# formula, and Keras) give +inf.
TORCH = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "affine": lambda x: 0.7 * x - 0.3,
    "leakyrelu": lambda x: F.leaky_relu(x, 0.1),
    "thresholdedrelu": lambda x: torch.where(x > 0.5, x, 0.0),
    "scaledtanh": lambda x: 1.5 * torch.tanh(0.8 * x),
    "hardsigmoid": lambda x: torch.clamp(0.2 * x + 0.5, 0, 1),
    "elu": lambda x: F.elu(x, 1.3),
    "softsign": F.softsign,
    "softplus": F.softplus,
    "selu": F.selu,
    "silu": F.silu,
    "gelu": F.gelu,
    "gelutanh": lambda x: F.gelu(x, approximate="tanh"),
    "exponential": torch.exp,
    "relu6": F.relu6,
    "hardsilu": F.hardswish,
    "hardtanh": F.hardtanh,
    "mish": F.mish,
    "logsigmoid": F.logsigmoid,
    "tanhshrink": F.tanhshrink,
    "celu": lambda x: F.celu(x, 0.8),
}


def test_every_activation_has_a_torch_reference():
    assert set(TORCH) == set(pylstm.convert.canonical.ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(TORCH))
def test_activation_of_nonfinite_values_matches_torch(isa, name):
    """One value per batch row (an input feature of its own, weights 1): every unit of the row
    sees it, 37 units = full vectors and a partial one."""
    H = 37
    alpha, beta = PARAMS.get(name, (0.0, 0.0))
    d = pylstm.Direction(w=np.ones((H, 1)), r=np.zeros((H, H)), activations=[(name, alpha, beta)])
    model = pylstm.from_arrays([pylstm.Layer("rnn", [d])])
    out = model(VALUES.reshape(1, -1, 1))[0][0]  # [B, H]
    ref = np.array([TORCH[name](torch.tensor([v])).item() for v in VALUES], np.float32)
    # 1e-6 absolute: denormal-sized differences (sigmoid(-inf) is 1/(1 + e^88.3) here, 0 in
    # torch) and float32 rounding of unit-scale values; scaled by the value for large outputs
    assert_same(out, np.repeat(ref[:, None], H, axis=1), atol=1e-6, scaled=True, what=name)


@pytest.mark.parametrize("clip", [None, 2.0])
def test_clip_keeps_nan(isa, clip):
    """ONNX ``clip`` bounds gate inputs; a NaN stays NaN, +-inf become +-clip."""
    H = 9
    d = pylstm.Direction(w=np.ones((H, 1)), r=np.zeros((H, H)), activations=[("affine", 1.0, 0)])
    model = pylstm.from_arrays([pylstm.Layer("rnn", [d], clip=clip)])
    x = np.array([np.nan, np.inf, -np.inf, 5.0, -1.0], np.float32)
    out = model(x.reshape(1, -1, 1))[0][0, :, 0]
    ref = x if clip is None else np.clip(x, -clip, clip)  # np.clip keeps NaN
    assert_same(out, ref, atol=0, what=f"clip={clip}")


# -- whole layers against torch -----------------------------------------------------------------

CONFIGS = {
    "lstm": ("lstm", {}),
    "gru": ("gru", {}),
    "rnn_tanh": ("rnn_tanh", {}),
    "rnn_relu": ("rnn_relu", {}),
    "lstm-stacked-bi": ("lstm", {"num_layers": 2, "bidirectional": True}),
    "lstm-proj": ("lstm", {"proj_size": 5}),
    "gru-stacked-bi": ("gru", {"num_layers": 2, "bidirectional": True}),
}


def poisoned_input(rng, T=9, B=5, I=6):
    """Saturating input with NaN in row 1 at step 3, +inf in row 2 at step 2, -inf in row 3 at
    step 5 and NaN and inf together in row 4 at step 7; row 0 stays clean."""
    x = (rng.normal(size=(T, B, I)) * 2).astype(np.float32)
    x[3, 1, 2] = np.nan
    x[2, 2, 0] = np.inf
    x[5, 3, 4] = -np.inf
    x[7, 4, 1] = np.nan
    x[7, 4, 3] = np.inf
    return x


def tolerance(cell):
    # relu RNN outputs are unbounded: 1e-5 relative to the row (as in test_torch_parity)
    return (1e-5, True) if cell == "rnn_relu" else (ATOL, True)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_nan_and_inf_propagate_as_in_torch(isa, name):
    cell, kw = CONFIGS[name]
    rng = np.random.default_rng(11)
    module = make_module(cell, 6, 10, rng=rng, scale=3.0 if cell != "rnn_relu" else 1.0, **kw)
    x = poisoned_input(rng)
    y_ref, h_ref, c_ref = torch_forward(module, x)
    assert np.isnan(y_ref[3:, 1]).all() and np.isfinite(y_ref[:, 0]).all()  # the premise
    model = pylstm.from_torch(module)
    y, state = model(x)
    h, c = state if cell == "lstm" else (state, None)
    atol, scaled = tolerance(cell)
    assert_same(y, y_ref, atol=atol, scaled=scaled, what="output")
    assert_same(h, h_ref, atol=atol, scaled=scaled, what="h_n")
    if c is not None:
        assert_same(c, c_ref, atol=atol, scaled=True, what="c_n")  # c is unbounded


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_nan_in_initial_state(isa, cell):
    rng = np.random.default_rng(12)
    module = make_module(cell, 4, 8, rng=rng)
    x = rng.normal(size=(5, 3, 4)).astype(np.float32)
    h0 = rng.uniform(-1, 1, size=(1, 3, 8)).astype(np.float32)
    h0[0, 1, 2] = np.nan
    hx = (h0, rng.uniform(-2, 2, size=(1, 3, 8)).astype(np.float32)) if cell == "lstm" else h0
    if cell == "lstm":
        hx[1][0, 2, 5] = np.inf  # an infinite cell state: tanh(inf) = 1, the gates carry it
    y_ref = torch_forward(module, x, hx=hx)[0]
    y = pylstm.from_torch(module)(x, hx)[0]
    assert_same(y, y_ref, atol=ATOL, what="output")  # unit-scale outputs


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_nan_past_a_sequence_length_does_not_leak(isa, cell):
    """Padding past ``lengths`` is never read: NaN there changes nothing (torch's packed
    sequences never see it)."""
    rng = np.random.default_rng(13)
    module = make_module(cell, 4, 8, rng=rng, bidirectional=True)
    x = rng.normal(size=(6, 3, 4)).astype(np.float32)
    lengths = [6, 3, 1]
    x[3:, 1] = np.nan
    x[1:, 2] = np.inf
    y_ref, h_ref, _ = torch_forward(module, x, lengths=lengths)
    y, state = pylstm.from_torch(module)(x, lengths=lengths)
    h = state[0] if cell == "lstm" else state
    assert np.isfinite(y_ref).all()
    assert_same(y, y_ref, atol=ATOL, what="output")  # unit-scale outputs
    assert_same(h, h_ref, atol=ATOL, what="h_n")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_streaming_carries_nan_into_later_chunks(isa, cell):
    rng = np.random.default_rng(14)
    module = make_module(cell, 6, 10, rng=rng, num_layers=2)
    x = poisoned_input(rng)
    y_ref = torch_forward(module, x)[0]
    stream = pylstm.from_torch(module).stream(x.shape[1])
    y = np.concatenate([stream.step(x[t : t + 2]) for t in range(0, len(x), 2)])
    assert_same(y, y_ref, atol=ATOL, what="stream")  # unit-scale outputs
    # a row that went NaN stays NaN; the clean row stays clean after the chunk that poisoned it
    more = rng.normal(size=(2, x.shape[1], 6)).astype(np.float32)
    y2 = stream.step(more)
    assert np.isnan(y2[:, 1]).all() and np.isfinite(y2[:, 0]).all()
    stream.reset()
    assert np.isfinite(stream.step(more)).all()


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_reduced_precision_propagates_the_same(isa, precision, cell):
    """Weights in bf16/int8, inputs and sums in float32: NaN and infinities exactly where torch
    has them; finite values within the documented precision bounds (test_precision.py:
    1e-2 bf16, 3e-2 int8, for torch's default init). int8 is fed NaN only: a small weight that
    rounds to int8 0 times an infinite input is NaN where the float32 weight gives +-inf."""
    rng = np.random.default_rng(15)
    module = make_module(cell, 6, 24, rng=rng, scale=1.0)
    x = poisoned_input(rng)
    if precision == "int8":
        x[np.isinf(x)] = np.nan
    y_ref = torch_forward(module, x)[0]
    y = pylstm.from_torch(module, precision=precision)(x)[0]
    assert_same(y, y_ref, atol={"bf16": 1e-2, "int8": 3e-2}[precision], what=precision)


def test_keras_layers_propagate_like_keras():
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(16)
    x = np.transpose(poisoned_input(rng), (1, 0, 2))  # Keras: batch first
    keras.utils.set_random_seed(3)
    for layer in (
        keras.layers.LSTM(7, return_sequences=True),
        keras.layers.GRU(7, return_sequences=True),
        keras.layers.SimpleRNN(7, return_sequences=True),
        keras.layers.Bidirectional(keras.layers.LSTM(5, return_sequences=True)),
    ):
        ref = np.asarray(keras.ops.convert_to_numpy(layer(x)))
        out = pylstm.from_keras(layer)(x)
        assert_same(out, ref, atol=ATOL, what=type(layer).__name__)  # unit-scale outputs


# -- ONNX Runtime ---------------------------------------------------------------------------------


def test_exported_model_against_onnxruntime(tmp_path):
    """ONNX Runtime's LSTM and GRU kernels drop NaN (their sigmoid/tanh clamp it away: the
    outputs of a sequence with a NaN stay finite, a silent wrong answer); pylstm keeps it, as
    torch does. So the rows with infinities and the clean row are compared with ONNX Runtime,
    the rows with NaN with torch."""
    ort = pytest.importorskip("onnxruntime")
    import warnings

    rng = np.random.default_rng(17)
    for cell in ("lstm", "gru"):
        module = make_module(cell, 6, 10, rng=rng, num_layers=2, bidirectional=True)
        path = str(tmp_path / f"{cell}.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (torch.zeros(3, 2, 6),),
                path,
                dynamo=False,
                opset_version=14,
                input_names=["x"],
                output_names=["y", "h_n"] + (["c_n"] if cell == "lstm" else []),
                dynamic_axes={"x": {0: "time", 1: "batch"}},
            )
        x = poisoned_input(rng)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        ref = session.run(None, {"x": x})
        out = pylstm.load(path).run(None, {"x": x})
        y_torch, h_torch, c_torch = torch_forward(module, x)
        no_nan = [0, 2, 3]  # rows of poisoned_input without NaN
        for a, b, t, n in zip(out, ref, (y_torch, h_torch, c_torch), ("y", "h_n", "c_n")):
            # unit-scale outputs except c_n (scaled by its row)
            assert_same(a[:, no_nan], b[:, no_nan], atol=ATOL, scaled=True, what=f"{cell} {n}")
            y = np.reshape(a, t.shape) if n == "y" else a  # exported y: [T, B, 2H]
            assert_same(y, t, atol=ATOL, scaled=True, what=f"{cell} {n} vs torch")


ONNX_ACTIVATIONS = {
    "Tanh": (None, None),
    "Sigmoid": (None, None),
    "Affine": (0.7, -0.3),
    "LeakyRelu": (0.1, None),
    "ThresholdedRelu": (0.5, None),
    "ScaledTanh": (1.5, 0.8),
    "Elu": (1.3, None),
    "Softsign": (None, None),
    # Relu, HardSigmoid: ONNX Runtime's RNN kernels map NaN to 0 there (max(x, 0) with the NaN
    # dropped), unlike its own Relu/HardSigmoid operators, torch and Keras; pylstm keeps NaN
    # (checked against torch above). Softplus: ONNX Runtime's RNN kernel computes log(1 + e^x)
    # and overflows to inf above x = 88 (softplus(100) = inf); pylstm gives x, as torch does.
}


@pytest.mark.parametrize("name", list(ONNX_ACTIVATIONS))
@pytest.mark.parametrize("clip", [None, 2.0])
def test_onnx_rnn_activations_against_onnxruntime(tmp_path, isa, name, clip):
    ort = pytest.importorskip("onnxruntime")
    import onnx
    from onnx_oracle import make_model

    H = 5
    alpha, beta = ONNX_ACTIVATIONS[name]
    attrs = {"activations": [name]}
    if alpha is not None:
        attrs["activation_alpha"] = [alpha]
    if beta is not None:
        attrs["activation_beta"] = [beta]
    if clip:
        attrs["clip"] = clip
    x = VALUES.reshape(1, -1, 1)
    arrays = {"X": x, "W": np.ones((1, H, 1), np.float32), "R": np.zeros((1, H, H), np.float32)}
    proto = make_model("RNN", arrays, attrs)
    path = str(tmp_path / "rnn.onnx")
    onnx.save(proto, path)
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"X": x})
    out = pylstm.load(path).run(None, {"X": x})
    for a, b in zip(out, ref):
        # 1e-6 relative to the value (affine of 1e30 is 7e29)
        assert_same(a, b, atol=1e-6, scaled=True, what=f"{name} clip={clip}")


ONNX_VARIANTS = {
    "gru-reset-before": ("GRU", {"linear_before_reset": 0}, {}),
    "gru-reset-after-bi": ("GRU", {"linear_before_reset": 1, "direction": "bidirectional"}, {}),
    "lstm-peephole-clip": ("LSTM", {"clip": 1.5}, {"peephole": True}),
    "lstm-input-forget": ("LSTM", {"input_forget": 1}, {}),
    "rnn-relu-reverse": ("RNN", {"activations": ["Relu"], "direction": "reverse"}, {}),
}


@pytest.mark.parametrize("name", list(ONNX_VARIANTS))
def test_onnx_variants_against_the_float64_oracle(tmp_path, isa, name):
    """Cell variants no framework runs with NaN kept (ONNX Runtime's LSTM/GRU drop it): the
    float64 numpy oracle of tests/onnx_oracle.py, which propagates NaN and infinity by IEEE."""
    import warnings

    onnx = pytest.importorskip("onnx")
    from onnx_oracle import make_model, random_case, reference

    op, attrs, case = ONNX_VARIANTS[name]
    rng = np.random.default_rng(18)
    arrays = random_case(
        op,
        rng,
        T=7,
        B=5,
        I=4,
        H=6,
        direction=attrs.get("direction", "forward"),
        initial=True,
        **case,
    )
    x = arrays["X"]
    x[2, 1, 0] = np.nan
    x[3, 2, 1] = np.inf
    x[5, 3, 3] = -np.inf
    path = str(tmp_path / f"{name}.onnx")
    onnx.save(make_model(op, arrays, attrs), path)
    feeds = {"X": x}
    out = pylstm.load(path).run(None, feeds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # inf - inf and exp overflow in the oracle, as in IEEE
        ref = reference(op, arrays, attrs)
    assert np.isnan(ref[0]).any() and np.isfinite(ref[0][:, :, 0]).all()  # row 0 stays clean
    for a, b, n in zip(out, ref, ("Y", "Y_h", "Y_c")):
        # fp32 against float64: 3e-5 for unit-scale outputs, relative to the row for relu / c
        assert_same(a, b, atol=ATOL, scaled=True, what=f"{name} {n}")
