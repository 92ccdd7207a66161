"""Keras layers that real models put around their recurrent layers, in numpy: convolution and
pooling over time (``Conv1D``, ``MaxPooling1D``, ``AveragePooling1D``, global pooling),
normalization (``BatchNormalization`` at inference, ``LayerNormalization``), shape layers
(``Flatten``, ``Reshape``, ``Permute``, ``RepeatVector``), merge layers (``Concatenate``, ``Add``,
``Subtract``, ``Multiply``, ``Average``, ``Maximum``, ``Minimum``, ``Dot``), ``Attention`` and
``AdditiveAttention``, and the noise/dropout layers that are the identity at inference.

The layers' options and weights are read by :mod:`pylstm.convert.keras_around`. Every op takes
batch-first arrays (``[B, T, C]`` for sequences, Keras' ``channels_last``) and has
``run_call(args, masks, kwargs) -> (outputs, masks)``: ``masks`` holds one ``[B, T]`` bool mask
(or None) per tensor argument, as Keras propagates them.

Masks, as Keras 3 applies them: ``BatchNormalization``, ``LayerNormalization`` and the identity
layers pass the mask on; ``GlobalAveragePooling1D`` averages over the valid steps only and
returns no mask; merge layers OR their inputs' masks (tf.keras 2: AND; ``Concatenate`` joins them
along its axis); ``Attention`` / ``AdditiveAttention`` ignore masked value steps, zero masked query
steps and pass the query's mask on. The other layers do not support masking in Keras, which drops
a mask reaching them with a warning (downstream layers see none); pylstm does the same.

``mixes_time`` marks layers whose output at one step reads other steps (a ``Conv1D`` with a
kernel longer than 1, pooling, ``Flatten``, global pooling, attention...): streams refuse them.
"""

from __future__ import annotations

import warnings

import numpy as np

from ...errors import UnsupportedError
from ..masks import concatenate_masks, merge_masks
from .activations import NumpyActivation


class AroundOp:
    """Base: one output; ``mixes_time`` for streams; refuses masks unless ``takes_mask``."""

    num_outputs = 1
    mixes_time = False
    takes_mask = False
    multi_input = False

    def __init__(self, name: str, cls: str):
        self.name, self.cls = name, cls

    def _no_mask(self, masks):
        """Keras drops a mask given to a layer that does not support masking, with a warning
        (downstream layers see no mask); so does pylstm."""
        if not self.takes_mask and any(m is not None for m in masks):
            warnings.warn(
                f"layer {self.name!r} ({self.cls}) does not support masking and drops the mask "
                "of its input, as in Keras: downstream layers see no mask",
                UserWarning,
                stacklevel=4,
            )
            return [None] * len(masks)
        return masks

    def run_call(self, args, masks, kwargs):
        return self.compute(args, self._no_mask(masks), kwargs)

    def run(self, args, mask):  # the one-input calling convention of the other ops
        return self.run_call(args, [mask], {})

    def where(self) -> str:
        return f"layer {self.name!r} ({self.cls})"


def _f32(a):
    return np.asarray(a, np.float32)


