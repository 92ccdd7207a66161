"""Keras recurrent layers -> canonical :class:`Layer` s (one per engine the runtime builds) and
the plain description of how Keras picks, reverses and merges their outputs.

Keras layout, converted here once:

* ``kernel`` ``[I, G*H]`` and ``recurrent_kernel`` ``[H, G*H]``: transposed to ``[G*H, I]`` and
  ``[G*H, H]``. Gate columns: LSTM ``i, f, c, o`` (the canonical order, ``c`` = ``g``);
  GRU ``z, r, h`` (reordered to ``r, z, n``); SimpleRNN one gate.
* LSTM and SimpleRNN ``bias`` ``[G*H]``: one combined bias (``bias_w``; ``bias_r`` zeros).
  GRU ``reset_after=True``: ``bias`` ``[2, 3H]`` = input bias, recurrent bias, with the reset gate
  applied after the recurrent product (``linear_before_reset``); ``reset_after=False``: ``[3H]``.
* ``unit_forget_bias`` only initialises the bias (forget gate to 1) before training: it does not
  change inference, so it is ignored here.
* Keras 2 ``CuDNNLSTM`` / ``CuDNNGRU``: the same kernels, and cuDNN's two bias vectors per gate,
  ``bias`` ``[2*G*H]`` = input biases then recurrent biases (each in Keras' gate order); sigmoid
  and tanh always. ``CuDNNGRU`` is a GRU with the reset gate after the recurrent product and the
  recurrent bias inside it (``reset_after=True``), as PyTorch's GRU.
* Masked steps carry the state and repeat the previous output (``masked_output="hold"``) unless
  ``zero_output_for_mask``, which ``Bidirectional`` forces on when it returns sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FormatError, UnsupportedError
from .builder import Direction, Layer
from .keras_activations import engine_activation

SUPPORTED = (
    "LSTM, GRU, SimpleRNN, CuDNNLSTM, CuDNNGRU (Keras 2), Bidirectional, "
    "RNN(LSTMCell|GRUCell|SimpleRNNCell), Embedding, Masking, Dense, "
    "TimeDistributed(Dense|Dropout|Activation), Dropout, Activation, InputLayer, Conv1D, "
    "MaxPooling1D, AveragePooling1D, GlobalMaxPooling1D, GlobalAveragePooling1D, "
    "BatchNormalization, LayerNormalization, Flatten, Reshape, Permute, RepeatVector, "
    "Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum, Dot, Attention, "
    "AdditiveAttention, SpatialDropout1D, GaussianNoise, GaussianDropout, AlphaDropout"
)
RECURRENT = {
    "LSTM": "lstm",
    "GRU": "gru",
    "SimpleRNN": "rnn",
    "CuDNNLSTM": "lstm",
    "CuDNNGRU": "gru",
}
_CUDNN = ("CuDNNLSTM", "CuDNNGRU")
_CELLS = {"LSTMCell": "LSTM", "GRUCell": "GRU", "SimpleRNNCell": "SimpleRNN"}


@dataclass(frozen=True)
class Context:
    """What every conversion needs: the Keras major version (2 or 3) and the source named in
    error messages."""

    keras_major: int
    source: str = "model"


@dataclass(frozen=True)
class OpSpec:
    """A Keras layer other than a recurrent one, converted: the runtime operator that runs it
    (``op``, a name in :data:`pylstm.runtime.ops.keras_layers.KERAS_OPS`) and its constructor
    arguments (weights as float32 arrays, activations as ``(name, alpha, beta)`` of the numpy
    activation table). ``multi_input``: the layer takes several tensors."""

    op: str
    params: dict
    multi_input: bool = False
    num_outputs: int = 1


def as_f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def check_weights(arrays, shapes, where: str, names) -> list:
    """``arrays`` as float32, checked against ``shapes`` (FormatError naming the weight)."""
    if len(arrays) != len(shapes):
        raise FormatError(
            f"{where}: expected {len(shapes)} weights ({', '.join(names)}), got {len(arrays)}"
        )
    out = []
    for arr, shape, name in zip(arrays, shapes, names):
        arr = np.asarray(arr)
        if arr.dtype.kind not in "fiu":
            raise FormatError(f"{where}: weight {name} has dtype {arr.dtype}, expected floats")
        if arr.shape != tuple(shape):
            raise FormatError(f"{where}: weight {name} has shape {arr.shape}, expected {shape}")
        arr = as_f32(arr)
        if not np.all(np.isfinite(arr)):
            raise FormatError(f"{where}: weight {name} contains NaN or infinity")
        out.append(arr)
    return out


# -- recurrent layers ------------------------------------------------------------------------
@dataclass(frozen=True)
class SubLayer:
    """One Keras recurrent layer (one direction) placed in an engine.

    ``engine`` indexes :attr:`Recurrent.layers` (one engine each), ``slot`` the direction
    inside it.
    """

    engine: int
    slot: int
    cell: str
    units: int
    go_backwards: bool


@dataclass(frozen=True)
class Recurrent:
    """A Keras ``LSTM``/``GRU``/``SimpleRNN`` (one sub-layer) or ``Bidirectional`` (two), as
    plain data: the canonical layers (each becomes one engine) and how Keras picks, reverses
    and merges their outputs. The runtime runs it (:mod:`pylstm.runtime.graph_recurrent`).
    """

    name: str
    class_name: str
    input_size: int
    subs: tuple
    layers: tuple
    return_sequences: bool
    return_state: bool
    stateful: bool
    merge_mode: str | None = None
    bidirectional: bool = False
    hold: bool = True

    @property
    def num_outputs(self) -> int:
        out = 2 if self.bidirectional and self.merge_mode is None else 1
        states = sum(2 if s.cell == "lstm" else 1 for s in self.subs)
        return out + (states if self.return_state else 0)


@dataclass(frozen=True)
class Stacked:
    """``RNN`` over a list of cells (Keras wraps them in ``StackedRNNCells``): at each step the
    cells run in turn, each on the one below's output, as the same cells in separate layers
    would, the lower ones returning sequences (a masked step is skipped by every cell, so each
    carries its state through it). ``parts`` are those layers, lowest first; the last one
    carries the outer layer's options. Lowered to one graph node per part."""

    name: str
    parts: tuple
    stateful: bool
    class_name: str = "RNN"
    num_outputs: int = 1


