"""Every activation the engine knows, on every instruction set, against a float64 formula.

A single-layer RNN with identity input weights and zero recurrent weights outputs f(x) exactly
at every step, so each activation is checked on its own over a wide input range (including
values far out in both tails, where exp-based formulas overflow if written carelessly)."""

import math

import numpy as np
import pytest

import pylstm

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
_erf = np.vectorize(math.erf)


def softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def sigmoid(x):
    return 0.5 * (1 + np.tanh(x / 2))


REFERENCE = {
    "sigmoid": lambda x, a, b: sigmoid(x),
    "tanh": lambda x, a, b: np.tanh(x),
    "relu": lambda x, a, b: np.maximum(x, 0),
    "affine": lambda x, a, b: a * x + b,
    "leakyrelu": lambda x, a, b: np.where(x < 0, a * x, x),
    "thresholdedrelu": lambda x, a, b: np.where(x > a, x, 0),
    "scaledtanh": lambda x, a, b: a * np.tanh(b * x),
    "hardsigmoid": lambda x, a, b: np.clip(a * x + b, 0, 1),
    "elu": lambda x, a, b: np.where(x < 0, a * np.expm1(np.minimum(x, 0)), x),
    "softsign": lambda x, a, b: x / (1 + np.abs(x)),
    "softplus": lambda x, a, b: softplus(x),
    "selu": lambda x, a, b: (
        SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0)))
    ),
    "silu": lambda x, a, b: x * sigmoid(x),
    "gelu": lambda x, a, b: 0.5 * x * (1 + _erf(x / np.sqrt(2))),
    "gelutanh": lambda x, a, b: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    "exponential": lambda x, a, b: np.exp(x),
    "relu6": lambda x, a, b: np.clip(x, 0, 6),
    "hardsilu": lambda x, a, b: x * np.clip(x + 3, 0, 6) / 6,
    "hardtanh": lambda x, a, b: np.clip(x, -1, 1),
    "mish": lambda x, a, b: x * np.tanh(softplus(x)),
    "logsigmoid": lambda x, a, b: -softplus(-x),
    "tanhshrink": lambda x, a, b: x - np.tanh(x),
    "celu": lambda x, a, b: np.where(x > 0, x, a * np.expm1(np.minimum(x, 0) / a)),
}
PARAMS = {
    "affine": (0.7, -0.3),
    "leakyrelu": (0.1, 0),
    "thresholdedrelu": (0.5, 0),
    "scaledtanh": (1.5, 0.8),
    "hardsigmoid": (0.2, 0.5),
    "elu": (1.3, 0),
    "celu": (0.8, 0),
}


def test_reference_covers_every_engine_activation():
    assert set(REFERENCE) == set(pylstm.convert.canonical.ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_activation_matches_float64_formula(isa, name):
    alpha, beta = PARAMS.get(name, (0.0, 0.0))
    H = 37  # odd: full vectors and a partial one
    x = np.concatenate([np.linspace(-30, 30, 600), np.linspace(-1e-3, 1e-3, 37), [-88, 88, 0.0]])
    x = np.resize(x, (len(x) // H + 1) * H).reshape(-1, 1, H)
    if name == "exponential":
        x = np.clip(x, -30, 30)  # e^88 is finite in float32, but not the point here
    layer = pylstm.Layer(
        "rnn",
        [pylstm.Direction(w=np.eye(H), r=np.zeros((H, H)), activations=[(name, alpha, beta)])],
    )
    out = pylstm.from_arrays([layer])(x.astype(np.float32))[0]
    ref = REFERENCE[name](x.astype(np.float32).astype(np.float64), alpha, beta)
    # float32 evaluation: a few ulp relative, 2e-7 absolute (erf's approximation error)
    np.testing.assert_allclose(out, ref, rtol=2e-6, atol=3e-7)
