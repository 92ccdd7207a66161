"""The canonical network: the one form every reader converts to and the engine runs.

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
from dataclasses import dataclass, field

import numpy as np

CELLS = {"lstm": 4, "gru": 3, "rnn": 1}
CANONICAL_ORDER = {"lstm": "ifgo", "gru": "rzn", "rnn": "h"}
# Letters accepted for each gate in `gate_order` strings, mapped to the canonical letter.
_GATE_ALIASES = {
    "lstm": {"i": "i", "f": "f", "g": "g", "c": "g", "o": "o"},
    "gru": {"r": "r", "z": "z", "u": "z", "n": "n", "h": "n"},
    "rnn": {"h": "h"},
}
# Names the engine knows, with the number of parameters each takes: ONNX's eleven functions,
# then the other activations Keras layers may use (formulas in cpp/include/pylstm/network.hpp).
ACTIVATIONS = {
    "sigmoid": 0,
    "tanh": 0,
    "relu": 0,
    "affine": 2,
    "leakyrelu": 1,
    "thresholdedrelu": 1,
    "scaledtanh": 2,
    "hardsigmoid": 2,
    "elu": 1,
    "softsign": 0,
    "softplus": 0,
    "selu": 0,
    "silu": 0,
    "gelu": 0,
    "gelutanh": 0,
    "exponential": 0,
    "relu6": 0,
    "hardsilu": 0,
    "hardtanh": 0,
    "mish": 0,
    "logsigmoid": 0,
    "tanhshrink": 0,
    "celu": 1,
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
    aliases = _GATE_ALIASES[cell]
    letters = [aliases.get(ch) for ch in order.lower()]
    canonical = CANONICAL_ORDER[cell]
    if None in letters or sorted(letters) != sorted(canonical):
        raise ValueError(
            f"gate_order {order!r} is not a permutation of the {cell.upper()} gates "
            f"{canonical!r} (aliases: {', '.join(sorted(aliases))})"
        )
    blocks = np.split(np.asarray(array), len(letters), axis=axis)
    return np.concatenate([blocks[letters.index(g)] for g in canonical], axis=axis)


def _reorder_blocks(array: np.ndarray, order: str, target: str) -> np.ndarray:
    """Equal blocks of ``array`` labelled by ``order`` (one letter each), put in ``target`` order."""
    blocks = np.split(array, len(order))
    return np.concatenate([blocks[order.index(ch)] for ch in target])


def _floats(a, name: str, shape: tuple) -> np.ndarray:
    if a is None:
        raise ValueError(f"{name} is required")
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a float array, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


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


@dataclass
class Layer:
    """One recurrent layer (one or two directions) in canonical form.

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
    """

    cell: str
    directions: list
    clip: float | None = None
    input_forget: bool = False
    linear_before_reset: bool = True
    masked_output: str = "zero"
    gate_order: str | None = None
    input_size: int = field(init=False, default=0)
    hidden_size: int = field(init=False, default=0)
    proj_size: int = field(init=False, default=0)

    def __post_init__(self):
        self.cell = str(self.cell).lower()
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of lstm, gru, rnn; got {self.cell!r}")
        if not isinstance(self.directions, (list, tuple)) or len(self.directions) not in (1, 2):
            raise ValueError("directions must be a list of 1 or 2 Direction objects")
        if self.masked_output not in ("zero", "hold"):
            raise ValueError(f"masked_output must be 'zero' or 'hold', got {self.masked_output!r}")
        if self.clip is not None and not (np.isfinite(self.clip) and self.clip > 0):
            raise ValueError(f"clip must be a positive finite number, got {self.clip!r}")
        if self.input_forget and self.cell != "lstm":
            raise ValueError("input_forget is only for LSTM layers")
        self.directions = [self._canonical(d, i) for i, d in enumerate(self.directions)]
        self.gate_order = None  # converted

    def _canonical(self, d: Direction, index: int) -> Direction:
        if not isinstance(d, Direction):
            raise TypeError(f"directions[{index}] must be a pylstm.Direction, got {type(d)}")
        at = f"directions[{index}]"
        G = CELLS[self.cell]
        order = self.gate_order

        def gates(a):
            return a if a is None or order is None else reorder_gates(a, order, self.cell)

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
            if self.cell != "lstm":
                raise ValueError(f"{at}: proj is only for LSTM layers")
            P = np.asarray(d.proj).shape[0]
        Hout = P or H
        if index == 0:
            self.input_size, self.hidden_size, self.proj_size = I, H, P
        elif (self.input_size, self.hidden_size, self.proj_size) != (I, H, P):
            raise ValueError(f"{at}: sizes differ from directions[0]")
        if (d.bias_w is None) != (d.bias_r is None):
            raise ValueError(f"{at}: give both bias_w and bias_r, or neither")
        acts = d.activations or DEFAULT_ACTIVATIONS[self.cell]
        acts = tuple(as_activation(a) for a in acts)
        if len(acts) != len(DEFAULT_ACTIVATIONS[self.cell]):
            raise ValueError(
                f"{at}: {self.cell.upper()} takes {len(DEFAULT_ACTIVATIONS[self.cell])} "
                f"activations, got {len(acts)}"
            )
        peephole = None
        if d.peephole is not None:
            if self.cell != "lstm":
                raise ValueError(f"{at}: peepholes are only for LSTM layers")
            peephole = _floats(np.reshape(d.peephole, (-1,)), f"{at}.peephole", (3 * H,))
            if order is not None:  # peepholes follow the gate order, without the candidate
                letters = [_GATE_ALIASES["lstm"].get(ch) for ch in order.lower()]
                peep_order = "".join(ch for ch in letters if ch in "ifo")
                peephole = _reorder_blocks(peephole, peep_order, "ifo")
        return Direction(
            w=_floats(gates(w), f"{at}.w", (G * H, I)),
            r=_floats(gates(r), f"{at}.r", (G * H, Hout)),
            bias_w=None if d.bias_w is None else _floats(gates(d.bias_w), f"{at}.bias_w", (G * H,)),
            bias_r=None if d.bias_r is None else _floats(gates(d.bias_r), f"{at}.bias_r", (G * H,)),
            peephole=peephole,
            proj=None if d.proj is None else _floats(d.proj, f"{at}.proj", (P, H)),
            activations=acts,
            reverse=bool(d.reverse) if d.reverse is not None else index == 1,
        )

    @property
    def num_directions(self) -> int:
        return len(self.directions)

    @property
    def output_size(self) -> int:
        """Features per direction of this layer's output (``proj_size`` or ``hidden_size``)."""
        return self.proj_size or self.hidden_size

    def to_core(self) -> dict:
        """The dict ``_core.Network`` takes."""
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


def check_stack(layers: Sequence[Layer]) -> None:
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