def _rnn_config(class_name: str, config: dict, where: str) -> tuple:
    """``(class, merged config)``; ``RNN(cell=LSTMCell(...))`` reads as an LSTM."""
    if class_name == "RNN":
        cell = config.get("cell") or {}
        inner = _CELLS.get(cell.get("class_name")) if isinstance(cell, dict) else None
        if inner is None:
            name = cell.get("class_name") if isinstance(cell, dict) else cell
            raise UnsupportedError(f"{where}: RNN with cell {name} is not supported; {SUPPORTED}")
        return inner, {**config, **(cell.get("config") or {})}
    return class_name, config


def _direction(class_name, cfg, weights, keras_major, where) -> tuple:
    """One Keras recurrent layer -> (cell, Direction, reset_after)."""
    cell = RECURRENT[class_name]
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    H = int(cfg["units"])
    cudnn = class_name in _CUDNN  # always a bias, sigmoid/tanh, GRU reset after the product
    use_bias = cudnn or bool(cfg.get("use_bias", True))
    reset_after = True
    if cell == "gru" and not cudnn:
        reset_after = bool(cfg.get("reset_after", keras_major >= 3))
    if cfg.get("time_major"):
        raise UnsupportedError(f"{where}: time_major=True is not supported")
    if not weights:
        raise FormatError(f"{where}: the layer has no weights (build it first)")
    I = np.asarray(weights[0]).shape[0] if np.asarray(weights[0]).ndim == 2 else -1
    shapes = [(I, G * H), (H, G * H)]
    names = ["kernel", "recurrent_kernel"]
    if use_bias:
        if cudnn:
            shapes.append((2 * G * H,))
        else:
            shapes.append((2, G * H) if cell == "gru" and reset_after else (G * H,))
        names.append("bias")
    kernel, recurrent, *bias = check_weights(weights, shapes, where, names)
    default_rec = "sigmoid" if keras_major >= 3 else "hard_sigmoid"
    if cudnn:  # cuDNN's cells: no activation options
        act = engine_activation("tanh", keras_major, where)
        rec = engine_activation("sigmoid", keras_major, where)
    else:
        act = engine_activation(cfg.get("activation", "tanh"), keras_major, f"{where}: activation")
        rec = engine_activation(
            cfg.get("recurrent_activation", default_rec),
            keras_major,
            f"{where}: recurrent_activation",
        )
    acts = {"lstm": (rec, act, act), "gru": (rec, act), "rnn": (act,)}[cell]
    bias_w = bias_r = None
    if bias:
        b = bias[0]
        if cudnn:  # input biases, then recurrent biases
            bias_w, bias_r = b[: G * H], b[G * H :]
        else:
            bias_w, bias_r = (b[0], b[1]) if b.ndim == 2 else (b, np.zeros_like(b))
    direction = Direction(
        w=kernel.T,
        r=recurrent.T,
        bias_w=bias_w,
        bias_r=bias_r,
        activations=acts,
        reverse=bool(cfg.get("go_backwards", False)),
    )
    return cell, direction, reset_after


