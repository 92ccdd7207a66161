"""Keras layers around the recurrent ones (convolution and pooling over time, normalization,
shape and merge layers, attention, the identity-at-inference noise layers): their configs and
weights read and checked, as :class:`~pylstm.convert.keras_recurrent.OpSpec` s naming the
numpy operators of :mod:`pylstm.runtime.ops.keras_around` that run them.
"""

from __future__ import annotations

from ..errors import FormatError, UnsupportedError
from .keras_activations import numpy_activation
from .keras_recurrent import OpSpec, as_f32

IDENTITY_AT_INFERENCE = ("SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout")
MERGE = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
WEIGHTED = ("Conv1D", "BatchNormalization", "LayerNormalization", "Attention", "AdditiveAttention")
AROUND = (
    "Conv1D",
    "MaxPooling1D",
    "AveragePooling1D",
    "GlobalMaxPooling1D",
    "GlobalAveragePooling1D",
    "BatchNormalization",
    "LayerNormalization",
    "Flatten",
    "Reshape",
    "Permute",
    "RepeatVector",
    "Concatenate",
    *MERGE,
    "Dot",
    "Attention",
    "AdditiveAttention",
    *IDENTITY_AT_INFERENCE,
)
# The operators of pylstm.runtime.ops.keras_around: a mask per tensor argument (run_call).
AROUND_OPS = (
    "Conv1D",
    "Pool1D",
    "GlobalPool1D",
    "BatchNorm",
    "LayerNorm",
    "Shape",
    "Merge",
    "Concatenate",
    "Dot",
    "AttentionOp",
    "Passthrough",
)
# Keras 3 aliases that configs may record.
_ALIASES = {
    "Convolution1D": "Conv1D",
    "MaxPool1D": "MaxPooling1D",
    "AvgPool1D": "AveragePooling1D",
    "GlobalMaxPool1D": "GlobalMaxPooling1D",
    "GlobalAvgPool1D": "GlobalAveragePooling1D",
}


def canonical_class(cls: str) -> str:
    return _ALIASES.get(cls, cls)


def _int(value, what, where):
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise UnsupportedError(f"{where}: {what}={value} (one value expected for 1-D)")
        value = value[0]
    return int(value)


def _channels_last(cfg, where):
    fmt = cfg.get("data_format") or "channels_last"
    if fmt != "channels_last":
        raise UnsupportedError(f"{where}: data_format={fmt!r} is not supported (channels_last)")


def _take(weights, flags, names, where):
    """Weights present per flag, in order; None for absent ones."""
    want = sum(bool(f) for f in flags)
    if len(weights) != want:
        raise FormatError(f"{where}: expected {want} weights ({names}), got {len(weights)}")
    it = iter(weights)
    return [as_f32(next(it)) if f else None for f in flags]


