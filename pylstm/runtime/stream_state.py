"""The stream protocol: a model's streaming state held outside the stream, batch-major.

Every stream class (:class:`pylstm.Stream` for PyTorch-style models, cells and
``from_arrays``, :class:`pylstm.KerasStream`, :class:`pylstm.runtime.graph_stream.OnnxStream`)
implements, on every device:

``open_state(batch_size) -> StreamState``
    The zero state of ``batch_size`` sequences (what a fresh stream starts from).
``step(chunk) -> outputs``
    Run the next chunk of the stream's own ``batch_size`` sequences, its carried state
    updated.
``step_state(chunk, state) -> (outputs, StreamState)``
    Run ``chunk`` (batched, in the layout the stream's own ``step`` takes, for
    ``state.batch_size`` sequences) from ``state``; return the outputs (as ``step`` returns
    them) and the state after the chunk. Neither ``state`` nor the stream's own state changes.
``get_state(rows=None) -> StreamState``
    A copy of the stream's own carried state (of the sequences ``rows`` when given).
``set_state(state, rows=None)``
    Replace the carried state: of every sequence, or of the sequences ``rows``.
``reset(rows=None)``
    Zero the carried state: of every sequence, or of the sequences ``rows``.

(:class:`pylstm.Stream` implements all six; ``KerasStream`` and ``OnnxStream`` have
``get_state()``/``reset()`` of the whole batch so far.)

A :class:`StreamState` is a tuple of named float32 arrays with the batch on axis 0 of each
(``[B, ...]``); sequences are read, replaced and zeroed by row with :meth:`StreamState.take`,
:meth:`StreamState.put` and :meth:`StreamState.reset`. The stream batcher keeps the states of
all its streams in one ``StreamState`` (one row per slot); pickling and the C API read the same
arrays.
"""

from __future__ import annotations

import numpy as np


class StreamState:
    """The carried state of B sequences: named float32 arrays ``[B, ...]`` (batch on axis 0).

    Parameters
    ----------
    names : sequence of str
        One name per array, e.g. ``("h", "c")`` for a PyTorch LSTM.
    arrays : sequence of ndarray
        float32, each ``[B, ...]`` with the same B. Views are allowed.
    """

    __slots__ = ("arrays", "names")

    def __init__(self, names, arrays):
        self.names = tuple(names)
        self.arrays = tuple(arrays)
        if len(self.names) != len(self.arrays):
            raise ValueError(f"{len(self.names)} names for {len(self.arrays)} state arrays")
        sizes = {a.shape[0] for a in self.arrays}
        if len(sizes) > 1:
            raise ValueError(f"state arrays disagree on the batch size: {sorted(sizes)}")

    def __repr__(self):
        shapes = ", ".join(f"{n}{list(a.shape)}" for n, a in zip(self.names, self.arrays))
        return f"StreamState({shapes})"

    @property
    def batch_size(self) -> int:
        """B, the number of sequences (0 for a model without state)."""
        return self.arrays[0].shape[0] if self.arrays else 0

    @property
    def shapes(self) -> tuple:
        """The shape of one sequence's part of each array (without the batch axis)."""
        return tuple(a.shape[1:] for a in self.arrays)

    @classmethod
    def zeros(cls, names, shapes, batch_size: int) -> StreamState:
        """Zero state of ``batch_size`` sequences; ``shapes`` per array, without the batch."""
        return cls(names, [np.zeros((batch_size, *s), np.float32) for s in shapes])

    @classmethod
    def _of(cls, names: tuple, arrays: tuple) -> StreamState:
        """Construction without checks (hot paths that know the arrays fit)."""
        state = cls.__new__(cls)
        state.names, state.arrays = names, arrays
        return state

    def take(self, rows) -> StreamState:
        """The state of the sequences ``rows`` (an int array or list: copies; a slice: views),
        as a new ``StreamState`` of ``len(rows)`` sequences."""
        return StreamState._of(self.names, tuple(a[rows] for a in self.arrays))

    def put(self, rows, src: StreamState) -> None:
        """Replace the state of the sequences ``rows`` with ``src`` (``len(rows)`` sequences,
        or one sequence broadcast to all ``rows``)."""
        if (
            src.names is not self.names
            and (  # (states of one model share their names)
                len(src.arrays) != len(self.arrays)
                or any(d.shape[1:] != a.shape[1:] for d, a in zip(self.arrays, src.arrays))
            )
        ):
            raise ValueError(
                f"state: expected per-sequence shapes {list(self.shapes)} "
                f"({', '.join(self.names)}), got {list(src.shapes)}"
            )
        for dst, a in zip(self.arrays, src.arrays):
            dst[rows] = a

    def reset(self, rows=slice(None)) -> None:
        """Zero the state of the sequences ``rows`` (all by default)."""
        for a in self.arrays:
            a[rows] = 0.0

    def copy(self) -> StreamState:
        return StreamState(self.names, [np.array(a, np.float32, order="C") for a in self.arrays])

    def resized(self, batch_size: int) -> StreamState:
        """A new state of ``batch_size`` sequences: the first rows copied, the rest zeros."""
        out = StreamState.zeros(self.names, self.shapes, batch_size)
        n = min(batch_size, self.batch_size)
        out.put(slice(0, n), self.take(slice(0, n)))
        return out


# -- engine-only models (PyTorch face, from_arrays, cells) ----------------------------------


