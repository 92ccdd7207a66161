"""The canonical network: the one form every reader converts to and the engine runs.

:class:`CanonicalLayer` and :class:`CanonicalDirection` are frozen: their arrays are read-only
float32 copies, and nothing rewrites them after construction. They are made by the pure function
:func:`pylstm.convert.builder.canonical_layer` from the raw-weights builder (:class:`pylstm.Layer`,
:class:`pylstm.Direction`, which take any float dtype, gate order and activation spelling).

Conventions (also documented in ``cpp/include/pylstm/network.hpp``):

* gate order -- LSTM ``i, f, g, o`` (``g`` is the cell candidate, also called ``c``);
  GRU ``r, z, n`` (reset, update, new); RNN a single gate;
* ``w`` is ``[G*H, I]`` and ``r`` is ``[G*H, Hout]`` with gate-major rows (PyTorch's layout);
  ``Hout`` is ``proj_size`` when the LSTM has a projection, else ``H``;
* ``bias_w`` and ``bias_r`` are ``[G*H]`` each (both or neither);
* ``peephole`` is ``[3, H]`` in the order ``i, f, o``; ``proj`` is ``[P, H]``.

Readers for other layouts (Keras ``i,f,c,o`` with transposed kernels, ONNX ``i,o,f,c``) reorder at
load time with :func:`reorder_gates`, once, so that kernels know only this form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import _core

# Written once, in the engine (cpp/src/network.cpp, network.hpp), and read from it here: the
# canonical gate order of each cell, and the activations the kernels implement with the number
# of parameters (alpha, beta) each reads (formulas in cpp/include/pylstm/network.hpp).
CANONICAL_ORDER = dict(_core.GATE_ORDERS)
CELLS = {cell: len(order) for cell, order in CANONICAL_ORDER.items()}  # gates per cell
ACTIVATIONS = dict(_core.ACTIVATIONS)
# Letters accepted for each gate in `gate_order` strings, mapped to the canonical letter.
GATE_ALIASES = {
    "lstm": {"i": "i", "f": "f", "g": "g", "c": "g", "o": "o"},
    "gru": {"r": "r", "z": "z", "u": "z", "n": "n", "h": "n"},
    "rnn": {"h": "h"},
}
DEFAULT_ACTIVATIONS = {
    "lstm": ("sigmoid", "tanh", "tanh"),
    "gru": ("sigmoid", "tanh"),
    "rnn": ("tanh",),
}


@dataclass(frozen=True)
class Activation:
    """An activation function with its parameters (``alpha``, ``beta`` as in ONNX).

    ``Activation("hardsigmoid", 0.2, 0.5)`` is tf.keras 2's ``hard_sigmoid``;
    ``Activation("hardsigmoid", 1/6, 0.5)`` is Keras 3's.
    """

    name: str
    alpha: float = 0.0
    beta: float = 0.0

    def __post_init__(self):
        key = self.name.lower().replace("_", "")
        if key not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.name!r}; expected one of {', '.join(ACTIVATIONS)}"
            )
        object.__setattr__(self, "name", key)


def as_activation(a) -> Activation:
    """``Activation``, a name, or a ``(name, alpha, beta)`` tuple -> ``Activation``."""
    if isinstance(a, Activation):
        return a
    if isinstance(a, str):
        return Activation(a)
    if isinstance(a, (tuple, list)) and 1 <= len(a) <= 3 and isinstance(a[0], str):
        return Activation(a[0], *(float(v) for v in a[1:]))
    raise TypeError(f"activation must be a name, (name, alpha, beta) or Activation, got {a!r}")


def reorder_gates(array: np.ndarray, order: str, cell: str, axis: int = 0) -> np.ndarray:
    """Reorder the gate blocks of ``array`` along ``axis`` from ``order`` to the canonical order.

    Parameters
    ----------
    array : ndarray, shape ``[..., G*H, ...]``
        Gate blocks of equal size stacked along ``axis``.
    order : str
        The blocks' order, one letter per gate: LSTM letters ``i f g|c o``, GRU ``r z|u n|h``.
        ``"iofc"`` is ONNX's LSTM order, ``"zrh"`` ONNX's and Keras' GRU order.
    cell : {"lstm", "gru", "rnn"}
    axis : int

    Returns
    -------
    ndarray
        Same shape, blocks in canonical order (LSTM ``ifgo``, GRU ``rzn``).
    """
    aliases = GATE_ALIASES[cell]
    letters = [aliases.get(ch) for ch in order.lower()]
    canonical = CANONICAL_ORDER[cell]
    if None in letters or sorted(letters) != sorted(canonical):
        raise ValueError(
            f"gate_order {order!r} is not a permutation of the {cell.upper()} gates "
            f"{canonical!r} (aliases: {', '.join(sorted(aliases))})"
        )
    blocks = np.split(np.asarray(array), len(letters), axis=axis)
    return np.concatenate([blocks[letters.index(g)] for g in canonical], axis=axis)


def reorder_blocks(array: np.ndarray, order: str, target: str) -> np.ndarray:
    """Equal blocks of ``array`` labelled by ``order`` (one letter each), put in ``target`` order."""
    blocks = np.split(array, len(order))
    return np.concatenate([blocks[order.index(ch)] for ch in target])


def frozen_floats(a) -> np.ndarray:
    """A read-only, C-contiguous float32 copy of ``a``: a read-only view of a read-only buffer,
    so that its ``writeable`` flag cannot be set again. An array that already is one (what
    this function returned) is returned as is."""
    if _is_frozen(a):
        return a
    buffer = np.array(a, dtype=np.float32, order="C", copy=True)
    buffer.flags.writeable = False
    return buffer.view()


def _is_frozen(a) -> bool:
    return (
        isinstance(a, np.ndarray)
        and a.dtype == np.float32
        and a.flags.c_contiguous
        and not a.flags.writeable
        and isinstance(a.base, np.ndarray)
        and a.base.base is None
        and not a.base.flags.writeable
    )


def _check_frozen(a, name: str, shape: tuple) -> None:
    if not _is_frozen(a):
        raise TypeError(f"{name} must be a read-only float32 array made by frozen_floats")
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")


_DIRECTION_ARRAYS = ("w", "r", "bias_w", "bias_r", "peephole", "proj")


@dataclass(frozen=True, eq=False)
class CanonicalDirection:
    """The weights of one direction in canonical layout (see the module docstring).

    Every array is a read-only, C-contiguous float32 array (``w`` ``[G*H, I]``, ``r``
    ``[G*H, Hout]``, ``bias_w``/``bias_r`` ``[G*H]`` or None, ``peephole`` ``[3*H]`` in the
    order ``i, f, o`` or None, ``proj`` ``[P, H]`` or None); ``activations`` is a tuple of
    :class:`Activation`; ``reverse`` a bool. The constructor only checks: build one with
    :func:`pylstm.convert.builder.canonical_layer`.
    """

    w: np.ndarray
    r: np.ndarray
    bias_w: np.ndarray | None
    bias_r: np.ndarray | None
    peephole: np.ndarray | None
    proj: np.ndarray | None
    activations: tuple
    reverse: bool

    def __post_init__(self):
        for name in _DIRECTION_ARRAYS:
            a = getattr(self, name)
            if a is not None:
                _check_frozen(a, name, a.shape if isinstance(a, np.ndarray) else ())
        if (self.bias_w is None) != (self.bias_r is None):
            raise ValueError("give both bias_w and bias_r, or neither")
        if not isinstance(self.activations, tuple) or not all(
            isinstance(a, Activation) for a in self.activations
        ):
            raise TypeError("activations must be a tuple of Activation")
        if not isinstance(self.reverse, bool):
            raise TypeError(f"reverse must be a bool, got {self.reverse!r}")

    def __setstate__(self, state: dict) -> None:
        """Unpickling: the arrays frozen again (pickle does not keep the read-only flag)."""
        for k, v in state.items():
            if k in _DIRECTION_ARRAYS and v is not None:
                v = frozen_floats(v)
            object.__setattr__(self, k, v)


class LayerSizes:
    """What a layer's sizes imply, for :class:`CanonicalLayer` and the engine's weightless
    ``LayerShape``: both have ``directions``, ``hidden_size`` and ``proj_size``."""

    @property
    def num_directions(self) -> int:
        return len(self.directions)

    @property
    def output_size(self) -> int:
        """Features per direction of this layer's output (``proj_size`` or ``hidden_size``)."""
        return self.proj_size or self.hidden_size