def build_around(cls, cfg, weights, ctx, where, name) -> OpSpec:
    """The operator spec of a layer in :data:`AROUND` (``cls`` after :func:`canonical_class`).

    Raises
    ------
    UnsupportedError
        An option pylstm does not run (named in the message).
    FormatError
        Weights of the wrong count or shape.
    """
    if cls in IDENTITY_AT_INFERENCE:
        return OpSpec("Passthrough", {"name": name, "cls": cls})
    if cls == "Conv1D":
        _channels_last(cfg, where)
        padding = str(cfg.get("padding", "valid")).lower()
        if padding not in ("valid", "same", "causal"):
            raise UnsupportedError(f"{where}: padding={padding!r} is not supported")
        use_bias = bool(cfg.get("use_bias", True))
        kernel, bias = _take(weights, [True, use_bias], "kernel, bias", where)
        groups = int(cfg.get("groups", 1) or 1)
        stride = _int(cfg.get("strides", 1), "strides", where)
        dilation = _int(cfg.get("dilation_rate", 1), "dilation_rate", where)
        if stride > 1 and dilation > 1:
            raise UnsupportedError(f"{where}: strides > 1 with dilation_rate > 1")
        if kernel.ndim != 3 or kernel.shape[2] % groups:
            raise FormatError(f"{where}: kernel of shape {kernel.shape} for groups={groups}")
        if bias is not None and bias.shape != (kernel.shape[2],):
            raise FormatError(f"{where}: bias of shape {bias.shape}, kernel {kernel.shape}")
        act = numpy_activation(cfg.get("activation", "linear"), ctx.keras_major, where)
        return OpSpec(
            "Conv1D",
            dict(
                name=name,
                kernel=kernel,
                bias=bias,
                stride=stride,
                dilation=dilation,
                padding=padding,
                groups=groups,
                activation=act,
            ),
        )
    if cls in ("MaxPooling1D", "AveragePooling1D"):
        _channels_last(cfg, where)
        size = _int(cfg.get("pool_size", 2), "pool_size", where)
        stride = cfg.get("strides")
        stride = size if stride is None else _int(stride, "strides", where)
        padding = str(cfg.get("padding", "valid")).lower()
        if padding not in ("valid", "same"):
            raise UnsupportedError(f"{where}: padding={padding!r} is not supported")
        return OpSpec("Pool1D", dict(name=name, cls=cls, size=size, stride=stride, padding=padding))
    if cls in ("GlobalMaxPooling1D", "GlobalAveragePooling1D"):
        _channels_last(cfg, where)
        return OpSpec(
            "GlobalPool1D", dict(name=name, cls=cls, keepdims=bool(cfg.get("keepdims", False)))
        )
    if cls == "BatchNormalization":
        if cfg.get("renorm") or cfg.get("virtual_batch_size"):
            raise UnsupportedError(f"{where}: renorm / virtual_batch_size are not supported")
        center, scale = bool(cfg.get("center", True)), bool(cfg.get("scale", True))
        gamma, beta, mean, var = _take(
            weights, [scale, center, True, True], "gamma, beta, moving_mean, moving_variance", where
        )
        axis = cfg.get("axis", -1)
        eps = float(cfg.get("epsilon", 1e-3))
        params = dict(name=name, axis=axis, eps=eps, gamma=gamma, beta=beta, mean=mean, var=var)
        return OpSpec("BatchNorm", params)
    if cls == "LayerNormalization":
        if cfg.get("rms_scaling"):
            raise UnsupportedError(f"{where}: rms_scaling=True is not supported")
        center, scale = bool(cfg.get("center", True)), bool(cfg.get("scale", True))
        gamma, beta = _take(weights, [scale, center], "gamma, beta", where)
        axis = cfg.get("axis", -1)
        eps = float(cfg.get("epsilon", 1e-3))
        return OpSpec("LayerNorm", dict(name=name, axis=axis, eps=eps, gamma=gamma, beta=beta))
    if cls == "Flatten":
        _channels_last(cfg, where)
        return OpSpec("Shape", dict(name=name, cls=cls))
    if cls == "Reshape":
        return OpSpec(
            "Shape", dict(name=name, cls=cls, value=[int(d) for d in cfg["target_shape"]])
        )
    if cls == "Permute":
        dims = [int(d) for d in cfg["dims"]]
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise FormatError(f"{where}: dims={dims} is not a permutation of 1..{len(dims)}")
        return OpSpec("Shape", dict(name=name, cls=cls, value=dims))
    if cls == "RepeatVector":
        return OpSpec("Shape", dict(name=name, cls=cls, value=int(cfg["n"])))
    if cls in MERGE:
        return OpSpec("Merge", dict(name=name, cls=cls, keras_major=ctx.keras_major), True)
    if cls == "Concatenate":
        axis = int(cfg.get("axis", -1))
        params = dict(name=name, axis=axis, keras_major=ctx.keras_major)
        return OpSpec("Concatenate", params, True)
    if cls == "Dot":
        params = dict(
            name=name, axes=cfg.get("axes", -1), normalize=bool(cfg.get("normalize", False))
        )
        return OpSpec("Dot", params, True)
    if cls in ("Attention", "AdditiveAttention"):
        use_scale = bool(cfg.get("use_scale", False))
        mode = "additive" if cls == "AdditiveAttention" else str(cfg.get("score_mode", "dot"))
        if mode not in ("dot", "concat", "additive"):
            raise UnsupportedError(f"{where}: score_mode={mode!r} is not supported")
        if cfg.get("causal"):  # tf.keras 2.x before use_causal_mask
            raise UnsupportedError(f"{where}: causal=True (tf.keras 2) is not supported")
        scale, concat = _take(
            weights, [use_scale, mode == "concat"], "scale, concat_score_weight", where
        )
        params = dict(name=name, cls=cls, score_mode=mode, scale=scale, concat_weight=concat)
        return OpSpec("AttentionOp", params, True)
    raise UnsupportedError(f"{where}: not supported")
