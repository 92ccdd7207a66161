"""Serving many streams at once: cellular batching of concurrent streams in one process.

Each :class:`BatchedStream` sends chunks of time steps of one sequence; the batcher's worker
thread runs the pending chunks of all streams as one batch through the model (each stream's
state in its own row), so the recurrent weights are read once per step for all of them instead
of once per stream (cellular batching: Gao et al., EuroSys 2018).

How a round works
-----------------
* A call checks its chunk in the caller's thread (wrong shape or dtype: ``ValueError`` /
  ``TypeError`` there, nothing enqueued) and enqueues it.
* The worker takes up to ``max_batch`` pending chunks, and at most half the open streams once
  64 or more are open: while one half runs, the callers' threads (an event loop) turn the
  other half's results around and send its next chunks, instead of both sides taking turns.
  While fewer are pending than that (so more may come) and the engine is busy (it ran at
  least half of the last 20 ms), it waits for more, at most ``max_delay_ms`` after the oldest
  pending chunk arrived; when enough are pending, or the engine is mostly idle, it does not
  wait (waiting would only add latency), and a lone open stream never waits. Its engine calls
  leave one CPU to the callers.
* Chunks of equal shape form one batch: one engine call over ``[T, k, F]`` (one stream's chunk
  of T steps takes part in one call of T steps; chunks of different lengths run as separate
  calls in the same round). States are gathered from and scattered back to rows that hold
  each stream slot's state.
* With nothing pending and one stream open, ``max_delay_ms=0`` or the engine mostly idle, a
  blocking :meth:`BatchedStream.step` runs in the caller's thread instead of waking the worker:
  no thread hand-off (chunks that arrive meanwhile queue for the worker).

Two cores implement this: models that are a recurrent network alone (``from_torch``,
``from_arrays``, cells) are served by :class:`~pylstm.runtime.batcher_engine.EngineRounds`,
whose queue, worker and states are in C++ and whose callers wait without the GIL; Keras and
ONNX models, whose layers around the network run in numpy, by
:class:`~pylstm.runtime.batcher_rounds.PythonRounds`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref

import numpy as np

from ..errors import BatcherClosed
from .batcher_engine import EngineRounds
from .batcher_models import EngineModel, served_model
from .batcher_rounds import PythonRounds

_LIVE_CORES: weakref.WeakSet = weakref.WeakSet()


def _new_core(model, max_batch: int, max_delay_s: float):
    """The C++ core for a network alone, the Python one for models with layers around it."""
    served = served_model(model)  # TypeError / ValueError for models it cannot serve
    if isinstance(served, EngineModel):
        return EngineRounds(served, max_batch, max_delay_s)
    return PythonRounds(served, max_batch, max_delay_s)


def _after_fork_in_child() -> None:
    for core in list(_LIVE_CORES):
        core.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class StreamBatcher:
    """Serve many streams of one model at once with cellular batching.

    Parameters
    ----------
    model : a pylstm model whose ``stream()`` works
        From :func:`pylstm.from_torch`, :func:`pylstm.from_arrays`, :func:`pylstm.from_keras`,
        :func:`pylstm.load` (PyTorch, Keras or ONNX files). A CUDA model is served through
        its host-array path (untested on a GPU).
    max_batch : int
        The most streams one engine call runs.
    max_delay_ms : float
        How long a chunk may wait for the chunks of the other open streams to fill the batch,
        when fewer are pending than a round takes and the engine is busy (0: run whatever is
        pending at once).

    Raises
    ------
    TypeError
        Not a pylstm model.
    ValueError
        A model that cannot stream (bidirectional or reverse layers, ...), bad parameters.

    Notes
    -----
    A stream's chunk has no batch axis: ``[T, F]`` or ``[F]`` (one step) for PyTorch-style and
    Keras models (``[T]`` or one token id for Keras models starting with an Embedding); for
    ONNX models an array for the one time input (``[T, ...]``, the graph input without its
    batch axis, time first) or a dict of them. Its outputs are what ``model.stream(1).step``
    returns for that chunk without the batch axis, and without the time axis for one step.
    """

    def __init__(self, model, *, max_batch: int = 256, max_delay_ms: float = 1.0):
        if isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)):
            raise TypeError(f"max_batch must be an int, got {type(max_batch).__name__}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        try:
            delay = float(max_delay_ms)
        except (TypeError, ValueError):
            raise TypeError(
                f"max_delay_ms must be a number, got {type(max_delay_ms).__name__}"
            ) from None
        if not delay >= 0:
            raise ValueError(f"max_delay_ms must be >= 0, got {max_delay_ms}")
        self.max_batch = int(max_batch)
        self.max_delay_ms = delay
        self.model = model
        self._core = _new_core(model, self.max_batch, delay / 1e3)
        _LIVE_CORES.add(self._core)
        self._finalizer = weakref.finalize(self, self._core.close)

    def __repr__(self):
        state = "closed" if self.closed else f"{self.num_streams} streams"
        return (
            f"pylstm.StreamBatcher({type(self.model).__name__}, max_batch={self.max_batch}, "
            f"max_delay_ms={self.max_delay_ms}, {state})"
        )

    @property
    def closed(self) -> bool:
        return self._core.closed

    @property
    def num_streams(self) -> int:
        """Streams open now."""
        return self._core.live_streams()

    @property
    def stats(self) -> dict:
        """``rounds`` (engine calls so far) and ``steps`` (stream chunks they ran)."""
        return self._core.stats

    def open(self, initial_state=None) -> BatchedStream:
        """A new stream with its own state.

        Parameters
        ----------
        initial_state : optional
            The state to start from (zeros by default): a
            :class:`~pylstm.runtime.stream_state.StreamState` of one sequence (e.g. another stream's
            :attr:`BatchedStream.state`) or, for PyTorch-style models, ``h`` / ``(h, c)`` of
            one sequence, ``[layers*D, H]`` (or ``[layers*D, 1, H]``).

        Raises
        ------
        BatcherClosed
            The batcher is closed.
        TypeError, ValueError
            A malformed ``initial_state``.
        """
        core = self._core
        state = None if initial_state is None else core.served.initial_state(initial_state)
        return BatchedStream(self, core.open_slot(state))

    def close(self) -> None:
        """Stop serving: pending calls fail with :class:`pylstm.BatcherClosed`; returns once
        the worker has stopped (after the batch it may be running)."""
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class BatchedStream:
    """One stream served by a :class:`StreamBatcher`; made by :meth:`StreamBatcher.open`.

    One call at a time per stream (a second concurrent call raises ``RuntimeError``); any
    number of streams may be used from any threads and event loops at once.
    """

    __slots__ = ("__weakref__", "_batcher", "_busy", "_closed", "_core", "_finalizer", "_slot")

    def __init__(self, batcher: StreamBatcher, slot: int):
        self._batcher = batcher  # keeps the batcher open while its streams live
        self._core = batcher._core
        self._slot = slot
        self._busy = threading.Lock()
        self._closed = False
        self._finalizer = weakref.finalize(self, self._core.release, slot)

    def __repr__(self):
        return f"pylstm.BatchedStream(slot={self._slot}{', closed' if self._closed else ''})"

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this stream is closed")
        if self._core.closed:
            raise BatcherClosed("the StreamBatcher is closed")

    def _acquire(self) -> None:
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(
                "a step of this stream is already running (one call at a time per stream)"
            )

    def step(self, chunk):
        """Run the next time steps of this stream; blocks until they ran.

        Parameters
        ----------
        chunk : array
            No batch axis: ``[T, F]`` or ``[F]`` for one step (see :class:`StreamBatcher`).

        Returns
        -------
        The outputs of these steps, as ``model.stream(1).step`` returns them without the batch
        axis (``[T, O]``, or ``[O]`` for one step, for PyTorch-style models).

        Raises
        ------
        TypeError, ValueError
            A chunk of the wrong dtype or shape (raised here; no other stream is affected).
        RuntimeError
            The stream is closed, or another call of it is running.
        BatcherClosed
            The batcher is or was closed while the call waited.
        """
        self._check_open()
        self._acquire()
        try:
            return self._core.step(self, chunk)
        finally:
            self._busy.release()

    async def astep(self, chunk):
        """:meth:`step` for asyncio: awaits the result without blocking the event loop.

        If the awaiting task is cancelled, the chunk still runs (the stream's state advances)
        and the stream accepts its next call once it has.
        """
        if self._closed or self._core.closed:  # (inlined checks: per step, microseconds count)
            self._check_open()
        loop = asyncio.get_running_loop()
        if not self._busy.acquire(False):  # released by the batcher when the chunk has run
            self._acquire()  # raises
        try:
            future = self._core.submit_async(self, chunk, loop)
        except BaseException:
            self._busy.release()
            raise
        return await future

    def reset(self) -> None:
        """Forget this stream's state (back to zeros)."""
        self._check_open()
        self._acquire()
        try:
            self._core.reset_slot(self._slot)
        finally:
            self._busy.release()

    @property
    def state(self):
        """A copy of this stream's state: a :class:`~pylstm.runtime.stream_state.StreamState` of one
        sequence (pass it to :meth:`StreamBatcher.open` to start another stream from it)."""
        self._check_open()
        return self._core.slot_state(self._slot)

    def close(self) -> None:
        """Free this stream's slot (waits for a call of it that is running). Idempotent; a
        stream that is garbage-collected is closed the same way."""
        if self._closed:
            return
        self._busy.acquire()
        try:
            self._closed = True
            self._finalizer()
        finally:
            self._busy.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
