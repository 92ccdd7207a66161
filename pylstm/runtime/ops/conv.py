"""ONNX convolution-family operators in numpy, for the convolutional front ends put before
recurrent layers: ``Conv``, ``ConvTranspose``, ``MaxPool``, ``AveragePool``,
``GlobalAveragePool``, ``GlobalMaxPool`` and ``Resize``; 1-D, 2-D (and 3-D) ``[N, C, *spatial]``.

Padding follows the specification: explicit ``pads`` ``[x1_begin, x2_begin, ..., x1_end, ...]``
or ``auto_pad`` (``SAME_UPPER``: the extra step at the end, ``SAME_LOWER``: at the start,
``VALID``). Sums run in float64 and are returned in the input's type.
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...errors import UnsupportedError
from .common import _ints, op


def _spatial_attrs(node, x, kernel):
    """(strides, dilations, [(begin, end)] pads) of a conv or pool node on ``x``."""
    n = len(kernel)
    if x.ndim != n + 2:
        raise ValueError(f"expected input of rank {n + 2} [N, C, *spatial], got shape {x.shape}")
    strides = node.attrs.get("strides") or [1] * n
    dilations = node.attrs.get("dilations") or [1] * n
    auto = node.attrs.get("auto_pad", "NOTSET") or "NOTSET"
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            small = total // 2
            pads.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
    elif auto == "VALID":
        pads = [(0, 0)] * n
    elif auto == "NOTSET":
        flat = node.attrs.get("pads") or [0] * (2 * n)
        pads = list(zip(flat[:n], flat[n:]))
    else:
        raise UnsupportedError(f"{node.describe()}: auto_pad {auto!r} is not supported")
    if any(lo < 0 or hi < 0 for lo, hi in pads):
        raise UnsupportedError(f"{node.describe()}: negative pads are not supported")
    return list(strides), list(dilations), pads


@op("Conv")
def _conv(node, x, w, b=None):
    kernel = node.attrs.get("kernel_shape") or list(w.shape[2:])
    strides, dilations, pads = _spatial_attrs(node, x, kernel)
    group = int(node.attrs.get("group", 1))
    N, C = x.shape[:2]
    M, Cg = w.shape[:2]
    if Cg * group != C or M % group:
        raise ValueError(f"X {x.shape} and W {w.shape} do not match group={group}")
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0), *pads])
    outs = []
    for size, k, s, d in zip(xp.shape[2:], kernel, strides, dilations):
        outs.append((size - ((k - 1) * d + 1)) // s + 1)
    if min(outs) < 1:
        raise ValueError(f"the kernel {kernel} (dilations {dilations}) is larger than {x.shape}")
    y = np.zeros((N, M, *outs))
    w64 = w.astype(np.float64)
    Mg = M // group
    for kk in itertools.product(*(range(k) for k in kernel)):
        index = tuple(
            slice(i * d, i * d + (o - 1) * s + 1, s)
            for i, d, o, s in zip(kk, dilations, outs, strides)
        )
        window = xp[(slice(None), slice(None), *index)]  # [N, C, *outs]
        for g in range(group):
            part = window[:, g * Cg : (g + 1) * Cg]
            y[:, g * Mg : (g + 1) * Mg] += np.einsum(
                "nc...,mc->nm...", part, w64[(slice(g * Mg, (g + 1) * Mg), slice(None), *kk)]
            )
    if b is not None:
        y += b.astype(np.float64).reshape(1, M, *([1] * len(kernel)))
    return [y.astype(x.dtype)]


@op("ConvTranspose")
def _conv_transpose(node, x, w, b=None):
    n = x.ndim - 2
    kernel = node.attrs.get("kernel_shape") or list(w.shape[2:])
    strides = node.attrs.get("strides") or [1] * n
    dilations = node.attrs.get("dilations") or [1] * n
    out_pad = node.attrs.get("output_padding") or [0] * n
    group = int(node.attrs.get("group", 1))
    N, C = x.shape[:2]
    Cw, Mg = w.shape[:2]
    if Cw != C or C % group:
        raise ValueError(f"X {x.shape} and W {w.shape} do not match group={group}")
    M, Cg = Mg * group, C // group
    full = [
        s * (i - 1) + op_ + (k - 1) * d + 1
        for i, k, s, d, op_ in zip(x.shape[2:], kernel, strides, dilations, out_pad)
    ]
    auto = node.attrs.get("auto_pad", "NOTSET") or "NOTSET"
    shape = node.attrs.get("output_shape")
    if shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        shape = (
            list(shape)[-n:] if shape is not None else [i * s for i, s in zip(x.shape[2:], strides)]
        )
        pads = []
        for f, o in zip(full, shape):
            total = f - o
            if total < 0:
                raise UnsupportedError(f"{node.describe()}: output_shape larger than computed")
            upper = auto == "SAME_UPPER"
            pads.append(
                (total // 2, total - total // 2) if upper else (total - total // 2, total // 2)
            )
    elif auto == "VALID" or auto == "NOTSET":
        flat = node.attrs.get("pads") or [0] * (2 * n)
        pads = list(zip(flat[:n], flat[n:])) if auto == "NOTSET" else [(0, 0)] * n
    else:
        raise UnsupportedError(f"{node.describe()}: auto_pad {auto!r} is not supported")
    y = np.zeros((N, M, *full))
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    for kk in itertools.product(*(range(k) for k in kernel)):
        index = tuple(
            slice(i * d, i * d + (size - 1) * s + 1, s)
            for i, d, size, s in zip(kk, dilations, x.shape[2:], strides)
        )
        for g in range(group):
            part = x64[:, g * Cg : (g + 1) * Cg]
            y[(slice(None), slice(g * Mg, (g + 1) * Mg), *index)] += np.einsum(
                "nc...,cm->nm...", part, w64[(slice(g * Cg, (g + 1) * Cg), slice(None), *kk)]
            )
    crop = tuple(slice(lo, f - hi) for (lo, hi), f in zip(pads, full))
    y = y[(slice(None), slice(None), *crop)]
    if b is not None:
        y = y + b.astype(np.float64).reshape(1, M, *([1] * n))
    return [y.astype(x.dtype)]


def _pool(node, x, kind):
    if len(node.outputs) > 1 and node.outputs[1]:
        raise UnsupportedError(f"{node.describe()}: the Indices output is not supported")
    kernel = list(node.attrs["kernel_shape"])
    strides, dilations, pads = _spatial_attrs(node, x, kernel)
    ceil_mode = bool(node.attrs.get("ceil_mode", 0))
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    outs, extra = [], []
    for size, (lo, hi), span, s in zip(x.shape[2:], pads, spans, strides):
        room = size + lo + hi - span
        o = (-(-room // s) if ceil_mode else room // s) + 1
        if ceil_mode and (o - 1) * s >= size + lo:
            o -= 1
        if o < 1:
            raise ValueError(f"the pooling window {kernel} is larger than {x.shape}")
        outs.append(o)
        extra.append(max((o - 1) * s + span - (size + lo + hi), 0))
    width = [(0, 0), (0, 0), *[(lo, hi + e) for (lo, hi), e in zip(pads, extra)]]
    axes = tuple(range(2, x.ndim))

    def windows(a):
        v = sliding_window_view(a, spans, axis=axes)
        v = v[
            (
                slice(None),
                slice(None),
                *[slice(None, (o - 1) * s + 1, s) for o, s in zip(outs, strides)],
            )
        ]
        return v[(Ellipsis, *[slice(None, None, d) for d in dilations])]

    win_axes = tuple(range(x.ndim, x.ndim + len(kernel)))
    if kind == "max":
        fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
        return [windows(np.pad(x, width, constant_values=fill)).max(axis=win_axes)]
    total = windows(np.pad(x.astype(np.float64), width)).sum(axis=win_axes)
    if node.attrs.get("count_include_pad", 0):
        ones = np.pad(np.ones((1, 1, *x.shape[2:])), [(0, 0), (0, 0), *pads], constant_values=1)
        ones = np.pad(ones, [(0, 0), (0, 0), *[(0, e) for e in extra]])
    else:
        ones = np.pad(np.ones((1, 1, *x.shape[2:])), width)
    count = windows(ones).sum(axis=win_axes)
    return [(total / count).astype(x.dtype)]


@op("MaxPool")
def _max_pool(node, x):
    if int(node.attrs.get("storage_order", 0)):
        raise UnsupportedError(f"{node.describe()}: storage_order=1 is not supported")
    return _pool(node, x, "max")


@op("AveragePool")
def _average_pool(node, x):
    return _pool(node, x, "average")


@op("GlobalAveragePool")
def _global_average_pool(node, x):
    return [x.mean(axis=tuple(range(2, x.ndim)), keepdims=True, dtype=np.float64).astype(x.dtype)]


@op("GlobalMaxPool")
def _global_max_pool(node, x):
    return [x.max(axis=tuple(range(2, x.ndim)), keepdims=True)]


_COORDINATES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")


def _source_coordinates(mode, out, size, scale):
    x = np.arange(out, dtype=np.float64)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out > 1 else np.zeros(out)
    if mode == "align_corners":
        return np.zeros(out) if out == 1 else x * (size - 1) / (out - 1)
    return x / scale  # asymmetric


def _nearest(coords, rule):
    if rule == "floor":
        return np.floor(coords)
    if rule == "ceil":
        return np.ceil(coords)
    frac = coords - np.floor(coords)
    if rule == "round_prefer_ceil":
        return np.where(frac == 0.5, np.ceil(coords), np.round(coords))
    return np.where(frac == 0.5, np.floor(coords), np.round(coords))  # round_prefer_floor


@op("Resize", "Upsample")
def _resize(node, x, roi=None, scales=None, sizes=None):
    attrs = node.attrs
    if node.op_type == "Upsample" or node.opset < 11:  # (X, scales), asymmetric coordinates
        scales, sizes = (roi if roi is not None else attrs.get("scales")), None
        coord = "asymmetric"
        rule = "simple"  # ONNX Runtime: floor when upsampling an axis, ceil when downsampling
    else:
        coord = attrs.get("coordinate_transformation_mode", "half_pixel")
        rule = attrs.get("nearest_mode", "round_prefer_floor")
    mode = attrs.get("mode", "nearest")
    if mode not in ("nearest", "linear"):
        raise UnsupportedError(
            f"{node.describe()}: mode {mode!r} is not supported (nearest, linear)"
        )
    if coord not in _COORDINATES:
        raise UnsupportedError(
            f"{node.describe()}: coordinate_transformation_mode {coord!r} is not supported "
            f"({', '.join(_COORDINATES)})"
        )
    if rule not in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple"):
        raise UnsupportedError(f"{node.describe()}: nearest_mode {rule!r} is not supported")
    if attrs.get("antialias") or attrs.get("axes") is not None:
        raise UnsupportedError(f"{node.describe()}: antialias and axes are not supported")
    if attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise UnsupportedError(f"{node.describe()}: keep_aspect_ratio_policy is not supported")
    if sizes is not None and np.size(sizes):
        outs = _ints(sizes)
        factors = [o / i for o, i in zip(outs, x.shape)]
    elif scales is not None and np.size(scales):
        factors = [float(v) for v in np.asarray(scales, np.float32).reshape(-1)]
        # in float32, as ONNX Runtime computes it (1.8 * 5 is 9 there, 8.99... in float64)
        outs = [int(np.floor(np.float32(i) * np.float32(f))) for i, f in zip(x.shape, factors)]
    else:
        raise ValueError("Resize needs scales or sizes")
    if len(outs) != x.ndim:
        raise ValueError(f"scales/sizes of length {len(outs)} for input of rank {x.ndim}")
    y = x.astype(np.float64) if mode == "linear" else x
    for axis, (size, out, factor) in enumerate(zip(x.shape, outs, factors)):
        if out == size and factor == 1.0:
            continue
        coords = _source_coordinates(coord, out, size, factor)
        if mode == "nearest":
            how = ("ceil" if factor < 1 else "floor") if rule == "simple" else rule
            index = np.clip(_nearest(coords, how), 0, size - 1).astype(np.int64)
            y = np.take(y, index, axis=axis)
            continue
        low = np.floor(coords)
        frac = coords - low
        i0 = np.clip(low, 0, size - 1).astype(np.int64)
        i1 = np.clip(low + 1, 0, size - 1).astype(np.int64)
        shape = [1] * y.ndim
        shape[axis] = out
        frac = frac.reshape(shape)
        y = np.take(y, i0, axis=axis) * (1 - frac) + np.take(y, i1, axis=axis) * frac
    return [np.asarray(y).astype(x.dtype)]
