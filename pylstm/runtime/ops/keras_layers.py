"""The Keras operator library: the layers around the recurrent ones (``Embedding``, ``Masking``,
``Dense``, ``TimeDistributed(Dense)``, ``Dropout``, ``Activation``, and the mask operations
Keras 3 records) in plain numpy, the layers of :mod:`.keras_around`, and the graph node runner
that calls them (:class:`KerasCall`). Their configs and weights are read by
:mod:`pylstm.convert.keras_layers`; recurrent layers run on the engine
(:mod:`pylstm.runtime.graph_recurrent`).

Each operator has ``run(args, mask) -> (outputs, masks)`` (one mask, that of the first tensor
argument) or, for those of :mod:`.keras_around`, ``run_call(args, masks, kwargs)`` (a mask per
tensor argument).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..masks import not_masked, token_mask
from .activations import NumpyActivation
from .keras_around import AROUND_OPS, as_f32


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
        out_mask = token_mask(ids) if self.mask_zero else None
        return [self.table[ids]], [out_mask]


class Masking:
    """Mask = ``any(x != mask_value, axis=-1)``; masked steps are zeroed (Keras 3 ``where``,
    Keras 2 multiplies by the mask)."""

    num_outputs = 1

    def __init__(self, mask_value: float, multiply: bool):
        self.mask_value, self.multiply = mask_value, multiply

    def run(self, args, mask):
        x = args[0]
        keep = not_masked(x, self.mask_value)
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
    activation : tuple
        ``(name, alpha, beta)`` of the numpy activation table.
    """

    num_outputs = 1

    def __init__(self, kernel, bias, activation, name: str):
        self.kernel, self.bias, self.name = kernel, bias, name
        self.activation = NumpyActivation(*activation)

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
        self.activation = NumpyActivation(*activation)

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

    def __init__(self, class_name: str, config: dict):
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


#: Every Keras operator by the name conversion gives it (``OpSpec.op``).
KERAS_OPS = {
    "Identity": Identity,
    "Embedding": Embedding,
    "Masking": Masking,
    "Dense": Dense,
    "Activation": Activation,
    "TensorOp": TensorOp,
    **AROUND_OPS,
}


class KerasCall:
    """The graph node runner of one call of a Keras layer (a node of the ``pylstm.keras``
    domain, see :mod:`pylstm.convert.keras_graph`).

    The node's inputs are its tensor arguments, then their masks (one per tensor for
    ``run_call`` operators, the one mask of the call for the others); its outputs are the
    layer's outputs, then their masks. Its attributes: ``op`` and ``params`` (the operator),
    ``slots`` (per positional argument, the index of its tensor or None for a literal),
    ``literals`` (the literal arguments), ``kwargs``. Pickles as its node: the operator is
    built again from ``op`` and ``params`` on first use.
    """

    def __init__(self, node):
        self.node = node
        self._op = KERAS_OPS[node.attrs["op"]](**node.attrs["params"])

    @property
    def op(self):
        if self._op is None:
            attrs = self.node.attrs
            self._op = KERAS_OPS[attrs["op"]](**attrs["params"])
        return self._op

    def __getstate__(self):
        return {"node": self.node}

    def __setstate__(self, state):
        # (the node may not be filled in yet while unpickling: the operator is built on use)
        self.node, self._op = state["node"], None

    def __call__(self, *args):
        attrs = self.node.attrs
        n = attrs["tensors"]
        values = list(args[:n])
        masks = list(args[n:]) + [None] * (n + 1 - len(args[n:]))
        literals = iter(attrs["literals"])
        call_args = [next(literals) if k is None else values[k] for k in attrs["slots"]]
        if hasattr(self.op, "run_call"):
            outs, out_masks = self.op.run_call(call_args, masks[:n], attrs["kwargs"])
        else:
            outs, out_masks = self.op.run(call_args, masks[0])
        return [*outs, *out_masks]
