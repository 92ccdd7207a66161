"""Streaming: feed a sequence in chunks of time steps, the state carried between chunks.

:class:`Stream` runs an engine-only model (the PyTorch face, ``from_arrays``, the cell face) and
implements the stream protocol of :mod:`pylstm.runtime.stream_state`: open a state for B
sequences, step a chunk, read / replace / reset the carried state per sequence. The carried
state is the ``_core.Stream``'s (device memory on a CUDA engine); one sequence's state is read,
replaced and zeroed there by row, so that per-sequence calls move that sequence's state only.
"""

from __future__ import annotations

import numpy as np

from .output_buffers import empty_output
from .stream_state import StreamState, checked_state, rows_of
from .validation import as_float_array, positive_int


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
    writing ``y_tm`` ``[T, B, O]`` (any strides but the last); returns the state after the last
    step (views ``[B, ...]`` of new time-major arrays). T may be 0 (then the state is returned
    unchanged)."""
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


def _check_forward(engine) -> None:
    for i, layer in enumerate(engine.layers):
        if any(d.reverse for d in layer.directions):
            raise ValueError(
                f"cannot stream: layer {i} runs backwards in time (bidirectional or reverse), "
                "which needs the whole sequence; call the model on complete sequences instead"
            )


class Stream:
    """Stateful step-by-step runner over one model, for a fixed batch size.

    Create with ``model.stream(batch_size)``. Concatenating the outputs of successive
    :meth:`step` calls along the time axis equals one call on the whole sequence. The state
    lives in the engine, so a one-step call costs a single call into C++.

    Parameters
    ----------
    model : a pylstm model
        What the stream is of: its public ``engine`` (whose layers must all run forward in
        time: bidirectional and reverse layers need the end of the sequence before the first
        output) and ``batch_first``.
    batch_size : int
    view : callable, optional
        ``view(h, c)`` -> what :attr:`state` returns, given the carried state as ``h``
        ``[rows, B, Hout]`` and ``c`` ``[rows, B, H]`` (None without LSTM layers); the face
        shapes it. Default: ``(h, c)`` for LSTM models, else ``h``.
    """

    def __init__(self, model, batch_size: int, *, view=None):
        self.batch_size = positive_int(batch_size, "batch_size")
        engine = model.engine
        _check_forward(engine)
        self._model = model
        self._engine = engine
        self._batch_first = bool(model.batch_first)
        self._names, self._shapes = engine_state_layout(engine)
        self._view = view
        self._core = engine.stream_core(self.batch_size, self._batch_first)
        # The bound C++ method itself, so a call does not go through a Python frame.
        self.step = self._core.step

    def __reduce__(self):
        """Pickles as its model, batch size and carried state (see :mod:`pylstm.runtime.pickling`)."""
        from .pickling import reduce

        state = {
            "model": self._model,
            "batch_size": self.batch_size,
            "h": self._core.h,
            "c": self._core.c,
        }
        return reduce(self, state)

    @classmethod
    def _from_state(cls, state: dict) -> Stream:
        stream = state["model"].stream(state["batch_size"])  # the face's own stream
        stream._core.set_state(state["h"], state["c"])
        return stream

    def step(self, chunk) -> np.ndarray:  # replaced per instance by the C++ method
        """Run the next time steps.

        Parameters
        ----------
        chunk : array of float16, bfloat16 (torch tensors, ml_dtypes), float32 or float64
            ``[t, B, I]`` (``[B, t, I]`` for a batch-first model) for t steps, or ``[B, I]``
            for exactly one step.

        Returns
        -------
        ndarray, float32
            The outputs for these steps, in the same layout as ``chunk``.

        Raises
        ------
        TypeError
            Non-float chunk.
        ValueError
            Wrong batch size or feature count.
        """
        return self._core.step(chunk)

    def reset(self, rows=None) -> None:
        """Forget the carried state (back to zeros): of every sequence, or of the sequences
        ``rows`` (an int, a sequence of ints or a slice)."""
        if rows is None:
            self._core.reset()
            return
        for r in rows_of(rows, self.batch_size).tolist():
            self._core.reset(r)

    # -- the stream protocol (pylstm/runtime/stream_state.py) -----------------------------------
    def open_state(self, batch_size: int) -> StreamState:
        """Zero :class:`~pylstm.runtime.stream_state.StreamState` of ``batch_size`` sequences:
        ``h`` ``[B, rows, Hout]`` (and ``c`` ``[B, rows, H]`` for LSTM), rows = layers x
        directions."""
        batch = positive_int(batch_size, "batch_size")
        return StreamState.zeros(self._names, self._shapes, batch)

    def step_state(self, chunk, state: StreamState):
        """Run ``chunk`` (as :meth:`step` takes it, for ``state.batch_size`` sequences) from
        ``state``; returns ``(outputs, new_state)``. This stream's own state is not used."""
        engine = self._engine
        x = as_float_array(chunk, "chunk")
        if x.ndim not in (2, 3) or x.shape[-1] != engine.input_size:
            raise ValueError(
                f"chunk: expected [B, {engine.input_size}] or a 3-D chunk of steps, got shape "
                f"{x.shape}"
            )
        one_step = x.ndim == 2
        xt = x[None] if one_step else (x.transpose(1, 0, 2) if self._batch_first else x)
        if xt.shape[1] != state.batch_size:
            raise ValueError(
                f"chunk: expected {state.batch_size} sequences (the state's), got shape {x.shape}"
            )
        # Batch-major storage [B, T, O], so that each sequence's outputs are one block; the
        # engine writes it through a time-major view.
        y = empty_output((xt.shape[1], xt.shape[0], engine.output_size))
        y_tm = y.transpose(1, 0, 2)
        new = engine_step(engine, xt, y_tm, state)
        if one_step:
            return y[:, 0], new
        return (y if self._batch_first else y_tm), new

    def get_state(self, rows=None) -> StreamState:
        """A copy of this stream's carried state as a
        :class:`~pylstm.runtime.stream_state.StreamState` (``[B, rows, H]`` arrays); of the
        sequences ``rows`` only when given (an int, a sequence of ints or a slice; the state
        keeps its batch axis)."""
        if rows is None:
            return self._carried()
        index = rows_of(rows, self.batch_size).tolist()
        arrays = [np.empty((len(index), *shape), np.float32) for shape in self._shapes]
        for k, r in enumerate(index):
            for array, part in zip(arrays, self._core.row_state(r)):
                array[k] = part.reshape(array.shape[1:])
        return StreamState(self._names, arrays)

    def set_state(self, state: StreamState, rows=None) -> None:
        """Replace the carried state with ``state``: of every sequence (``state`` holds
        :attr:`batch_size` sequences), or of the sequences ``rows`` (``state`` holds one per
        row, or one for all).

        Raises
        ------
        TypeError
            ``state`` is not a StreamState.
        ValueError
            Its shapes or its number of sequences are not this stream's.
        """
        index = checked_state(state, self._names, self._shapes, self.batch_size, rows)
        if index is None:
            self._load(state)
            return
        h_all = state.arrays[0]
        c_all = state.arrays[1] if len(state.arrays) == 2 else None
        # (without LSTM layers, the core's c of a row is unused: zeros of its size)
        no_c = None if c_all is not None else np.zeros(self._core.c.size // self.batch_size)
        for k, r in enumerate(index.tolist()):
            j = 0 if state.batch_size == 1 else k
            self._core.set_row_state(r, h_all[j], no_c if c_all is None else c_all[j])

    @property
    def state(self):
        """The carried state: ``(h, c)`` for LSTM models, else ``h``; copies, shaped like the
        model's ``h_n`` / ``c_n``."""
        (rows, h_size), B = self._shapes[0], self.batch_size
        h = self._core.h.reshape(rows, B, h_size)
        c = self._core.c.reshape(rows, B, self._shapes[1][1]) if len(self._shapes) == 2 else None
        if self._view is not None:
            return self._view(h, c)
        return (h, c) if c is not None else h

    # -- the carried state as a StreamState ------------------------------------------------------
    def _carried(self) -> StreamState:
        """The carried state, batch-major copies (the core's flat arrays are time-major
        ``[rows, B, H]``)."""
        flat = (self._core.h, self._core.c)
        arrays = [
            flat[k].reshape(shape[0], self.batch_size, shape[1]).transpose(1, 0, 2).copy()
            for k, shape in enumerate(self._shapes)
        ]
        return StreamState(self._names, arrays)

    def _load(self, state: StreamState) -> None:
        """Make ``state`` (``batch_size`` sequences) the carried state."""
        h = np.ascontiguousarray(state.arrays[0].transpose(1, 0, 2), np.float32).ravel()
        c = self._core.c
        if len(state.arrays) == 2:
            c = np.ascontiguousarray(state.arrays[1].transpose(1, 0, 2), np.float32).ravel()
        self._core.set_state(h, c)
