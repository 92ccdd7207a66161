"""Keras layers -> runnable operations: the layers around the recurrent ones (``Embedding``,
``Masking``, ``Dense``, ``TimeDistributed(Dense)``, ``Dropout``, ``Activation``, and the mask
operations Keras 3 records) in plain numpy; recurrent layers are converted by
:mod:`pylstm.convert.keras_recurrent`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ...convert.keras_recurrent import (
    RECURRENT,
    SUPPORTED,
    Context,
    as_f32,
    build_recurrent,
    check_weights,
)
from ...errors import FormatError, UnsupportedError
from ...read.keras_config import MASK_OPERATIONS
from .keras_activations import numpy_activation
from .keras_around import AROUND, build_around, canonical_class


# -- the layers around the recurrent ones ----------------------------------------------------
class Identity:
    """``Dropout`` (and friends) at inference, ``InputLayer``: output = input, mask passed on."""

    num_outputs = 1

    def run(self, args, mask):
        return [args[0]], [mask]


class Embedding:
    """``W[ids]``; with ``mask_zero`` the mask is ``ids != 0``.

    Parameters
    ----------
    table : float32 ndarray ``[V, E]``
    mask_zero : bool
    """

    num_outputs = 1

    def __init__(self, table, mask_zero: bool, name: str):
        self.table, self.mask_zero, self.name = table, mask_zero, name

    def run(self, args, mask):
        ids = np.asarray(args[0])
        if ids.dtype.kind == "f":
            ids = ids.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.table.shape[0]):
            bad = ids[(ids < 0) | (ids >= self.table.shape[0])].reshape(-1)[0]
            raise ValueError(
                f"Embedding {self.name!r}: token id {int(bad)} is outside [0, "
                f"{self.table.shape[0]})"
            )
        out_mask = ids != 0 if self.mask_zero else None
        return [self.table[ids]], [out_mask]


class Masking:
    """Mask = ``any(x != mask_value, axis=-1)``; masked steps are zeroed (Keras 3 ``where``,
    Keras 2 multiplies by the mask)."""

    num_outputs = 1

    def __init__(self, mask_value: float, multiply: bool):
        self.mask_value, self.multiply = mask_value, multiply

    def run(self, args, mask):
        x = args[0]
        keep = np.any(x != self.mask_value, axis=-1)
        if self.multiply:
            y = x * keep[..., None].astype(x.dtype)
        else:
            y = np.where(keep[..., None], x, np.zeros((), x.dtype))
        return [y], [keep]


class Dense:
    """``activation(x @ kernel + bias)`` over the last axis (also ``TimeDistributed(Dense)``).

    Parameters
    ----------
    kernel : float32 ndarray ``[I, O]``
    bias : float32 ndarray ``[O]`` or None
    activation : callable
    """

    num_outputs = 1

    def __init__(self, kernel, bias, activation, name: str):
        self.kernel, self.bias, self.activation, self.name = kernel, bias, activation, name

    def run(self, args, mask):
        x = np.asarray(args[0], np.float32)
        if x.shape[-1] != self.kernel.shape[0]:
            raise ValueError(
                f"Dense {self.name!r}: expected {self.kernel.shape[0]} input features (last "
                f"axis), got shape {x.shape}"
            )
        y = x @ self.kernel
        if self.bias is not None:
            y += self.bias
        return [as_f32(self.activation(y.astype(np.float64)))], [mask]


class Activation:
    """``Activation`` layer: an elementwise (or last-axis softmax) function."""

    num_outputs = 1

    def __init__(self, activation):
        self.activation = activation

    def run(self, args, mask):
        return [as_f32(self.activation(np.asarray(args[0], np.float64)))], [mask]


class TensorOp:
    """The Keras 3 operations functional configs record for masks (``NotEqual``, ``Any``...)."""

    num_outputs = 1
    _BINARY: ClassVar[dict] = {
        "NotEqual": np.not_equal,
        "Equal": np.equal,
        "LogicalAnd": np.logical_and,
        "LogicalOr": np.logical_or,
    }
    _REDUCE: ClassVar[dict] = {"Any": np.any, "All": np.all}

    def __init__(self, class_name: str, config: dict, where: str):
        if class_name not in MASK_OPERATIONS:
            raise UnsupportedError(
                f"{where}: Keras operation {class_name} is not supported (pylstm runs the "
                f"mask operations {', '.join(MASK_OPERATIONS)})"
            )
        self.class_name, self.config = class_name, config

    def run(self, args, mask):
        values = [np.asarray(a) for a in args]
        if self.class_name in self._BINARY:
            return [self._BINARY[self.class_name](values[0], values[1])], [None]
        if self.class_name == "LogicalNot":
            return [np.logical_not(values[0])], [None]
        if self.class_name == "ExpandDims":
            return [np.expand_dims(values[0], int(self.config.get("axis", -1)))], [None]
        if self.class_name in ("ZerosLike", "OnesLike"):
            like = np.zeros_like if self.class_name == "ZerosLike" else np.ones_like
            return [like(values[0], dtype=self.config.get("dtype") or values[0].dtype)], [None]
        if self.class_name == "Concatenate":
            return [np.concatenate(values, axis=int(self.config.get("axis", 0)))], [None]
        axis = self.config.get("axis")
        axis = tuple(axis) if isinstance(axis, list) else axis
        keep = bool(self.config.get("keepdims", False))
        return [self._REDUCE[self.class_name](values[0], axis=axis, keepdims=keep)], [None]


def _dense(cfg, weights, ctx, where, name) -> Dense:
    units = int(cfg["units"])
    use_bias = bool(cfg.get("use_bias", True))
    if cfg.get("lora_rank") and len(weights) > 1 + use_bias:
        raise UnsupportedError(f"{where}: LoRA-enabled Dense layers are not supported")
    if not weights or np.asarray(weights[0]).ndim != 2:
        raise FormatError(f"{where}: expected a 2-D kernel, got {len(weights)} weights")
    I = np.asarray(weights[0]).shape[0]
    shapes = [(I, units)] + ([(units,)] if use_bias else [])
    kernel, *bias = check_weights(weights, shapes, where, ["kernel", "bias"][: len(shapes)])
    act = numpy_activation(cfg.get("activation", "linear"), ctx.keras_major, where)
    return Dense(kernel, bias[0] if bias else None, act, name)


def build_op(spec, weights: list, ctx: Context):
    """The runnable operation of one layer of the config.

    Parameters
    ----------
    spec : pylstm.read.keras_config.LayerSpec
    weights : list of ndarray
        In ``layer.get_weights()`` order.
    ctx : Context

    Raises
    ------
    UnsupportedError
        A layer class, option or activation pylstm does not run (the message names the layer
        class and name).
    FormatError
        Weights of the wrong count, shape or dtype (the message names the layer and weight).
    """
    where = f"{ctx.source}: layer {spec.name!r} ({spec.class_name})"
    cfg = spec.config
    cls = spec.class_name
    policy = cfg.get("dtype")
    if isinstance(policy, dict) and "Quantized" in str(policy.get("class_name", "")):
        raise UnsupportedError(f"{where}: quantized layers are not supported")
    if spec.is_operation:
        return TensorOp(cls, cfg, where)
    if cls in RECURRENT or cls in ("Bidirectional", "RNN"):
        return build_recurrent(spec, weights, ctx)
    if cls in ("Dropout", "InputLayer"):
        return Identity()
    if canonical_class(cls) in AROUND:
        return build_around(canonical_class(cls), cfg, weights, ctx, where, spec.name)
    if cls == "Activation":
        return Activation(numpy_activation(cfg.get("activation"), ctx.keras_major, where))
    if cls == "Masking":
        value = cfg.get("mask_value", 0.0)
        if not isinstance(value, (int, float)):
            raise UnsupportedError(f"{where}: mask_value {value!r} is not supported")
        return Masking(float(value), multiply=ctx.keras_major < 3)
    if cls == "Dense":
        return _dense(cfg, weights, ctx, where, spec.name)
    if cls == "Embedding":
        dim = int(cfg["input_dim"]), int(cfg["output_dim"])
        (table,) = check_weights(weights, [dim], where, ["embeddings"])
        return Embedding(table, bool(cfg.get("mask_zero", False)), spec.name)
    if cls == "TimeDistributed":
        inner = cfg.get("layer") or {}
        inner_cls, inner_cfg = inner.get("class_name"), inner.get("config") or {}
        inner_where = f"{where} around {inner_cls}"
        if inner_cls == "Dense":
            return _dense(inner_cfg, weights, ctx, inner_where, spec.name)
        if inner_cls == "Dropout":
            return Identity()
        if inner_cls == "Activation":
            return Activation(
                numpy_activation(inner_cfg.get("activation"), ctx.keras_major, inner_where)
            )
        raise UnsupportedError(
            f"{ctx.source}: layer {spec.name!r}: TimeDistributed({inner_cls}) is not supported; "
            f"supported layers: {SUPPORTED}"
        )
    raise UnsupportedError(
        f"{ctx.source}: Keras layer {cls} (name {spec.name!r}) is not supported; supported "
        f"layers: {SUPPORTED}"
    )