def _layer(cell, directions, reset_after, hold) -> Layer:
    return Layer(
        cell,
        directions,
        linear_before_reset=reset_after,
        masked_output="hold" if hold else "zero",
        gate_order="zrh" if cell == "gru" else None,
    )


def build_recurrent(spec, weights, ctx: Context) -> Recurrent:
    """An ``LSTM``/``GRU``/``SimpleRNN``/``RNN`` or a ``Bidirectional`` around one."""
    where = f"{ctx.source}: layer {spec.name!r} ({spec.class_name})"
    cfg = spec.config
    cell = cfg.get("cell") if spec.class_name == "RNN" else None
    if isinstance(cell, dict) and cell.get("class_name") == "StackedRNNCells":
        return _build_stacked(spec, weights, ctx, where)
    if spec.class_name == "Bidirectional":
        inner = cfg.get("layer") or {}
        fwd_cls, fwd_cfg = _rnn_config(inner.get("class_name"), inner.get("config") or {}, where)
        back = cfg.get("backward_layer")
        if back:
            bwd_cls, bwd_cfg = _rnn_config(back.get("class_name"), back.get("config") or {}, where)
        else:
            bwd_cls, bwd_cfg = fwd_cls, dict(fwd_cfg)
            going = bool(fwd_cfg.get("go_backwards", False))
            bwd_cfg["go_backwards"] = True if ctx.keras_major >= 3 else not going
        if fwd_cls not in RECURRENT or bwd_cls not in RECURRENT:
            raise UnsupportedError(
                f"{where}: Bidirectional around {fwd_cls} is not supported; {SUPPORTED}"
            )
        merge = cfg.get("merge_mode", "concat")
        if merge not in ("concat", "sum", "mul", "ave", None):
            raise UnsupportedError(f"{where}: merge_mode {merge!r} is not supported")
        n_fwd = 2 + bool(fwd_cfg.get("use_bias", True))
        parts = [(fwd_cls, fwd_cfg, weights[:n_fwd]), (bwd_cls, bwd_cfg, weights[n_fwd:])]
    else:
        cls, rnn_cfg = _rnn_config(spec.class_name, cfg, where)
        merge = None
        parts = [(cls, rnn_cfg, weights)]
    main = parts[0][1]
    return_sequences = bool(main.get("return_sequences", False))
    # Bidirectional sets zero_output_for_mask = return_sequences on both of its layers.
    bidirectional = spec.class_name == "Bidirectional"
    hold = not return_sequences if bidirectional else not main.get("zero_output_for_mask", False)
    subs_in = []  # (units, cell, Direction, reset_after) per Keras sub-layer
    for k, (cls, sub_cfg, sub_weights) in enumerate(parts):
        sub_where = where + (f" {('forward', 'backward')[k]} layer" if bidirectional else "")
        cell, direction, reset_after = _direction(
            cls, sub_cfg, sub_weights, ctx.keras_major, sub_where
        )
        subs_in.append((int(sub_cfg["units"]), cell, direction, reset_after))
    input_size = subs_in[0][2].w.shape[1]
    if any(d.w.shape[1] != input_size for _, _, d, _ in subs_in):
        raise FormatError(f"{where}: the two directions take different input sizes")

    def kind(sub):  # what must agree for two directions to share one engine layer
        units, cell, direction, reset_after = sub
        return units, cell, direction.bias_w is None, reset_after

    layers, subs = [], []
    if len(subs_in) == 2 and kind(subs_in[0]) == kind(subs_in[1]):
        units, cell, _, reset_after = subs_in[0]
        layers.append(_layer(cell, [d for _, _, d, _ in subs_in], reset_after, hold))
        subs = [SubLayer(0, k, cell, units, d.reverse) for k, (_, _, d, _) in enumerate(subs_in)]
    else:
        for k, (units, cell, direction, reset_after) in enumerate(subs_in):
            layers.append(_layer(cell, [direction], reset_after, hold))
            subs.append(SubLayer(k, 0, cell, units, direction.reverse))
    return Recurrent(
        name=spec.name,
        class_name=spec.class_name,
        input_size=input_size,
        subs=tuple(subs),
        layers=tuple(layers),
        return_sequences=return_sequences,
        return_state=bool(main.get("return_state", False)),
        stateful=bool(main.get("stateful", False)),
        merge_mode=merge,
        bidirectional=bidirectional,
        hold=hold,
    )


