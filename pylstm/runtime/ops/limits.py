"""How large a value one ONNX operator may produce, checked before the operator runs.

A small graph can ask numpy for huge arrays (``Expand`` to a shape of 10^9, ``Tile``,
``ConstantOfShape``, ``Range``, ``Pad``, ``OneHot``, broadcasting ``[N, 1] + [1, N]``, an outer
``MatMul``, ``Einsum``, a ``Concat`` listing one input many times). :func:`predicted_bytes`
computes, from the inputs' shapes and values alone, how many bytes an operator's output will
take (and, for ``Einsum``, how many products it will compute); the graph executor
(``runtime/graph.py``) refuses the node before running it when that passes its limit:

* at run time, ``max(RUN_MULTIPLE x the largest value the graph holds or is fed (initializers,
  inputs, recurrent layers' outputs), RUN_FLOOR, max_bytes)`` (``ValueError`` naming the node);
* at load time (constant folding), what is left of ``max_bytes`` (``FormatError``).
"""

from __future__ import annotations

import math

import numpy as np

RUN_MULTIPLE = 64
RUN_FLOOR = 64 << 20

_BROADCAST = {
    "Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "LessOrEqual", "Greater",
    "GreaterOrEqual", "And", "Or", "Xor", "BitwiseAnd", "BitwiseOr", "Mod", "Sum", "Max", "Min",
    "Mean", "Where", "PRelu", "Clip",
}  # fmt: skip


def _ints(a) -> list:
    return [int(v) for v in np.asarray(a).reshape(-1)]


def _broadcast_count(shapes) -> int:
    """Elements of the broadcast of ``shapes`` (numpy's rules), without allocating."""
    rank = max((len(s) for s in shapes), default=0)
    total = 1
    for k in range(1, rank + 1):
        dims = [s[-k] for s in shapes if len(s) >= k]
        sizes = {d for d in dims if d != 1}
        total *= max(sizes) if sizes else 1
    return total


def _itemsize(*arrays) -> int:
    sizes = [np.asarray(a).dtype.itemsize for a in arrays if a is not None]
    return max(sizes, default=8)


def predicted_bytes(node, args) -> int | None:
    """Bytes the outputs of ``node`` will take given ``args`` (its inputs), or None when the
    operator's output is never larger than its inputs or cannot be predicted.

    For ``Einsum`` the number is the count of products the contraction computes (its time).
    Malformed arguments give None: the operator itself then reports them.
    """
    try:
        return _predict(node, args)
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, AttributeError):
        return None


def _predict(node, args) -> int | None:
    kind = node.op_type
    if kind == "Expand" and len(args) >= 2:
        x, shape = args[0], args[1]
        return _broadcast_count([np.shape(x), tuple(_ints(shape))]) * _itemsize(x)
    if kind == "Tile" and len(args) >= 2:
        x, repeats = args[0], _ints(args[1])
        return math.prod(max(r, 0) for r in repeats) * max(np.size(x), 1) * _itemsize(x)
    if kind == "ConstantOfShape" and args:
        value = node.attrs.get("value")
        itemsize = 4 if value is None else np.asarray(value).dtype.itemsize
        return math.prod(max(d, 0) for d in _ints(args[0])) * itemsize
    if kind == "Range" and len(args) >= 3:
        start, limit, delta = (np.asarray(a).reshape(-1)[0].item() for a in args[:3])
        if delta == 0:
            return None
        count = max(math.ceil((limit - start) / delta), 0)
        return count * _itemsize(args[0])
    if kind == "Pad" and args:
        x = args[0]
        pads = _ints(node.attrs.get("pads", []) if node.opset < 11 else args[1])
        extra = [0] * np.ndim(x)
        n = len(pads) // 2
        axes = range(np.ndim(x)) if len(args) < 4 or args[3] is None else _ints(args[3])
        for k, a in enumerate(axes):
            if k < n:
                extra[a] += max(pads[k], 0) + max(pads[k + n], 0)
        return math.prod(d + e for d, e in zip(np.shape(x), extra)) * _itemsize(x)
    if kind == "OneHot" and len(args) >= 3:
        depth = int(np.asarray(args[1]).reshape(-1)[0])
        return max(np.size(args[0]), 1) * max(depth, 0) * max(_itemsize(args[2]), 8)
    if kind in _BROADCAST:
        present = [a for a in args if a is not None]
        if not present:
            return None
        return _broadcast_count([np.shape(a) for a in present]) * max(_itemsize(*present), 8)
    if kind in ("MatMul", "Gemm") and len(args) >= 2:
        a, b = np.shape(args[0]), np.shape(args[1])
        if kind == "Gemm":
            a = a[::-1] if node.attrs.get("transA", 0) else a
            b = b[::-1] if node.attrs.get("transB", 0) else b
        rows = a[-2] if len(a) >= 2 else 1
        cols = b[-1] if len(b) >= 2 else 1
        batch = _broadcast_count([a[:-2], b[:-2]])
        return batch * rows * cols * _itemsize(*args)
    if kind == "Concat":  # one input may be listed many times
        return sum(int(np.size(a)) for a in args if a is not None) * _itemsize(*args)
    if kind == "Einsum":
        return _einsum_products(node.attrs.get("equation", ""), args)
    if kind in ("Resize", "Upsample") and args:
        x = args[0]
        sizes = args[3] if len(args) >= 4 and args[3] is not None and np.size(args[3]) else None
        if sizes is not None:
            return math.prod(max(d, 0) for d in _ints(sizes)) * _itemsize(x)
        scales = args[2] if kind == "Resize" and node.opset >= 11 and len(args) >= 3 else None
        if scales is None:
            scales = args[1] if len(args) >= 2 else node.attrs.get("scales")
        factors = [float(v) for v in np.asarray(scales, np.float64).reshape(-1)]
        return int(math.prod(max(d * f, 1.0) for d, f in zip(np.shape(x), factors))) * _itemsize(x)
    if kind == "ConvTranspose" and len(args) >= 2:  # the uncropped output, in float64
        x, w = np.shape(args[0]), np.shape(args[1])
        n = len(x) - 2
        strides = node.attrs.get("strides") or [1] * n
        dilations = node.attrs.get("dilations") or [1] * n
        full = [
            s * max(i - 1, 0) + (k - 1) * d + 1
            for i, k, s, d in zip(x[2:], w[2:], strides, dilations)
        ]
        return x[0] * w[1] * int(node.attrs.get("group", 1)) * math.prod(full) * 8
    return None


def _einsum_products(equation: str, args) -> int | None:
    """Products a plain ``np.einsum`` computes: the product of the sizes of all its letters."""
    equation = equation.replace(" ", "")
    lhs = equation.split("->")[0]
    terms = lhs.split(",")
    if "." in equation or len(terms) != len(args):
        return None
    sizes = {}
    for term, arg in zip(terms, args):
        shape = np.shape(arg)
        if len(term) != len(shape):
            return None
        for letter, dim in zip(term, shape):
            sizes[letter] = max(sizes.get(letter, 1), dim)
    return math.prod(sizes.values()) * _itemsize(*args)


def run_limit(largest: int, explicit: int | None) -> int:
    """The run-time limit for one operator's outputs (see the module docstring)."""
    return max(RUN_MULTIPLE * int(largest), RUN_FLOOR, int(explicit or 0))


def largest_nbytes(values) -> int:
    """The largest ``nbytes`` among arrays (0 for none)."""
    return max((int(getattr(v, "nbytes", 0)) for v in values), default=0)