@dataclass(frozen=True, eq=False)
class CanonicalLayer(LayerSizes):
    """One recurrent layer (one or two directions) in canonical form, frozen.

    ``cell`` is ``"lstm"``, ``"gru"`` or ``"rnn"``; ``directions`` a tuple of one or two
    :class:`CanonicalDirection` whose shapes agree with ``input_size``, ``hidden_size`` and
    ``proj_size``; the options mean what :class:`pylstm.Layer` documents. The constructor only
    checks: build one with :func:`pylstm.convert.builder.canonical_layer`.
    """

    cell: str
    directions: tuple
    clip: float | None
    input_forget: bool
    linear_before_reset: bool
    masked_output: str
    input_size: int
    hidden_size: int
    proj_size: int

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of lstm, gru, rnn; got {self.cell!r}")
        if not isinstance(self.directions, tuple) or len(self.directions) not in (1, 2):
            raise ValueError("directions must be a tuple of 1 or 2 CanonicalDirection")
        if self.masked_output not in ("zero", "hold"):
            raise ValueError(f"masked_output must be 'zero' or 'hold', got {self.masked_output!r}")
        G, H, I, P = CELLS[self.cell], self.hidden_size, self.input_size, self.proj_size
        Hout = P or H
        for k, d in enumerate(self.directions):
            at = f"directions[{k}]"
            if not isinstance(d, CanonicalDirection):
                raise TypeError(f"{at} must be a CanonicalDirection, got {type(d).__name__}")
            _check_frozen(d.w, f"{at}.w", (G * H, I))
            _check_frozen(d.r, f"{at}.r", (G * H, Hout))
            for name, shape in (("bias_w", (G * H,)), ("bias_r", (G * H,)), ("peephole", (3 * H,))):
                if getattr(d, name) is not None:
                    _check_frozen(getattr(d, name), f"{at}.{name}", shape)
            if (d.proj is None) != (P == 0):
                raise ValueError(f"{at}: proj must be given exactly when proj_size > 0")
            if d.proj is not None:
                _check_frozen(d.proj, f"{at}.proj", (P, H))
            if len(d.activations) != len(DEFAULT_ACTIVATIONS[self.cell]):
                raise ValueError(f"{at}: wrong number of activations for {self.cell.upper()}")

    def to_core(self) -> dict:
        """The dict ``_core.Network`` takes (:func:`pylstm.convert.builder.layer_from_core` is
        the inverse)."""
        return {
            "cell": self.cell,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "proj_size": self.proj_size,
            "clip": float(self.clip or 0.0),
            "input_forget": self.input_forget,
            "linear_before_reset": self.linear_before_reset,
            "masked_output": self.masked_output,
            "directions": [
                {
                    "reverse": d.reverse,
                    "activations": [(a.name, a.alpha, a.beta) for a in d.activations],
                    "w": d.w,
                    "r": d.r,
                    "bias_w": d.bias_w,
                    "bias_r": d.bias_r,
                    "peephole": d.peephole,
                    "proj": d.proj,
                }
                for d in self.directions
            ],
        }


def check_stack(layers: Sequence[CanonicalLayer]) -> None:
    """Check that each layer's input size matches what the previous layer outputs."""
    if not layers:
        raise ValueError("a network needs at least one layer")
    for i, (prev, layer) in enumerate(zip(layers, layers[1:]), start=1):
        fed = prev.output_size * prev.num_directions
        if layer.input_size != fed:
            raise ValueError(
                f"layers[{i}] has input_size {layer.input_size} but layers[{i - 1}] outputs "
                f"{fed} features"
            )
