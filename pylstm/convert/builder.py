"""The raw-weights builder: :class:`pylstm.Direction` and :class:`pylstm.Layer`, what users (and
the converters) write weights with, in any float dtype, gate order and activation spelling.

:func:`canonical_layer` is the pure function from those raw weights to the frozen
:class:`~pylstm.convert.canonical.CanonicalLayer` the engine runs: it checks them, reorders the
gates, resolves each direction's ``reverse`` and copies every array into a read-only float32
one. A :class:`Layer` runs it once when it is made (so that bad weights raise where they are
given) and holds the result; it shows the canonical form and never changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .canonical import (
    CELLS,
    DEFAULT_ACTIVATIONS,
    GATE_ALIASES,
    CanonicalDirection,
    CanonicalLayer,
    as_activation,
    frozen_floats,
    reorder_blocks,
    reorder_gates,
)


@dataclass
class Direction:
    """The weights of one direction of a recurrent layer, in canonical layout.

    Parameters
    ----------
    w : array, shape ``[G*H, I]``
        Input weights, gate-major rows in canonical gate order.
    r : array, shape ``[G*H, Hout]``
        Recurrent weights.
    bias_w, bias_r : array, shape ``[G*H]``, optional
        Input and recurrent biases (give both or neither; a single combined bias can be
        passed as ``bias_w`` with ``bias_r`` zeros).
    peephole : array, shape ``[3, H]`` or ``[3*H]``, optional
        LSTM peephole weights for gates ``i, f, o`` (ONNX ``P`` is ``i, o, f``: reorder it).
    proj : array, shape ``[P, H]``, optional
        LSTM projection (PyTorch ``weight_hr``).
    activations : sequence, optional
        LSTM ``(f, g, h)``, GRU ``(f, g)``, RNN ``(f,)``; names, ``(name, alpha, beta)`` or
        :class:`Activation`. Default: sigmoid/tanh as in PyTorch.
    reverse : bool, optional
        Process the sequence from its last step to its first. Default (``None``): by the
        direction's place in its :class:`Layer`: the only direction of a layer runs forward;
        of two, the first runs forward and the second backward (a bidirectional layer, as
        PyTorch's ``bidirectional=True`` and ONNX's ``direction="bidirectional"``). An explicit
        ``True``/``False`` is used as given.
    """

    w: np.ndarray
    r: np.ndarray
    bias_w: np.ndarray | None = None
    bias_r: np.ndarray | None = None
    peephole: np.ndarray | None = None
    proj: np.ndarray | None = None
    activations: Sequence | None = None
    reverse: bool | None = None


class Layer:
    """One recurrent layer (one or two directions), built from raw weights.

    Parameters
    ----------
    cell : {"lstm", "gru", "rnn"}
    directions : list of Direction
        One (forward, or reverse with ``reverse=True``) or two: bidirectional, the first
        forward and the second backward unless their ``reverse`` says otherwise; outputs (and
        ``h_n`` rows) in list order, as PyTorch's ``bidirectional=True``. Two directions with
        the same explicit ``reverse`` run side by side over the same input, in the same
        direction of time (what Keras' ``Bidirectional(LSTM(go_backwards=True))`` holds).
    clip : float, optional
        Clamp every gate pre-activation to ``[-clip, clip]`` (ONNX ``clip``, as ONNX Runtime
        reads it: the LSTM cell state is not clipped, nor clipped before ``h``).
    input_forget : bool
        LSTM coupled input-forget gate: ``f = 1 - i`` (ONNX ``input_forget``).
    linear_before_reset : bool
        GRU: ``True`` applies the reset gate after the recurrent product (PyTorch, Keras
        ``reset_after=True``, ONNX ``linear_before_reset=1``); ``False`` before it.
    masked_output : {"zero", "hold"}
        What a masked (padded) step outputs: zeros (PyTorch, ONNX) or the previous output
        (Keras). The state is carried through masked steps either way.
    gate_order : str, optional
        Gate order of ``w``, ``r`` and the biases when not canonical (e.g. ONNX's ``"iofc"``).
        For LSTM it also gives the order of the peepholes: the letters i, f, o in the order they
        appear (``"iofc"`` -> peepholes ``i, o, f``, as in ONNX's ``P``).

    A layer is immutable. Its attributes are those of its canonical form (:attr:`canonical`):
    ``directions`` hold float32 copies of the weights in canonical gate order with ``reverse``
    resolved, and ``gate_order`` is None (the weights are converted).
    """

    __slots__ = ("canonical",)

    def __init__(
        self,
        cell,
        directions,
        clip=None,
        input_forget=False,
        linear_before_reset=True,
        masked_output="zero",
        gate_order=None,
    ):
        canonical = canonical_layer(
            cell,
            directions,
            clip=clip,
            input_forget=input_forget,
            linear_before_reset=linear_before_reset,
            masked_output=masked_output,
            gate_order=gate_order,
        )
        object.__setattr__(self, "canonical", canonical)

    def __setattr__(self, name, value):
        raise AttributeError(f"pylstm.Layer is immutable (cannot set {name!r}); build a new one")

    def __delattr__(self, name):
        raise AttributeError(f"pylstm.Layer is immutable (cannot delete {name!r})")

    def __getstate__(self):
        return self.canonical

    def __setstate__(self, state) -> None:  # unpickling
        object.__setattr__(self, "canonical", state)

    def __repr__(self):
        c = self.canonical
        extra = f", proj_size={c.proj_size}" if c.proj_size else ""
        return (
            f"pylstm.Layer({c.cell!r}, input_size={c.input_size}, hidden_size={c.hidden_size}"
            f"{extra}, directions={c.num_directions})"
        )

    gate_order = None  # the weights are in canonical order

    cell = property(lambda self: self.canonical.cell)
    directions = property(lambda self: self.canonical.directions)
    clip = property(lambda self: self.canonical.clip)
    input_forget = property(lambda self: self.canonical.input_forget)
    linear_before_reset = property(lambda self: self.canonical.linear_before_reset)
    masked_output = property(lambda self: self.canonical.masked_output)
    input_size = property(lambda self: self.canonical.input_size)
    hidden_size = property(lambda self: self.canonical.hidden_size)
    proj_size = property(lambda self: self.canonical.proj_size)
    num_directions = property(lambda self: self.canonical.num_directions)
    output_size = property(
        lambda self: self.canonical.output_size,
        doc="Features per direction of this layer's output (``proj_size`` or ``hidden_size``).",
    )

    def to_core(self) -> dict:
        """The dict ``_core.Network`` takes."""
        return self.canonical.to_core()


def as_canonical(layer) -> CanonicalLayer:
    """The canonical form of a :class:`Layer` (or ``layer`` itself when it is one already).

    Raises
    ------
    TypeError
        Neither a :class:`pylstm.Layer` nor a :class:`CanonicalLayer`.
    """
    if isinstance(layer, CanonicalLayer):
        return layer
    if isinstance(layer, Layer):
        return layer.canonical
    raise TypeError(f"expected a pylstm.Layer, got {type(layer).__name__}")


def layer_from_core(core: dict) -> CanonicalLayer:
    """The canonical layer of a :meth:`CanonicalLayer.to_core` dict (what
    ``_core.Network.unpack`` returns), checked again as any raw weights are."""
    keys = ("w", "r", "bias_w", "bias_r", "peephole", "proj", "activations", "reverse")
    return canonical_layer(
        core["cell"],
        [Direction(**{k: d[k] for k in keys}) for d in core["directions"]],
        clip=core["clip"] or None,
        input_forget=core["input_forget"],
        linear_before_reset=core["linear_before_reset"],
        masked_output=core["masked_output"],
    )


def canonical_layer(
    cell,
    directions,
    *,
    clip=None,
    input_forget=False,
    linear_before_reset=True,
    masked_output="zero",
    gate_order=None,
) -> CanonicalLayer:
    """The frozen canonical layer of raw weights (the arguments of :class:`Layer`).

    Pure: the arguments are read, never changed; the result holds read-only float32 copies.

    Raises
    ------
    ValueError
        Bad cell, option, shape, gate order, activation count, or NaN/infinity in a weight
        (the message names the direction and the array).
    TypeError
        A direction that is not a :class:`Direction`, or non-float weights.
    """
    cell = str(cell).lower()
    if cell not in CELLS:
        raise ValueError(f"cell must be one of lstm, gru, rnn; got {cell!r}")
    if not isinstance(directions, (list, tuple)) or len(directions) not in (1, 2):
        raise ValueError("directions must be a list of 1 or 2 Direction objects")
    if masked_output not in ("zero", "hold"):
        raise ValueError(f"masked_output must be 'zero' or 'hold', got {masked_output!r}")
    if clip is not None and not (np.isfinite(clip) and clip > 0):
        raise ValueError(f"clip must be a positive finite number, got {clip!r}")
    if input_forget and cell != "lstm":
        raise ValueError("input_forget is only for LSTM layers")
    canon = []
    sizes = None
    for index, d in enumerate(directions):
        direction, dir_sizes = _canonical_direction(cell, d, index, gate_order)
        if sizes is None:
            sizes = dir_sizes
        elif dir_sizes != sizes:
            raise ValueError(f"directions[{index}]: sizes differ from directions[0]")
        canon.append(direction)
    input_size, hidden_size, proj_size = sizes
    return CanonicalLayer(
        cell=cell,
        directions=tuple(canon),
        clip=clip,
        input_forget=bool(input_forget),
        linear_before_reset=bool(linear_before_reset),
        masked_output=masked_output,
        input_size=input_size,
        hidden_size=hidden_size,
        proj_size=proj_size,
    )


def _floats(a, name: str, shape: tuple) -> np.ndarray:
    """``a`` as a read-only float32 array of ``shape``, finite."""
    if a is None:
        raise ValueError(f"{name} is required")
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a float array, got dtype {arr.dtype}")
    arr = frozen_floats(arr)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def _canonical_direction(cell: str, d, index: int, order) -> tuple:
    """``(CanonicalDirection, (I, H, P))`` of the raw direction ``d`` at ``index``."""
    if not isinstance(d, (Direction, CanonicalDirection)):
        raise TypeError(f"directions[{index}] must be a pylstm.Direction, got {type(d)}")
    at = f"directions[{index}]"
    G = CELLS[cell]

    def gates(a):
        return a if a is None or order is None else reorder_gates(a, order, cell)

    w = np.asarray(d.w)
    r = np.asarray(d.r)
    if w.ndim != 2 or r.ndim != 2:
        raise ValueError(f"{at}: w and r must be 2-D, got shapes {w.shape} and {r.shape}")
    if w.shape[0] % G or w.shape[0] == 0:
        raise ValueError(f"{at}.w: first axis must be {G}*hidden_size, got shape {w.shape}")
    H = w.shape[0] // G
    I = w.shape[1]
    P = 0
    if d.proj is not None:
        if cell != "lstm":
            raise ValueError(f"{at}: proj is only for LSTM layers")
        P = np.asarray(d.proj).shape[0]
    Hout = P or H
    if (d.bias_w is None) != (d.bias_r is None):
        raise ValueError(f"{at}: give both bias_w and bias_r, or neither")
    acts = tuple(as_activation(a) for a in (d.activations or DEFAULT_ACTIVATIONS[cell]))
    if len(acts) != len(DEFAULT_ACTIVATIONS[cell]):
        raise ValueError(
            f"{at}: {cell.upper()} takes {len(DEFAULT_ACTIVATIONS[cell])} "
            f"activations, got {len(acts)}"
        )
    peephole = None
    if d.peephole is not None:
        if cell != "lstm":
            raise ValueError(f"{at}: peepholes are only for LSTM layers")
        peephole = np.reshape(np.asarray(d.peephole), (-1,))
        if order is not None and peephole.shape == (3 * H,):
            # peepholes follow the gate order, without the candidate
            letters = [GATE_ALIASES["lstm"].get(ch) for ch in order.lower()]
            peep_order = "".join(ch for ch in letters if ch in "ifo")
            peephole = reorder_blocks(peephole, peep_order, "ifo")
        peephole = _floats(peephole, f"{at}.peephole", (3 * H,))
    direction = CanonicalDirection(
        w=_floats(gates(w), f"{at}.w", (G * H, I)),
        r=_floats(gates(r), f"{at}.r", (G * H, Hout)),
        bias_w=None if d.bias_w is None else _floats(gates(d.bias_w), f"{at}.bias_w", (G * H,)),
        bias_r=None if d.bias_r is None else _floats(gates(d.bias_r), f"{at}.bias_r", (G * H,)),
        peephole=peephole,
        proj=None if d.proj is None else _floats(d.proj, f"{at}.proj", (P, H)),
        activations=acts,
        reverse=bool(d.reverse) if d.reverse is not None else index == 1,
    )
    return direction, (I, H, P)
