"""Keras activations: names in saved configs -> engine activations (recurrent layers) and numpy
functions (``Dense``, ``TimeDistributed(Dense)``, ``Activation``).

Keras 3 and tf.keras 2 differ in one name: ``hard_sigmoid`` is ``clip(x/6 + 0.5, 0, 1)`` in
Keras 3 and ``clip(0.2*x + 0.5, 0, 1)`` in tf.keras 2 (and Keras 2). Every function here takes the
Keras major version that wrote the model (``keras_major``, 2 or 3) to pick the right one.
"""

from __future__ import annotations

import numpy as np

from ...errors import UnsupportedError

# Keras name -> (engine name, alpha, beta); hard_sigmoid depends on the version (below).
_ENGINE = {
    "sigmoid": ("sigmoid",),
    "tanh": ("tanh",),
    "relu": ("relu",),
    "linear": ("affine", 1.0, 0.0),
    "elu": ("elu", 1.0),
    "selu": ("selu",),
    "softplus": ("softplus",),
    "softsign": ("softsign",),
    "silu": ("silu",),
    "swish": ("silu",),
    "gelu": ("gelu",),  # Keras' default approximate=False: x/2 (1 + erf(x/sqrt 2))
    "exponential": ("exponential",),
    "relu6": ("relu6",),
    "hard_silu": ("hardsilu",),
    "hard_swish": ("hardsilu",),
    "hard_tanh": ("hardtanh",),
    "mish": ("mish",),
    "log_sigmoid": ("logsigmoid",),
    "tanh_shrink": ("tanhshrink",),
    "celu": ("celu", 1.0),
    "leaky_relu": ("leakyrelu", 0.2),  # Keras 3 default negative_slope
}


def activation_name(value, where: str) -> str:
    """The Keras activation name in a config entry (a string, a serialized function or None).

    Raises
    ------
    UnsupportedError
        A custom (registered) or non-function activation; the message names ``where``.
    """
    if value is None:
        return "linear"
    if isinstance(value, str):
        return value.split(">")[-1]  # "keras.activations>relu" style registered names
    if isinstance(value, dict):
        inner = value.get("config")
        if value.get("class_name") == "function" and isinstance(inner, str):
            module = str(value.get("module") or "keras.activations")
            if "activations" in module or module == "builtins":
                return inner
        name = inner if isinstance(inner, str) else value.get("class_name")
        raise UnsupportedError(f"{where}: custom activation {name!r} is not supported")
    raise UnsupportedError(f"{where}: activation {value!r} is not supported")


def hard_sigmoid_slope(keras_major: int) -> float:
    """``alpha`` of ``clip(alpha*x + 0.5, 0, 1)``: 0.2 up to Keras 2, 1/6 from Keras 3."""
    return 1.0 / 6.0 if keras_major >= 3 else 0.2


def engine_activation(value, keras_major: int, where: str) -> tuple:
    """A Keras activation as the engine's ``(name, alpha, beta)``.

    Raises
    ------
    UnsupportedError
        An activation the recurrent engine does not compute (e.g. ``softmax``).
    """
    name = activation_name(value, where)
    if name == "hard_sigmoid":
        return ("hardsigmoid", hard_sigmoid_slope(keras_major), 0.5)
    if name not in _ENGINE:
        raise UnsupportedError(
            f"{where}: activation {name!r} is not supported in recurrent layers; supported: "
            f"hard_sigmoid, {', '.join(sorted(_ENGINE))}"
        )
    return _ENGINE[name]


def _erf(x: np.ndarray) -> np.ndarray:
    """erf in float64, absolute error below 1.2e-7 (Numerical Recipes' erfc Chebyshev fit)."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = (
        -z * z
        - 1.26551223
        + t
        * (
            1.00002368
            + t
            * (
                0.37409196
                + t
                * (
                    0.09678418
                    + t
                    * (
                        -0.18628806
                        + t
                        * (
                            0.27886807
                            + t
                            * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))
                        )
                    )
                )
            )
        )
    )
    return np.sign(x) * (1.0 - t * np.exp(poly))


def _softplus(x):
    return np.logaddexp(0.0, x)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805

_NUMPY = {
    "linear": lambda x: x,
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "leaky_relu": lambda x: np.where(x < 0, 0.2 * x, x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "selu": lambda x: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0.0))),
    "celu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "softplus": _softplus,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "silu": lambda x: x * _sigmoid(x),
    "swish": lambda x: x * _sigmoid(x),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0))),
    "exponential": np.exp,
    "hard_silu": lambda x: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0,
    "hard_swish": lambda x: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0,
    "hard_tanh": lambda x: np.clip(x, -1.0, 1.0),
    "mish": lambda x: x * np.tanh(_softplus(x)),
    "log_sigmoid": lambda x: -_softplus(-x),
    "tanh_shrink": lambda x: x - np.tanh(x),
    "soft_shrink": lambda x: np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0.0)),
    "hard_shrink": lambda x: np.where(np.abs(x) > 0.5, x, 0.0),
    "squareplus": lambda x: 0.5 * (x + np.sqrt(x * x + 4.0)),
    "sparse_plus": lambda x: np.where(x <= -1, 0.0, np.where(x >= 1, x, 0.25 * (x + 1) ** 2)),
    "sparse_sigmoid": lambda x: np.where(x <= -1, 0.0, np.where(x >= 1, 1.0, 0.5 * (x + 1))),
    "softmax": _softmax,
    "log_softmax": lambda x: (
        x
        - x.max(axis=-1, keepdims=True)
        - np.log(np.exp(x - x.max(axis=-1, keepdims=True)).sum(axis=-1, keepdims=True))
    ),
}


def numpy_activation(value, keras_major: int, where: str):
    """A Keras activation as a numpy function ``f(x) -> y`` (float64 in, same shape out).

    Raises
    ------
    UnsupportedError
        An activation not in the list (the message lists the supported ones).
    """
    name = activation_name(value, where)
    if name != "hard_sigmoid" and name not in _NUMPY:
        raise UnsupportedError(
            f"{where}: activation {name!r} is not supported; supported: hard_sigmoid, "
            f"{', '.join(sorted(_NUMPY))}"
        )
    return NumpyActivation(name, keras_major)


class NumpyActivation:
    """A Keras activation by name, ``f(x) -> y`` on numpy arrays; pickles as its name (no code).

    Parameters
    ----------
    name : str
        ``hard_sigmoid`` or a key of the supported activations.
    keras_major : int
        Decides what ``hard_sigmoid`` means.
    """

    def __init__(self, name: str, keras_major: int):
        self.name, self.keras_major = name, keras_major
        if name == "hard_sigmoid":
            self._slope = hard_sigmoid_slope(keras_major)
            self._fn = self._hard_sigmoid
        else:
            self._fn = _NUMPY[name]

    def _hard_sigmoid(self, x):
        return np.clip(self._slope * x + 0.5, 0.0, 1.0)

    def __call__(self, x):
        return self._fn(x)

    def __reduce__(self):
        return NumpyActivation, (self.name, self.keras_major)
