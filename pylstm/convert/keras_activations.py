"""Keras activations: names in saved configs -> engine activations (recurrent layers) and entries
of the runtime's numpy activation table (:mod:`pylstm.runtime.ops.activations`: ``Dense``,
``TimeDistributed(Dense)``, ``Activation``, ``Conv1D``), as plain ``(name, alpha, beta)``.

Keras 3 and tf.keras 2 differ in one name: ``hard_sigmoid`` is ``clip(x/6 + 0.5, 0, 1)`` in
Keras 3 and ``clip(0.2*x + 0.5, 0, 1)`` in tf.keras 2 (and Keras 2). Every function here takes the
Keras major version that wrote the model (``keras_major``, 2 or 3) to pick the right one.
"""

from __future__ import annotations

from ..errors import UnsupportedError

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


# Keras name -> (name in the numpy table, alpha, beta); hard_sigmoid depends on the version.
_NUMPY = {
    "linear": ("linear", 0.0, 0.0),
    "sigmoid": ("sigmoid", 0.0, 0.0),
    "tanh": ("tanh", 0.0, 0.0),
    "relu": ("relu", 0.0, 0.0),
    "relu6": ("relu6", 0.0, 0.0),
    "leaky_relu": ("leakyrelu", 0.2, 0.0),
    "elu": ("elu", 1.0, 0.0),
    "selu": ("selu", 0.0, 0.0),
    "celu": ("celu", 1.0, 0.0),
    "softplus": ("softplus", 0.0, 0.0),
    "softsign": ("softsign", 0.0, 0.0),
    "silu": ("silu", 0.0, 0.0),
    "swish": ("silu", 0.0, 0.0),
    "gelu": ("gelu", 0.0, 0.0),
    "exponential": ("exponential", 0.0, 0.0),
    "hard_silu": ("hardsilu", 0.0, 0.0),
    "hard_swish": ("hardsilu", 0.0, 0.0),
    "hard_tanh": ("hardtanh", 0.0, 0.0),
    "mish": ("mish", 0.0, 0.0),
    "log_sigmoid": ("logsigmoid", 0.0, 0.0),
    "tanh_shrink": ("tanhshrink", 0.0, 0.0),
    "soft_shrink": ("softshrink", 0.5, 0.0),
    "hard_shrink": ("hardshrink", 0.5, 0.0),
    "squareplus": ("squareplus", 4.0, 0.0),
    "sparse_plus": ("sparseplus", 0.0, 0.0),
    "sparse_sigmoid": ("sparsesigmoid", 0.0, 0.0),
    "softmax": ("softmax", 0.0, 0.0),
    "log_softmax": ("logsoftmax", 0.0, 0.0),
}


def numpy_activation(value, keras_major: int, where: str) -> tuple:
    """A Keras activation as ``(name, alpha, beta)`` of the runtime's numpy activation table.

    Raises
    ------
    UnsupportedError
        An activation not in the list (the message lists the supported ones).
    """
    name = activation_name(value, where)
    if name == "hard_sigmoid":
        return ("hardsigmoid", hard_sigmoid_slope(keras_major), 0.5)
    if name not in _NUMPY:
        raise UnsupportedError(
            f"{where}: activation {name!r} is not supported; supported: hard_sigmoid, "
            f"{', '.join(sorted(_NUMPY))}"
        )
    return _NUMPY[name]
