"""The first step from a zero state skips its recurrent product (``time_loop.hpp``
``from_zero_state``): W_hh · 0 is exactly +0 when the recurrent weights are finite, so a call
without an initial state must give, bit for bit, what the same call with explicit zero states
gives (which runs the product), on every instruction set, cell, stacking, direction, masking,
projection and weight precision. It relies on finite weights (0 * inf = NaN), which the
engine and every loader enforce."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_module, torch_forward

import pylstm
from pylstm import _core
from pylstm.runtime.system import simd_level

torch = pytest.importorskip("torch")

CASES = {
    "lstm": ("lstm", {}),
    "lstm-2-layers-bidirectional": ("lstm", {"num_layers": 2, "bidirectional": True}),
    "lstm-projection": ("lstm", {"proj_size": 5}),
    "gru": ("gru", {}),
    "gru-3-layers": ("gru", {"num_layers": 3}),
    "rnn-bidirectional": ("rnn_tanh", {"bidirectional": True}),
}
# (T, B): one step of one sequence (the single-step call), short sequences, a batch wide
# enough for the kernels' many-row path (> kRecRows = 48 rows per item).
SHAPES = [(1, 1), (4, 3), (2, 70)]


def zeros_like_state(state):
    """All-zero ``hx`` shaped as the state a call returned (``h`` or ``(h, c)``)."""
    if isinstance(state, tuple):
        return tuple(np.zeros_like(s) for s in state)
    return np.zeros_like(state)


def states(state):
    return list(state) if isinstance(state, tuple) else [state]


def same_bits(a, b):
    return np.asarray(a).tobytes() == np.asarray(b).tobytes()


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("name", list(CASES))
def test_no_state_is_bit_identical_to_explicit_zeros(isa, name, precision):
    cell, kw = CASES[name]
    rng = np.random.default_rng(21)
    module = make_module(cell, 6, 20, rng=rng, **kw)
    model = pylstm.from_torch(module, precision=precision)
    for T, B in SHAPES:
        x = rng.normal(scale=3.0, size=(T, B, 6)).astype(np.float32)  # saturating gates
        y, state = model(x)
        y_ref, state_ref = model(x, zeros_like_state(state))
        assert same_bits(y, y_ref), (name, precision, T, B)
        for s, s_ref in zip(states(state), states(state_ref)):
            assert same_bits(s, s_ref), (name, precision, T, B)
        if precision == "fp32":  # and against the framework (fp32, unit-scale outputs: 3e-5)
            np.testing.assert_allclose(y, torch_forward(module, x)[0], rtol=0, atol=3e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_masked_first_step_and_lengths(isa, cell):
    """Packed lengths (a sequence of length 0 masks the first step too) take the same path."""
    rng = np.random.default_rng(22)
    module = make_module(cell, 4, 24, rng=rng, bidirectional=True)
    model = pylstm.from_torch(module)
    x = rng.normal(scale=3.0, size=(5, 4, 4)).astype(np.float32)
    lengths = [5, 1, 3, 2]
    y, state = model(x, lengths=lengths)
    y_ref, _ = model(x, zeros_like_state(state), lengths=lengths)
    assert same_bits(y, y_ref)


def onnx_style_layers(rng, I=7, H=20):
    """Layers only ONNX and ``from_arrays`` make: GRU with the reset gate before the product
    (a second product, Rn · (r * h), also zero from a zero state) and after it; LSTM with
    peepholes (they read c, zero too), a coupled input-forget gate and a clip."""

    def direction(gates, peephole=False):
        return pylstm.Direction(
            w=rng.normal(size=(gates * H, I)),
            r=rng.normal(size=(gates * H, H)),
            bias_w=rng.normal(size=gates * H),
            bias_r=rng.normal(size=gates * H),
            peephole=rng.normal(size=3 * H) if peephole else None,
        )

    return {
        "gru-reset-before": pylstm.Layer("gru", [direction(3)], linear_before_reset=False),
        "gru-reset-after": pylstm.Layer("gru", [direction(3)], linear_before_reset=True),
        "lstm-peephole-coupled-clip": pylstm.Layer(
            "lstm", [direction(4, peephole=True)], input_forget=True, clip=3.0
        ),
    }


@pytest.mark.parametrize(
    "name", ["gru-reset-before", "gru-reset-after", "lstm-peephole-coupled-clip"]
)
def test_onnx_style_layers(isa, name):
    rng = np.random.default_rng(23)
    model = pylstm.from_arrays([onnx_style_layers(rng)[name]])
    x = rng.normal(size=(3, 2, 7)).astype(np.float32)
    y, state = model(x)
    y_ref, state_ref = model(x, zeros_like_state(state))
    assert same_bits(y, y_ref)
    for s, s_ref in zip(states(state), states(state_ref)):
        assert same_bits(s, s_ref)


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_nonfinite_recurrent_weights_never_reach_the_engine(bad):
    """The skip relies on finite weights (0 * inf = NaN): the engine refuses others, and so
    do the loaders above it (test_nonfinite, test_hostile_files)."""
    core = onnx_style_layers(np.random.default_rng(24))["gru-reset-before"].canonical.to_core()
    r = core["directions"][0]["r"].copy()
    r[3, 2] = bad
    core["directions"][0]["r"] = r
    with pytest.raises(ValueError, match="NaN or inf"):
        _core.Network([core], simd_level(), "fp32")
