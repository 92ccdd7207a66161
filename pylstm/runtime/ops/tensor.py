"""ONNX operators in numpy, part 2: tensors and shapes (Shape, Gather, Concat, Slice, Reshape,
Squeeze/Unsqueeze, Transpose, Cast, Expand, ...), the shape arithmetic exporters put around
recurrent layers. Attribute and input forms of every opset from 1 on."""

from __future__ import annotations

import numpy as np

from ...errors import UnsupportedError
from ...read.onnx_tensors import numpy_dtype
from .common import _axes_input_or_attr, _axis, _ints, op


# -- tensors and shapes -------------------------------------------------------------------------
@op("Identity")
def _identity(node, x):
    return [x.view()]  # a view: graph outputs that alias inputs are copied by the face


@op("Dropout")
def _dropout(node, x, *rest):  # inference: identity, and a mask of ones
    return [x.view(), np.ones(x.shape, np.bool_)]


@op("Constant")
def _constant(node):
    a = node.attrs
    if "value" in a:
        return [a["value"]]
    for key, dtype in (
        ("value_float", np.float32),
        ("value_floats", np.float32),
        ("value_int", np.int64),
        ("value_ints", np.int64),
    ):
        if key in a:
            return [np.asarray(a[key], dtype)]
    raise UnsupportedError(
        f"Constant node {node.name!r}: only tensor, float(s) and int(s) values are supported, got "
        f"{', '.join(a) or 'no value'}"
    )