def as_f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _same_pads(T, kernel, stride, dilation=1):
    """TensorFlow's ``same``: ``ceil(T / stride)`` outputs, extra padding on the right."""
    span = (kernel - 1) * dilation + 1
    out = -(-T // stride)
    total = max((out - 1) * stride + span - T, 0)
    return total // 2, total - total // 2


class Conv1D(AroundOp):
    """``Conv1D`` (``channels_last``): kernel ``[K, C/groups, O]``, bias ``[O]``."""

    def __init__(self, name, kernel, bias, stride, dilation, padding, groups, activation):
        super().__init__(name, "Conv1D")
        self.kernel, self.bias, self.activation = kernel, bias, NumpyActivation(*activation)
        self.stride, self.dilation, self.padding, self.groups = stride, dilation, padding, groups
        self.mixes_time = kernel.shape[0] > 1 or stride > 1

    def compute(self, args, masks, kwargs):
        x = _f32(args[0])
        K, Cg, O = self.kernel.shape
        if x.ndim != 3 or x.shape[-1] != Cg * self.groups:
            raise ValueError(
                f"{self.where()}: expected input [B, T, {Cg * self.groups}], got shape {x.shape}"
            )
        B, T, _ = x.shape
        span = (K - 1) * self.dilation + 1
        if self.padding == "causal":
            left, right = span - 1, 0
        elif self.padding == "same":
            left, right = _same_pads(T, K, self.stride, self.dilation)
        else:
            left = right = 0
        xp = np.pad(x, ((0, 0), (left, right), (0, 0)))
        n = (xp.shape[1] - span) // self.stride + 1
        if n < 1:
            raise ValueError(f"{self.where()}: {T} steps are fewer than the kernel spans ({span})")
        starts = np.arange(n) * self.stride
        taps = starts[:, None] + np.arange(K)[None, :] * self.dilation  # [n, K]
        windows = xp[:, taps, :]  # [B, n, K, C]
        og = O // self.groups
        parts = []
        for g in range(self.groups):
            w = windows[..., g * Cg : (g + 1) * Cg].reshape(B, n, K * Cg)
            parts.append(w @ self.kernel[:, :, g * og : (g + 1) * og].reshape(K * Cg, og))
        y = parts[0] if self.groups == 1 else np.concatenate(parts, axis=-1)
        if self.bias is not None:
            y = y + self.bias
        return [as_f32(self.activation(y.astype(np.float64)))], [None]


class Pool1D(AroundOp):
    """``MaxPooling1D`` / ``AveragePooling1D`` (``channels_last``); ``same`` averages over
    the steps inside the sequence only, as Keras' TensorFlow and JAX backends do (its torch
    backend repeats the edge step where the padding is uneven)."""

    mixes_time = True

    def __init__(self, name, cls, size, stride, padding):
        super().__init__(name, cls)
        self.size, self.stride, self.padding = size, stride, padding

    def compute(self, args, masks, kwargs):
        x = _f32(args[0])
        if x.ndim != 3:
            raise ValueError(f"{self.where()}: expected input [B, T, C], got shape {x.shape}")
        T = x.shape[1]
        left, right = _same_pads(T, self.size, self.stride) if self.padding == "same" else (0, 0)
        n = (T + left + right - self.size) // self.stride + 1
        if n < 1:
            raise ValueError(f"{self.where()}: {T} steps are fewer than pool_size {self.size}")
        taps = np.arange(n)[:, None] * self.stride + np.arange(self.size)[None, :] - left
        valid = (taps >= 0) & (taps < T)
        windows = x[:, np.clip(taps, 0, T - 1), :]  # [B, n, size, C]
        if self.cls == "MaxPooling1D":
            y = np.where(valid[None, :, :, None], windows, -np.inf).max(axis=2)
        else:
            total = np.where(valid[None, :, :, None], windows, 0).sum(axis=2, dtype=np.float64)
            y = total / valid.sum(axis=1)[None, :, None]
        return [as_f32(y)], [None]


class GlobalPool1D(AroundOp):
    """``GlobalMaxPooling1D`` / ``GlobalAveragePooling1D`` over time (``channels_last``)."""

    mixes_time = True

    def __init__(self, name, cls, keepdims):
        super().__init__(name, cls)
        self.keepdims = keepdims
        self.takes_mask = cls == "GlobalAveragePooling1D"

    def compute(self, args, masks, kwargs):
        x = np.asarray(args[0], np.float64)
        if x.ndim != 3:
            raise ValueError(f"{self.where()}: expected input [B, T, C], got shape {x.shape}")
        if self.cls == "GlobalMaxPooling1D":
            return [as_f32(x.max(axis=1, keepdims=self.keepdims))], [None]
        mask = masks[0]
        if mask is None:
            return [as_f32(x.mean(axis=1, keepdims=self.keepdims))], [None]
        m = np.asarray(mask, bool)[:, :, None]
        with np.errstate(invalid="ignore", divide="ignore"):  # no valid step: 0/0 as Keras
            y = np.where(m, x, 0).sum(axis=1, keepdims=self.keepdims) / m.sum(
                axis=1, keepdims=self.keepdims
            )
        return [as_f32(y)], [None]


def _axes(axis, ndim: int) -> tuple:
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return tuple(int(a) % ndim for a in axes)


class BatchNorm(AroundOp):
    """``BatchNormalization`` at inference: ``(x - moving_mean) / sqrt(moving_var + eps) *
    gamma + beta`` along ``axis``."""

    takes_mask = True

    def __init__(self, name, axis, eps, gamma, beta, mean, var):
        super().__init__(name, "BatchNormalization")
        self.axis, self.eps = axis, eps
        self.gamma, self.beta, self.mean, self.var = gamma, beta, mean, var

    def compute(self, args, masks, kwargs):
        x = np.asarray(args[0], np.float64)
        axes = _axes(self.axis, x.ndim)
        shape = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
        if [x.shape[a] for a in axes] != list(self.mean.shape):
            raise ValueError(
                f"{self.where()}: expected {tuple(self.mean.shape)} along axis {self.axis}, "
                f"got shape {x.shape}"
            )

        def v(a):
            return np.asarray(a, np.float64).reshape(shape)

        y = (x - v(self.mean)) / np.sqrt(v(self.var) + self.eps)
        if self.gamma is not None:
            y = y * v(self.gamma)
        if self.beta is not None:
            y = y + v(self.beta)
        return [as_f32(y)], [masks[0]]


class LayerNorm(AroundOp):
    """``LayerNormalization``: mean and (biased) variance over ``axis``, then gamma, beta."""

    takes_mask = True

    def __init__(self, name, axis, eps, gamma, beta):
        super().__init__(name, "LayerNormalization")
        self.axis, self.eps, self.gamma, self.beta = axis, eps, gamma, beta

    def compute(self, args, masks, kwargs):
        x = np.asarray(args[0], np.float64)
        axes = _axes(self.axis, x.ndim)
        mean = x.mean(axis=axes, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
        y = (x - mean) / np.sqrt(var + self.eps)
        shape = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
        if self.gamma is not None:
            y = y * np.asarray(self.gamma, np.float64).reshape(shape)
        if self.beta is not None:
            y = y + np.asarray(self.beta, np.float64).reshape(shape)
        return [as_f32(y)], [masks[0]]


class Shape(AroundOp):
    """``Flatten``, ``Reshape`` (``target_shape``), ``Permute`` (``dims``, 1-based),
    ``RepeatVector`` (``n``)."""

    def __init__(self, name, cls, value=None):
        super().__init__(name, cls)
        self.value = value
        self.mixes_time = cls in ("Flatten", "Reshape", "RepeatVector") or (
            cls == "Permute" and list(value)[:1] != [1]
        )

    def compute(self, args, masks, kwargs):
        x = np.asarray(args[0])
        B = x.shape[0]
        if self.cls == "Flatten":
            y = x.reshape(B, -1)
        elif self.cls == "Reshape":
            try:
                y = x.reshape(B, *self.value)
            except ValueError:
                raise ValueError(
                    f"{self.where()}: cannot reshape {x.shape} to [B, *{tuple(self.value)}]"
                ) from None
        elif self.cls == "Permute":
            if len(self.value) != x.ndim - 1:
                raise ValueError(f"{self.where()}: dims {self.value} for input shape {x.shape}")
            y = np.transpose(x, (0, *self.value))
        else:  # RepeatVector
            if x.ndim != 2:
                raise ValueError(f"{self.where()}: expected input [B, F], got shape {x.shape}")
            y = np.repeat(x[:, None, :], self.value, axis=1)
        return [np.ascontiguousarray(y, np.float32)], [None]


class Merge(AroundOp):
    """``Add``, ``Subtract``, ``Multiply``, ``Average``, ``Maximum``, ``Minimum`` (broadcasting
    as Keras does); the output mask ORs the inputs' masks (None if one has none), as Keras 3."""

    takes_mask = True
    multi_input = True

    def __init__(self, name, cls, keras_major: int = 3):
        super().__init__(name, cls)
        self.keras_major = keras_major

    def compute(self, args, masks, kwargs):
        xs = [np.asarray(a, np.float32) for a in args]
        if self.cls == "Subtract" and len(xs) != 2:
            raise ValueError(f"{self.where()}: Subtract takes exactly 2 inputs, got {len(xs)}")
        y = xs[0]
        for other in xs[1:]:
            y = {
                "Add": np.add,
                "Subtract": np.subtract,
                "Multiply": np.multiply,
                "Average": np.add,
                "Maximum": np.maximum,
                "Minimum": np.minimum,
            }[self.cls](y, other)
        if self.cls == "Average":
            y = y / np.float32(len(xs))
        return [as_f32(y)], [merge_masks(masks, self.keras_major)]


class Concatenate(AroundOp):
    """``Concatenate(axis)``; the mask as Keras 3 computes it: each input's mask (all True where
    it has none) broadcast over the features, joined along ``axis``, any over the last axis."""

    takes_mask = True
    multi_input = True

    def __init__(self, name, axis, keras_major: int = 3):
        super().__init__(name, "Concatenate")
        self.axis, self.keras_major = axis, keras_major

    def compute(self, args, masks, kwargs):
        xs = [np.asarray(a, np.float32) for a in args]
        try:
            y = np.concatenate(xs, axis=self.axis)
        except ValueError:
            raise ValueError(
                f"{self.where()}: cannot concatenate shapes {[x.shape for x in xs]} along axis "
                f"{self.axis}"
            ) from None
        mask = concatenate_masks(xs, masks, self.axis, self.keras_major)
        return [y], [mask]

    @property
    def mixes_time(self):
        return self.axis in (1, -2)


class Dot(AroundOp):
    """``Dot(axes, normalize)``: Keras' ``batch_dot`` over the given axes (l2-normalized first
    with ``normalize``)."""

    multi_input = True
    mixes_time = True

    def __init__(self, name, axes, normalize):
        super().__init__(name, "Dot")
        self.axes, self.normalize = axes, normalize

    def compute(self, args, masks, kwargs):
        x, y = (np.asarray(a, np.float64) for a in args)
        axes = self.axes if isinstance(self.axes, (list, tuple)) else [self.axes] * 2
        ax, ay = int(axes[0]) % x.ndim, int(axes[1]) % y.ndim
        if self.normalize:
            x = x / np.sqrt(np.maximum((x * x).sum(axis=ax, keepdims=True), 1e-12))
            y = y / np.sqrt(np.maximum((y * y).sum(axis=ay, keepdims=True), 1e-12))
        if x.shape[ax] != y.shape[ay]:
            raise ValueError(f"{self.where()}: shapes {x.shape} and {y.shape} along {axes}")
        xm, ym = np.moveaxis(x, ax, -1), np.moveaxis(y, ay, 1)
        B, K = x.shape[0], x.shape[ax]
        out = xm.reshape(B, -1, K) @ ym.reshape(B, K, -1)
        out = out.reshape(B, *xm.shape[1:-1], *ym.shape[2:])
        if out.ndim == 1:
            out = out[:, None]
        return [as_f32(out)], [None]


class AttentionOp(AroundOp):
    """``Attention`` (dot or concat scores, optional scale) and ``AdditiveAttention`` on
    ``[query, value]`` or ``[query, value, key]``; ``use_causal_mask`` from the call."""

    multi_input = True
    mixes_time = True
    takes_mask = True

    def __init__(self, name, cls, score_mode, scale, concat_weight):
        super().__init__(name, cls)
        self.score_mode, self.scale, self.concat_weight = score_mode, scale, concat_weight

    def compute(self, args, masks, kwargs):
        if len(args) not in (2, 3):
            raise ValueError(f"{self.where()}: expected [query, value(, key)], got {len(args)}")
        if kwargs.get("return_attention_scores"):
            raise UnsupportedError(f"{self.where()}: return_attention_scores is not supported")
        q, v = (np.asarray(a, np.float64) for a in args[:2])
        k = np.asarray(args[2], np.float64) if len(args) == 3 else v
        masks = list(masks) + [None] * 3
        q_mask, v_mask = masks[0], masks[1]
        if self.cls == "AdditiveAttention":
            scale = 1.0 if self.scale is None else self.scale
            scores = (scale * np.tanh(q[:, :, None, :] + k[:, None, :, :])).sum(axis=-1)
        elif self.score_mode == "concat":
            s = q[:, :, None, :] + k[:, None, :, :]
            if self.scale is not None:
                s = self.scale * s
            scores = self.concat_weight * np.tanh(s).sum(axis=-1)
        else:
            scores = q @ np.swapaxes(k, -1, -2)
            if self.scale is not None:
                scores = scores * self.scale
        keep = None if v_mask is None else np.asarray(v_mask, bool)[:, None, :]
        if kwargs.get("use_causal_mask"):
            Tq, Tv = scores.shape[-2:]
            causal = (np.arange(Tq)[:, None] >= np.arange(Tv)[None, :])[None]
            keep = causal if keep is None else keep & causal
        if keep is not None:
            scores = np.where(keep, scores, scores - 1.0e9)
        scores = scores - scores.max(axis=-1, keepdims=True)
        w = np.exp(scores)
        w /= w.sum(axis=-1, keepdims=True)
        out = w @ v
        if q_mask is not None:
            out = np.where(np.asarray(q_mask, bool)[:, :, None], out, 0.0)
        return [as_f32(out)], [q_mask]


class Passthrough(AroundOp):
    """Noise and dropout layers: the identity at inference, the mask passed on."""

    takes_mask = True
    multi_input = False

    def compute(self, args, masks, kwargs):
        return [args[0]], [masks[0]]


#: The operators of this module by the name conversion gives them (``OpSpec.op``).
AROUND_OPS = {
    "Conv1D": Conv1D,
    "Pool1D": Pool1D,
    "GlobalPool1D": GlobalPool1D,
    "BatchNorm": BatchNorm,
    "LayerNorm": LayerNorm,
    "Shape": Shape,
    "Merge": Merge,
    "Concatenate": Concatenate,
    "Dot": Dot,
    "AttentionOp": AttentionOp,
    "Passthrough": Passthrough,
}
