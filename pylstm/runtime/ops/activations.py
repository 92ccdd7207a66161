"""The one table of numpy activation functions, shared by the ONNX operators
(:mod:`pylstm.runtime.ops.math`) and the Keras layers (``Dense``, ``Activation``, ``Conv1D``...).

Each entry is ``fn(x, alpha, beta)`` on float arrays; ``alpha`` / ``beta`` are the parameters
of the functions that take them (``hardsigmoid``: ``clip(alpha*x + beta)``, ``leakyrelu``: the
negative slope, ``elu`` / ``celu``: alpha, ``selu``: alpha and gamma). Which name and parameters
a Keras activation is (``hard_sigmoid`` differs between Keras 2 and 3) is decided at conversion
(:mod:`pylstm.convert.keras_activations`).
"""

from __future__ import annotations

import math

import numpy as np

SELU_ALPHA, SELU_GAMMA = 1.6732632423543772, 1.0507009873554805

_erf_scalar = np.vectorize(math.erf, otypes=[np.float64])


def erf(x) -> np.ndarray:
    """erf, exact to float64 rounding (the standard library's, elementwise)."""
    return _erf_scalar(x)


def sigmoid(x):
    """``1 / (1 + exp(-x))`` without overflow warnings for large ``|x|``."""
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def softplus(x):
    return np.logaddexp(0, x)


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def celu(x, alpha=1.0):
    return np.maximum(x, 0) + np.minimum(0, alpha * np.expm1(np.minimum(x, 0) / alpha))


def selu(x, alpha=SELU_ALPHA, gamma=SELU_GAMMA):
    return gamma * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def gelu(x, approximate: bool = False):
    if approximate:
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def hard_swish(x):
    return x * np.clip(x / 6 + 0.5, 0, 1)


def mish(x):
    return x * np.tanh(softplus(x))


# name -> fn(x, alpha, beta)
ACTIVATIONS = {
    "linear": lambda x, a, b: x,
    "affine": lambda x, a, b: a * x + b,
    "sigmoid": lambda x, a, b: sigmoid(x),
    "tanh": lambda x, a, b: np.tanh(x),
    "relu": lambda x, a, b: np.maximum(x, 0.0),
    "relu6": lambda x, a, b: np.clip(x, 0.0, 6.0),
    "leakyrelu": lambda x, a, b: np.where(x < 0, a * x, x),
    "elu": lambda x, a, b: elu(x, a),
    "selu": lambda x, a, b: selu(x),
    "celu": lambda x, a, b: celu(x, a),
    "softplus": lambda x, a, b: softplus(x),
    "softsign": lambda x, a, b: x / (1.0 + np.abs(x)),
    "silu": lambda x, a, b: x * sigmoid(x),
    "gelu": lambda x, a, b: gelu(x),
    "exponential": lambda x, a, b: np.exp(x),
    "hardsigmoid": lambda x, a, b: np.clip(a * x + b, 0.0, 1.0),
    "hardsilu": lambda x, a, b: hard_swish(x),
    "hardtanh": lambda x, a, b: np.clip(x, -1.0, 1.0),
    "mish": lambda x, a, b: mish(x),
    "logsigmoid": lambda x, a, b: -softplus(-x),
    "tanhshrink": lambda x, a, b: x - np.tanh(x),
    "softshrink": lambda x, a, b: np.where(x > a, x - a, np.where(x < -a, x + a, 0.0)),
    "hardshrink": lambda x, a, b: np.where(np.abs(x) > a, x, 0.0),
    "squareplus": lambda x, a, b: 0.5 * (x + np.sqrt(x * x + a)),
    "sparseplus": lambda x, a, b: np.where(x <= -1, 0.0, np.where(x >= 1, x, 0.25 * (x + 1) ** 2)),
    "sparsesigmoid": lambda x, a, b: np.where(x <= -1, 0.0, np.where(x >= 1, 1.0, 0.5 * (x + 1))),
    "softmax": lambda x, a, b: softmax(x),
    "logsoftmax": lambda x, a, b: log_softmax(x),
}


class NumpyActivation:
    """An activation of :data:`ACTIVATIONS` with its parameters, ``f(x) -> y`` on numpy arrays;
    pickles as its name and parameters (no code).

    Parameters
    ----------
    name : str
        A key of :data:`ACTIVATIONS`.
    alpha, beta : float
    """

    def __init__(self, name: str, alpha: float = 0.0, beta: float = 0.0):
        if name not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}"
            )
        self.name, self.alpha, self.beta = name, alpha, beta
        self._fn = ACTIVATIONS[name]

    def __call__(self, x):
        return self._fn(x, self.alpha, self.beta)

    def __reduce__(self):
        return NumpyActivation, (self.name, self.alpha, self.beta)

    def __repr__(self):
        return f"NumpyActivation({self.name!r}, {self.alpha}, {self.beta})"
