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

``rows`` is an int (one sequence), a sequence of ints or a slice, as numpy indexes axis 0;
a state read with ``rows`` keeps its batch axis (an int gives a state of one sequence).
``set_state(state, rows)`` takes one sequence per row, or one sequence for all of them.
The format-specific parts live next to each stream: :mod:`pylstm.runtime.stream` (engines,
whose ``_core.Stream`` keeps the state on the device for CUDA engines) and
:mod:`pylstm.runtime.graph_stream` (graphs: ONNX and Keras models).

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


def rows_of(rows, batch_size: int) -> np.ndarray:
    """The sequences ``rows`` (an int, a sequence of ints or a slice; negative ints count from
    the end) of a batch of ``batch_size``, as a 1-D int array.

    Raises
    ------
    IndexError
        A row outside the batch.
    """
    try:
        return np.atleast_1d(np.arange(batch_size)[rows])
    except IndexError:
        raise IndexError(
            f"rows: {rows!r} is not a selection of the {batch_size} sequences of this stream"
        ) from None


def checked_state(state, names, shapes, batch_size: int, rows) -> np.ndarray | None:
    """Check ``state`` for ``set_state(state, rows)`` on a stream of ``batch_size`` sequences
    whose state has ``shapes`` per sequence; returns ``rows_of(rows)`` (None for all rows).

    Raises
    ------
    TypeError
        ``state`` is not a :class:`StreamState`.
    ValueError
        Its shapes, or its number of sequences (``batch_size`` for all rows; one per row, or
        one for all, with ``rows``).
    """
    if not isinstance(state, StreamState):
        raise TypeError(f"state must be a pylstm StreamState, got {type(state).__name__}")
    if state.shapes != tuple(shapes):
        raise ValueError(
            f"state: expected per-sequence shapes {list(shapes)} ({', '.join(names)}), "
            f"got {list(state.shapes)}"
        )
    if rows is None:
        if state.batch_size != batch_size:
            raise ValueError(
                f"state: expected {batch_size} sequences (this stream's batch_size), "
                f"got {state.batch_size}"
            )
        return None
    index = rows_of(rows, batch_size)
    if state.batch_size not in (1, len(index)):
        raise ValueError(
            f"state: expected {len(index)} sequences (one per row) or one for all rows, "
            f"got {state.batch_size}"
        )
    return index