def engine_state_layout(engine) -> tuple:
    """``(names, shapes)`` of the stream state of an engine whose layers all have the same
    sizes (a PyTorch-style stack or a cell): ``h`` ``(rows, Hout)`` and, for LSTM, ``c``
    ``(rows, H)`` per sequence, rows = layers x directions (``h_n`` with the batch axis
    first)."""
    first = engine.layers[0]
    rows = engine.state_rows
    if first.cell == "lstm":
        return ("h", "c"), ((rows, first.output_size), (rows, first.hidden_size))
    return ("h",), ((rows, first.output_size),)


def engine_step(engine, x_tm: np.ndarray, y_tm: np.ndarray, state: StreamState) -> StreamState:
    """Run ``engine`` on time-major ``x_tm`` ``[T, B, I]`` from ``state`` (B sequences),
    writing ``y_tm`` ``[T, B, O]``; returns the state after the last step (views ``[B, ...]``
    of new time-major arrays). T may be 0 (then the state is returned unchanged)."""
    if x_tm.shape[0] == 0:
        return state
    # [B, rows, H] -> [rows, B, H]: no copy for B = 1 or rows = 1 (size-1 axes)
    h0 = state.arrays[0].transpose(1, 0, 2)
    if not h0.flags.c_contiguous:
        h0 = np.ascontiguousarray(h0)
    h_n = np.empty(h0.shape, np.float32)
    if len(state.arrays) == 1:
        engine.forward(x_tm, y_tm, None, h0, None, h_n, None)
        return StreamState._of(state.names, (h_n.transpose(1, 0, 2),))
    c0 = state.arrays[1].transpose(1, 0, 2)
    if not c0.flags.c_contiguous:
        c0 = np.ascontiguousarray(c0)
    c_n = np.empty(c0.shape, np.float32)
    engine.forward(x_tm, y_tm, None, h0, c0, h_n, c_n)
    return StreamState._of(state.names, (h_n.transpose(1, 0, 2), c_n.transpose(1, 0, 2)))


# -- Keras models ---------------------------------------------------------------------------


def keras_state_layout(model) -> list:
    """``[(key, engine_index, name, shape), ...]``: the arrays of a Keras model's stream state,
    per forward recurrent node and engine: ``h`` ``[D, H]``, ``c`` ``[D, H]`` (LSTM) and
    ``y`` ``[D*H]`` (the last output, which masked steps of the next chunk repeat)."""
    layout = []
    for node in model._recurrent:
        op = model.ops[node.layer]
        key = (node.layer, node.index)
        for e, engine in enumerate(op.engines):
            layer = engine.layers[0]
            d, h = layer.num_directions, layer.hidden_size
            tag = f"{node.layer}[{node.index}]" + (f".{e}" if len(op.engines) > 1 else "")
            layout.append((key, e, f"{tag}/h", (d, h)))
            if layer.cell == "lstm":
                layout.append((key, e, f"{tag}/c", (d, h)))
            layout.append((key, e, f"{tag}/y", (engine.output_size,)))
    return layout


def keras_open_state(model, batch_size: int) -> StreamState:
    layout = keras_state_layout(model)
    return StreamState.zeros([n for _, _, n, _ in layout], [s for *_, s in layout], batch_size)


def keras_carry_from_state(model, state: StreamState) -> dict:
    """The ``carry`` dict ``KerasModel._run`` reads (per node: ``[(h0, c0, prev_y)]`` per
    engine, h0/c0 ``[D, B, H]``) from a ``StreamState``."""
    carry: dict = {}
    arrays = iter(state.arrays)
    for node in model._recurrent:
        op = model.ops[node.layer]
        per_engine = []
        for engine in op.engines:
            h = np.ascontiguousarray(next(arrays).transpose(1, 0, 2))
            c = None
            if engine.layers[0].cell == "lstm":
                c = np.ascontiguousarray(next(arrays).transpose(1, 0, 2))
            per_engine.append((h, c, next(arrays)))
        carry[(node.layer, node.index)] = per_engine
    return carry


def keras_state_from_carry(model, carry: dict, names) -> StreamState:
    arrays = []
    for node in model._recurrent:
        for h, c, y in carry[(node.layer, node.index)]:
            arrays.append(h.transpose(1, 0, 2))
            if c is not None:
                arrays.append(c.transpose(1, 0, 2))
            arrays.append(y)
    return StreamState(names, arrays)


# -- ONNX models ----------------------------------------------------------------------------


def onnx_state_layout(model) -> list:
    """``[(node, name, shape), ...]``: per recurrent node (graph order) ``h`` ``[D, H]`` and,
    for LSTM, ``c`` ``[D, H]``."""
    layout = []
    for node in model.recurrent_nodes:
        layout.append((node, f"{node.name}/h", (node.D, node.H)))
        if node.op == "LSTM":
            layout.append((node, f"{node.name}/c", (node.D, node.H)))
    return layout


def onnx_open_state(model, batch_size: int) -> StreamState:
    layout = onnx_state_layout(model)
    return StreamState.zeros([n for _, n, _ in layout], [s for *_, s in layout], batch_size)


def onnx_states_from_state(model, state: StreamState) -> dict:
    """``{node: (h [D, B, H], c or None)}`` as ``StreamContext.states`` holds them."""
    states = {}
    arrays = iter(state.arrays)
    for node in model.recurrent_nodes:
        h = np.ascontiguousarray(next(arrays).transpose(1, 0, 2))
        c = np.ascontiguousarray(next(arrays).transpose(1, 0, 2)) if node.op == "LSTM" else None
        states[node] = (h, c)
    return states


def onnx_state_from_states(model, states: dict, names) -> StreamState:
    arrays = []
    for node in model.recurrent_nodes:
        h, c = states[node]
        arrays.append(h.transpose(1, 0, 2))
        if node.op == "LSTM":
            arrays.append(c.transpose(1, 0, 2))
    return StreamState(names, arrays)