@dataclass(frozen=True)
class _PartSpec:
    """The config of one cell of a stack, as a layer (what :func:`build_recurrent` reads)."""

    name: str
    class_name: str
    config: dict


def _build_stacked(spec, weights, ctx: Context, where: str) -> Stacked:
    """``RNN(StackedRNNCells([...]))`` as one recurrent layer per cell (see :class:`Stacked`)."""
    cfg = spec.config
    cells = (cfg["cell"].get("config") or {}).get("cells")
    if not isinstance(cells, list) or not cells:
        raise FormatError(f"{where}: StackedRNNCells without cells")
    for option in ("go_backwards", "return_state"):
        if cfg.get(option):
            raise UnsupportedError(
                f"{where}: RNN over StackedRNNCells with {option}=True is not supported"
            )
    outer = {k: v for k, v in cfg.items() if k != "cell"}
    parts, at = [], 0
    for k, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("class_name") not in _CELLS:
            name = cell.get("class_name") if isinstance(cell, dict) else cell
            raise UnsupportedError(
                f"{where}: StackedRNNCells with cell {name} is not supported; {SUPPORTED}"
            )
        last = k == len(cells) - 1
        part_cfg = dict(outer, cell=cell)
        if not last:  # a lower cell feeds every step to the next; masked steps are skipped
            part_cfg.update(return_sequences=True, zero_output_for_mask=False)
        count = 2 + bool((cell.get("config") or {}).get("use_bias", True))
        part = _PartSpec(f"{spec.name}/cell_{k}", "RNN", part_cfg)
        parts.append(build_recurrent(part, weights[at : at + count], ctx))
        at += count
    if at != len(weights):
        raise FormatError(
            f"{where}: {len(weights)} weights for {len(cells)} stacked cells, expected {at}"
        )
    return Stacked(spec.name, tuple(parts), bool(cfg.get("stateful", False)))
