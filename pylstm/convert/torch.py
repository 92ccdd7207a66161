"""PyTorch: live ``torch.nn.LSTM``/``GRU``/``RNN`` modules and cells (``LSTMCell``, ``GRUCell``,
``RNNCell``), and their state dicts.

PyTorch's layout is the canonical one (gate order LSTM i,f,g,o and GRU r,z,n, ``[G*H, I]``
weights), so conversion is a matter of naming: ``weight_ih_l{k}[_reverse]``,
``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` and ``weight_hr_l{k}`` (projection); a
cell's are ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` (no suffix).
No torch import here: state dicts are plain ``{name: ndarray}`` (see torch_pickle.py).
Pure conversions: the results are frozen canonical layers; :mod:`pylstm.assemble` builds the
engine and the face.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import FormatError, UnsupportedError
from .builder import Direction, canonical_layer
from .canonical import CELLS, CanonicalLayer

_MODES = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn", "RNN_RELU": "rnn"}
_CELL_CLASSES = {"LSTMCell": "lstm", "GRUCell": "gru", "RNNCell": "rnn"}
_FIRST_KEY = re.compile(r"^(?P<prefix>.*?)weight_ih_l0$")
_CELL_KEY = re.compile(r"^(?P<prefix>.*?)weight_ih$")


def _state_tensor(state: dict, key: str, source: str, required: bool = True):
    """``state[key]`` as a finite float32 array; None when absent and not ``required``.

    Raises
    ------
    FormatError
        Missing (and required), not floats, or NaN/infinity (the message names the tensor).
    """
    if key not in state:
        if required:
            raise FormatError(f"{source}: missing tensor {key!r}")
        return None
    arr = np.asarray(state[key])
    if arr.dtype.kind != "f":
        raise FormatError(f"{source}: tensor {key!r} has dtype {arr.dtype}, expected floats")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise FormatError(f"{source}: tensor {key!r} contains NaN or infinity")
    return arr


@dataclass(frozen=True)
class TorchConverted:
    """A converted PyTorch module or cell: its canonical layers and what the face needs.

    ``is_cell``: the layers are one ``LSTMCell``/``GRUCell``/``RNNCell`` (faced by
    :class:`pylstm.CellModel`), else a module's stack (faced by :class:`pylstm.TorchModel`,
    with ``batch_first``).
    """

    layers: tuple
    is_cell: bool = False
    batch_first: bool = False


def convert_module(module) -> TorchConverted:
    """The canonical layers of a live ``torch.nn.LSTM``/``GRU``/``RNN`` or cell
    (``LSTMCell``/``GRUCell``/``RNNCell``); the weights copied into float32.

    Raises
    ------
    UnsupportedError
        ``module`` is none of those six classes (the message names its class).
    FormatError
        A weight holds NaN or infinity (the message names the tensor).
    """
    cell_kind = _torch_cell_kind(module)
    if cell_kind is not None:
        state = {k: v.detach().cpu().float().numpy() for k, v in module.state_dict().items()}
        nonlinearity = getattr(module, "nonlinearity", "tanh") if cell_kind == "rnn" else "tanh"
        layer = cell_layer_from_state_dict(
            state, prefix="", nonlinearity=nonlinearity, source="module"
        )
        return TorchConverted((layer,), is_cell=True)
    mode = getattr(module, "mode", None)
    if (
        mode not in _MODES
        or not hasattr(module, "state_dict")
        or not hasattr(module, "_flat_weights_names")
    ):
        raise UnsupportedError(
            f"from_torch takes torch.nn.LSTM, GRU, RNN, LSTMCell, GRUCell or RNNCell; got "
            f"{type(module).__module__}.{type(module).__qualname__}"
        )
    state = {k: v.detach().cpu().float().numpy() for k, v in module.state_dict().items()}
    nonlinearity = "relu" if mode == "RNN_RELU" else "tanh"
    layers = layers_from_state_dict(state, prefix="", nonlinearity=nonlinearity, source="module")
    if layers[0].cell != _MODES[mode]:  # pragma: no cover - shapes always agree with the mode
        raise FormatError(f"module mode {mode} does not match its weights")
    return TorchConverted(tuple(layers), batch_first=bool(module.batch_first))


def _torch_cell_kind(module):
    """``"lstm"``/``"gru"``/``"rnn"`` for a torch cell (or a subclass of one), else None; torch is
    not imported (the class names along the MRO decide)."""
    names = [c.__name__ for c in type(module).__mro__]
    if "RNNCellBase" not in names or not hasattr(module, "state_dict"):
        return None
    return next((_CELL_CLASSES[n] for n in names if n in _CELL_CLASSES), None)


def find_prefixes(state: Mapping[str, np.ndarray]) -> list:
    """Prefixes of every recurrent module in a state dict (``""`` for a bare module)."""
    return sorted({m.group("prefix") for k in state if (m := _FIRST_KEY.match(k))})


def find_cell_prefixes(state: Mapping[str, np.ndarray]) -> list:
    """Prefixes of every recurrent cell (``weight_ih`` and ``weight_hh``, no layer suffix)."""
    found = {m.group("prefix") for k in state if (m := _CELL_KEY.match(k))}
    return sorted(p for p in found if p + "weight_hh" in state)


def convert_state_dict(
    state: Mapping[str, np.ndarray],
    *,
    prefix: str | None = None,
    nonlinearity: str = "tanh",
    batch_first: bool | None = None,
    source: str = "state dict",
) -> TorchConverted:
    """The canonical layers of a module's state dict, or of a cell's (``is_cell``).

    ``prefix`` picks one among several modules and cells (required when there are several; the
    error lists them). ``batch_first`` applies to modules only (a cell's input is ``[B, I]``).
    Raises what :func:`layers_from_state_dict` raises.
    """
    modules, cells = find_prefixes(state), find_cell_prefixes(state)
    if prefix is not None and cells:
        if prefix not in modules + cells and prefix + "." in modules + cells:
            prefix += "."
        if prefix not in modules + cells:
            raise ValueError(
                f"{source}: no recurrent module or cell with prefix {prefix!r}; found: "
                + ", ".join(repr(p) for p in sorted(modules + cells))
            )
    is_cell = prefix is not None and prefix in cells and prefix not in modules
    if prefix is None and cells:
        if len(modules) + len(cells) > 1:
            raise ValueError(
                f"{source} holds several recurrent modules and cells; choose one with prefix=: "
                + ", ".join(repr(p) for p in sorted(modules + cells))
            )
        is_cell, prefix = True, cells[0]
    if not is_cell:
        layers = layers_from_state_dict(
            state, prefix=prefix, nonlinearity=nonlinearity, source=source
        )
        return TorchConverted(tuple(layers), batch_first=bool(batch_first))
    if batch_first:
        raise ValueError(
            f"{source}: {prefix!r} is a cell (LSTMCell/GRUCell/RNNCell), whose input is [B, I]; "
            "batch_first does not apply"
        )
    layer = cell_layer_from_state_dict(
        state, prefix=prefix, nonlinearity=nonlinearity, source=source
    )
    return TorchConverted((layer,), is_cell=True)


def cell_layer_from_state_dict(
    state: Mapping[str, np.ndarray],
    *,
    prefix: str = "",
    nonlinearity: str = "tanh",
    source: str = "state dict",
) -> CanonicalLayer:
    """The one-direction canonical layer of a ``LSTMCell``/``GRUCell``/``RNNCell`` state dict
    (``weight_ih`` ``[G*H, I]``, ``weight_hh`` ``[G*H, H]``, optional ``bias_ih``/``bias_hh``
    ``[G*H]``; the cell kind from ``G``).

    Raises
    ------
    ValueError
        A bad ``nonlinearity``.
    FormatError
        Missing tensors, or shapes that do not form a cell (the message names the tensor).
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")

    def tensor(name: str, required: bool = True):
        return _state_tensor(state, prefix + name, source, required)

    w_ih, w_hh = tensor("weight_ih"), tensor("weight_hh")
    if w_ih.ndim != 2 or w_hh.ndim != 2:
        raise FormatError(
            f"{source}: {prefix}weight_ih and {prefix}weight_hh must be 2-D, got shapes "
            f"{w_ih.shape} and {w_hh.shape}"
        )
    hidden = w_hh.shape[1]
    cell = {4: "lstm", 3: "gru", 1: "rnn"}.get(w_hh.shape[0] // hidden) if hidden else None
    if cell is None or w_hh.shape[0] % hidden:
        raise FormatError(
            f"{source}: {prefix}weight_hh has shape {w_hh.shape}; its rows must be 4, 3 or 1 "
            f"times hidden_size ({hidden}) for an LSTMCell, GRUCell or RNNCell"
        )
    if w_ih.shape[0] != w_hh.shape[0]:
        raise FormatError(
            f"{source}: tensor {prefix + 'weight_ih'!r} has shape {w_ih.shape}, expected "
            f"({w_hh.shape[0]}, input_size)"
        )
    has_bias = prefix + "bias_ih" in state or prefix + "bias_hh" in state
    b_ih, b_hh = tensor("bias_ih", has_bias), tensor("bias_hh", has_bias)
    for name, b in (("bias_ih", b_ih), ("bias_hh", b_hh)):
        if b is not None and b.shape != (w_hh.shape[0],):
            raise FormatError(
                f"{source}: tensor {prefix + name!r} has shape {b.shape}, expected "
                f"({w_hh.shape[0]},)"
            )
    direction = Direction(
        w=w_ih,
        r=w_hh,
        bias_w=b_ih,
        bias_r=b_hh,
        activations=(nonlinearity,) if cell == "rnn" else None,
        reverse=False,
    )
    return canonical_layer(cell, [direction])


def layers_from_state_dict(
    state: Mapping[str, np.ndarray],
    *,
    prefix: str | None = None,
    nonlinearity: str = "tanh",
    source: str = "state dict",
) -> list:
    """Canonical layers from a PyTorch RNN state dict.

    The cell kind is read from the shapes (``weight_hh`` has 4, 3 or 1 times ``hidden_size``
    rows); what a state dict does not record (``nonlinearity`` of an RNN, ``batch_first``) is
    the caller's to say.

    Parameters
    ----------
    state : mapping of str to ndarray
    prefix : str, optional
        Selects one module in a larger state dict (``"encoder."``; the trailing dot may be
        omitted). Required when there are several.
    nonlinearity : {"tanh", "relu"}
        For RNN cells.
    source : str
        Named in error messages (usually the file name).

    Raises
    ------
    ValueError
        No recurrent module, several without ``prefix``, an unknown prefix, or a bad
        ``nonlinearity``.
    FormatError
        Shapes that do not form a valid LSTM/GRU/RNN (the message names the tensor).
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    prefixes = find_prefixes(state)
    if not prefixes:
        raise FormatError(
            f"{source}: no LSTM/GRU/RNN weights found (expected keys such as 'weight_ih_l0'); "
            f"keys present: {', '.join(list(state)[:8])}{' ...' if len(state) > 8 else ''}"
        )
    if prefix is None:
        if len(prefixes) > 1:
            raise ValueError(
                f"{source} holds several recurrent modules; choose one with prefix=: "
                + ", ".join(repr(p) for p in prefixes)
            )
        prefix = prefixes[0]
    elif prefix not in prefixes and prefix + "." in prefixes:
        prefix += "."
    if prefix not in prefixes:
        raise ValueError(
            f"{source}: no recurrent module with prefix {prefix!r}; found: "
            + ", ".join(repr(p) for p in prefixes)
        )

    def tensor(name: str, required: bool = True):
        return _state_tensor(state, prefix + name, source, required)

    def check_shape(name: str, arr, shape):
        if arr is not None and arr.shape != shape:
            raise FormatError(
                f"{source}: tensor {prefix + name!r} has shape {arr.shape}, expected {shape}"
            )

    w_hh = tensor("weight_hh_l0")
    w_hr = tensor("weight_hr_l0", required=False)
    if w_hh.ndim != 2 or (w_hr is not None and w_hr.ndim != 2):
        raise FormatError(f"{source}: {prefix}weight_hh_l0 must be 2-D, got shape {w_hh.shape}")
    hidden = w_hr.shape[1] if w_hr is not None else w_hh.shape[1]
    gates = w_hh.shape[0] // hidden if hidden else 0
    cell = {4: "lstm", 3: "gru", 1: "rnn"}.get(gates) if w_hh.shape[0] == gates * hidden else None
    if cell is None or hidden == 0:
        raise FormatError(
            f"{source}: {prefix}weight_hh_l0 has shape {w_hh.shape}; its rows must be 4, 3 or 1 "
            f"times hidden_size ({hidden}) for LSTM, GRU or RNN"
        )
    if w_hr is not None and cell != "lstm":
        raise FormatError(f"{source}: {prefix}weight_hr_l0 (projection) only exists for LSTM")
    proj = w_hr.shape[0] if w_hr is not None else 0
    out = proj or hidden
    bidirectional = prefix + "weight_ih_l0_reverse" in state
    has_bias = prefix + "bias_ih_l0" in state
    num_layers = 0
    while prefix + f"weight_ih_l{num_layers}" in state:
        num_layers += 1
    activations = {"lstm": None, "gru": None, "rnn": (nonlinearity,)}[cell]
    G = CELLS[cell]

    layers = []
    for k in range(num_layers):
        dirs = []
        for reverse in (False, True) if bidirectional else (False,):
            sfx = f"_l{k}" + ("_reverse" if reverse else "")
            w_ih = tensor("weight_ih" + sfx)
            if w_ih.ndim != 2:
                raise FormatError(f"{source}: {prefix}weight_ih{sfx} must be 2-D, got {w_ih.shape}")
            in_size = w_ih.shape[1] if k == 0 else out * (2 if bidirectional else 1)
            check_shape("weight_ih" + sfx, w_ih, (G * hidden, in_size))
            r = tensor("weight_hh" + sfx)
            check_shape("weight_hh" + sfx, r, (G * hidden, out))
            b_ih = tensor("bias_ih" + sfx, required=has_bias)
            b_hh = tensor("bias_hh" + sfx, required=has_bias)
            check_shape("bias_ih" + sfx, b_ih, (G * hidden,))
            check_shape("bias_hh" + sfx, b_hh, (G * hidden,))
            p = tensor("weight_hr" + sfx, required=proj > 0)
            check_shape("weight_hr" + sfx, p, (proj, hidden))
            dirs.append(
                Direction(
                    w=w_ih,
                    r=r,
                    bias_w=b_ih,
                    bias_r=b_hh,
                    proj=p,
                    activations=activations,
                    reverse=reverse,
                )
            )
        layers.append(canonical_layer(cell, dirs))
    return layers
