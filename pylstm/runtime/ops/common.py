"""The operator registry of the numpy graph executor and the helpers its operators share.

``OPS`` maps an ONNX op type to ``fn(node, *inputs) -> list of outputs``; the operators register
themselves with ``@op("Name")`` in ``math.py``, ``tensor.py`` and ``conv.py``.
"""

from __future__ import annotations

import numpy as np

OPS = {}


def op(*names):
    def register(fn):
        for name in names:
            OPS[name] = fn
        return fn

    return register


def _ints(a) -> list:
    return [int(v) for v in np.asarray(a).reshape(-1)]


def _axis(axis: int, rank: int, node) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def _axes_input_or_attr(node, inputs, index: int, since: int):
    """Axes given as an attribute (before opset ``since``) or as input ``index`` (from it)."""
    if node.opset >= since:
        a = inputs[index] if len(inputs) > index else None
        return None if a is None else _ints(a)
    axes = node.attrs.get("axes")
    return None if axes is None else [int(v) for v in axes]
