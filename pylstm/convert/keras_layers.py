"""Keras layers -> plain operator specs: each layer of a config read and its weights checked,
as a :class:`~pylstm.convert.keras_recurrent.Recurrent` (recurrent layers) or an
:class:`~pylstm.convert.keras_recurrent.OpSpec` naming the numpy operator of
:mod:`pylstm.runtime.ops.keras_layers` that runs it (``Embedding``, ``Masking``, ``Dense``,
``TimeDistributed(Dense)``, ``Dropout``, ``Activation``, the mask operations Keras 3 records,
and the layers of :mod:`.keras_around`).
"""

from __future__ import annotations

import numpy as np

from ..errors import FormatError, UnsupportedError
from ..read.keras_config import MASK_OPERATIONS
from .keras_activations import numpy_activation
from .keras_around import AROUND, build_around, canonical_class
from .keras_recurrent import (
    RECURRENT,
    SUPPORTED,
    Context,
    OpSpec,
    build_recurrent,
    check_weights,
)


def _dense(cfg, weights, ctx, where, name) -> OpSpec:
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
    return OpSpec(
        "Dense", dict(kernel=kernel, bias=bias[0] if bias else None, activation=act, name=name)
    )


def build_op(spec, weights: list, ctx: Context):
    """One layer of the config, converted: a :class:`Recurrent` for recurrent layers, else an
    :class:`OpSpec` naming the runtime operator that runs it.

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
        if cls not in MASK_OPERATIONS:
            raise UnsupportedError(
                f"{where}: Keras operation {cls} is not supported (pylstm runs the "
                f"mask operations {', '.join(MASK_OPERATIONS)})"
            )
        return OpSpec("TensorOp", dict(class_name=cls, config=cfg), True)
    if cls in RECURRENT or cls in ("Bidirectional", "RNN"):
        return build_recurrent(spec, weights, ctx)
    if cls in ("Dropout", "InputLayer"):
        return OpSpec("Identity", {})
    if canonical_class(cls) in AROUND:
        return build_around(canonical_class(cls), cfg, weights, ctx, where, spec.name)
    if cls == "Activation":
        act = numpy_activation(cfg.get("activation"), ctx.keras_major, where)
        return OpSpec("Activation", dict(activation=act))
    if cls == "Masking":
        value = cfg.get("mask_value", 0.0)
        if not isinstance(value, (int, float)):
            raise UnsupportedError(f"{where}: mask_value {value!r} is not supported")
        return OpSpec("Masking", dict(mask_value=float(value), multiply=ctx.keras_major < 3))
    if cls == "Dense":
        return _dense(cfg, weights, ctx, where, spec.name)
    if cls == "Embedding":
        dim = int(cfg["input_dim"]), int(cfg["output_dim"])
        (table,) = check_weights(weights, [dim], where, ["embeddings"])
        params = dict(table=table, mask_zero=bool(cfg.get("mask_zero", False)), name=spec.name)
        return OpSpec("Embedding", params)
    if cls == "TimeDistributed":
        inner = cfg.get("layer") or {}
        inner_cls, inner_cfg = inner.get("class_name"), inner.get("config") or {}
        inner_where = f"{where} around {inner_cls}"
        if inner_cls == "Dense":
            return _dense(inner_cfg, weights, ctx, inner_where, spec.name)
        if inner_cls == "Dropout":
            return OpSpec("Identity", {})
        if inner_cls == "Activation":
            act = numpy_activation(inner_cfg.get("activation"), ctx.keras_major, inner_where)
            return OpSpec("Activation", dict(activation=act))
        raise UnsupportedError(
            f"{ctx.source}: layer {spec.name!r}: TimeDistributed({inner_cls}) is not supported; "
            f"supported layers: {SUPPORTED}"
        )
    raise UnsupportedError(
        f"{ctx.source}: Keras layer {cls} (name {spec.name!r}) is not supported; supported "
        f"layers: {SUPPORTED}"
    )