@op("ConstantOfShape")
def _constant_of_shape(node, shape):
    value = node.attrs.get("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return [np.full(tuple(_ints(shape)), value[0], dtype=value.dtype)]


@op("Shape")
def _shape(node, x):
    dims = np.asarray(x.shape, np.int64)
    start, end = node.attrs.get("start", 0), node.attrs.get("end")
    return [dims[start:end]]


@op("Size")
def _size(node, x):
    return [np.asarray(x.size, np.int64)]


@op("Cast")
def _cast(node, x):
    return [x.astype(numpy_dtype(node.attrs["to"], f"Cast node {node.name!r}"))]


@op("CastLike")
def _castlike(node, x, like):
    return [x.astype(like.dtype)]


@op("Reshape")
def _reshape(node, x, shape=None):
    shape = _ints(node.attrs["shape"] if node.opset < 5 else shape)
    if not node.attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [x.reshape(shape)]


@op("Flatten")
def _flatten(node, x):
    axis = node.attrs.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    lead = int(np.prod(x.shape[:axis], dtype=np.int64))
    return [x.reshape(lead, int(np.prod(x.shape[axis:], dtype=np.int64)))]


@op("Transpose")
def _transpose(node, x):
    perm = node.attrs.get("perm")
    return [np.transpose(x, None if perm is None else list(perm))]


@op("Squeeze")
def _squeeze(node, x, axes_in=None):
    axes = _axes_input_or_attr(node, [x, axes_in], 1, 13)
    if axes is None:
        return [x.reshape([d for d in x.shape if d != 1])]
    axes = [_axis(a, x.ndim, node) for a in axes]
    for a in axes:
        if x.shape[a] != 1:
            raise ValueError(f"cannot squeeze axis {a} of shape {x.shape}: its size is not 1")
    return [np.squeeze(x, axis=tuple(axes))]


@op("Unsqueeze")
def _unsqueeze(node, x, axes_in=None):
    axes = _axes_input_or_attr(node, [x, axes_in], 1, 13)
    rank = x.ndim + len(axes)
    axes = sorted(_axis(a, rank, node) for a in axes)
    y = x
    for a in axes:
        y = np.expand_dims(y, a)
    return [y]


@op("Concat")
def _concat(node, *xs):
    xs = [x for x in xs if x is not None]
    axis = _axis(node.attrs["axis"], xs[0].ndim, node)
    return [np.concatenate(xs, axis=axis)]


@op("Split")
def _split(node, x, split_in=None):
    axis = _axis(node.attrs.get("axis", 0), x.ndim, node)
    split = node.attrs.get("split") if node.opset < 13 else split_in
    n = len(node.outputs)
    size = x.shape[axis]
    if split is None:
        parts = node.attrs.get("num_outputs", n)
        chunk = -(-size // parts)
        split = [min(chunk, size - k * chunk) for k in range(parts)]
    split = _ints(split)
    if sum(split) != size:
        raise ValueError(f"split sizes {split} do not add up to axis {axis} of shape {x.shape}")
    return np.split(x, np.cumsum(split)[:-1], axis=axis)


@op("Slice")
def _slice(node, x, starts=None, ends=None, axes=None, steps=None):
    if node.opset < 10:
        starts, ends = node.attrs["starts"], node.attrs["ends"]
        axes, steps = node.attrs.get("axes"), None
    starts, ends = _ints(starts), _ints(ends)
    axes = list(range(len(starts))) if axes is None else _ints(axes)
    steps = [1] * len(starts) if steps is None else _ints(steps)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise ValueError("Slice steps must not be 0")
        dim = x.shape[_axis(a, x.ndim, node)]
        # clamp as the specification does (numpy would too, but INT64_MAX overflows slice maths)
        s = max(-dim - 1, min(dim, s))
        e = max(-dim - 1, min(dim, e))
        if st < 0:
            s = dim - 1 if s >= dim else s
            e = None if e < -dim else e
        index[_axis(a, x.ndim, node)] = slice(s, e, st)
    return [x[tuple(index)]]


@op("Gather")
def _gather(node, x, indices):
    axis = _axis(node.attrs.get("axis", 0), x.ndim, node)
    idx = np.asarray(indices, np.int64)
    dim = x.shape[axis]
    if idx.size and (idx.min() < -dim or idx.max() >= dim):
        raise ValueError(f"Gather indices out of range [-{dim}, {dim - 1}] for axis {axis}")
    return [np.take(x, idx, axis=axis)]


@op("GatherElements")
def _gather_elements(node, x, indices):
    axis = _axis(node.attrs.get("axis", 0), x.ndim, node)
    idx = np.asarray(indices, np.int64)
    idx = np.where(idx < 0, idx + x.shape[axis], idx)
    return [np.take_along_axis(x, idx, axis=axis)]


@op("GatherND")
def _gather_nd(node, x, indices):
    b = node.attrs.get("batch_dims", 0)
    idx = np.asarray(indices, np.int64)
    k = idx.shape[-1]
    lead = x.shape[:b]
    xb = x.reshape((-1, *x.shape[b:]))
    ib = idx.reshape((xb.shape[0], -1, k))
    out = []
    for n in range(xb.shape[0]):
        coords = tuple(ib[n, :, j] for j in range(k))
        out.append(xb[n][coords])
    return [np.stack(out).reshape(lead + idx.shape[b:-1] + x.shape[b + k :])]


@op("Expand")
def _expand(node, x, shape):
    target = np.broadcast_shapes(x.shape, tuple(_ints(shape)))
    return [np.broadcast_to(x, target).copy()]


@op("Tile")
def _tile(node, x, repeats):
    return [np.tile(x, _ints(repeats))]


@op("Range")
def _range(node, start, limit, delta):
    return [np.arange(start.item(), limit.item(), delta.item()).astype(start.dtype)]


@op("NonZero")
def _nonzero(node, x):
    return [np.asarray(np.nonzero(x), np.int64).reshape(x.ndim, -1)]


@op("Pad")
def _pad(node, x, pads=None, value=None, axes=None):
    if node.opset < 11:
        pads, value = node.attrs["pads"], node.attrs.get("value", 0.0)
    pads = _ints(pads)
    axes = list(range(x.ndim)) if axes is None else [_axis(a, x.ndim, node) for a in _ints(axes)]
    n = len(axes)
    width = [(0, 0)] * x.ndim
    for k, a in enumerate(axes):
        width[a] = (pads[k], pads[k + n])
    if any(lo < 0 or hi < 0 for lo, hi in width):
        raise UnsupportedError(f"Pad node {node.name!r}: negative pads are not supported")
    mode = node.attrs.get("mode", "constant")
    if mode == "constant":
        v = 0 if value is None else np.asarray(value).reshape(-1)[0] if np.size(value) else 0
        return [np.pad(x, width, mode="constant", constant_values=v)]
    if mode in ("reflect", "edge"):
        return [np.pad(x, width, mode=mode)]
    if mode == "wrap":
        return [np.pad(x, width, mode="wrap")]
    raise UnsupportedError(f"Pad node {node.name!r}: mode {mode!r} is not supported")


@op("CumSum")
def _cumsum(node, x, axis):
    a = _axis(int(np.asarray(axis).reshape(-1)[0]), x.ndim, node)
    y = np.flip(x, a) if node.attrs.get("reverse", 0) else x
    out = np.cumsum(y, axis=a, dtype=x.dtype)
    if node.attrs.get("exclusive", 0):
        out = out - y
    return [np.flip(out, a) if node.attrs.get("reverse", 0) else out]


@op("Trilu")
def _trilu(node, x, k=None):
    k = 0 if k is None else int(np.asarray(k).reshape(-1)[0])
    return [np.triu(x, k) if node.attrs.get("upper", 1) else np.tril(x, k)]


@op("OneHot")
def _onehot(node, indices, depth, values):
    d = int(np.asarray(depth).reshape(-1)[0])
    axis = node.attrs.get("axis", -1)
    idx = np.asarray(indices, np.int64)
    idx = np.where(idx < 0, idx + d, idx)
    hot = idx[..., None] == np.arange(d)
    out = np.where(hot, values[1], values[0]).astype(values.dtype)
    rank = out.ndim
    return [np.moveaxis(out, -1, axis % rank)]
