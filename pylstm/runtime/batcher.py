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
  While fewer are pending than that (so more may come), it waits for more, at most
  ``max_delay_ms`` after the oldest pending chunk arrived; when enough are pending it does not
  wait, and a lone open stream never waits. Its engine calls leave one CPU to the callers.
* Chunks of equal shape form one batch: one engine call over ``[T, k, F]`` (one stream's chunk
  of T steps takes part in one call of T steps; chunks of different lengths run as separate
  calls in the same round). States are gathered from and scattered back to one
  :class:`~pylstm.runtime.stream_state.StreamState` that holds a row per stream slot.
* With one stream open (or ``max_delay_ms=0``) and nothing pending, a blocking
  :meth:`BatchedStream.step` runs in the caller's thread instead of waking the worker: a lone
  stream pays no thread hand-off (chunks that arrive meanwhile queue for the worker).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections import deque

import numpy as np

from .. import _core
from ..errors import BatcherClosed
from .batcher_models import served_model
from .batcher_results import settle

_INITIAL_SLOTS = 16
# With at least twice this many streams open, a round takes at most half of them
# (see _Core.round_size).
_MIN_HALF_ROUND = 32


class _Request:
    """One pending chunk of one stream."""

    __slots__ = ("arrived", "done", "future", "key", "loop", "one_step", "payload", "stream")

    def __init__(self, stream, payload, key, one_step, loop=None, future=None):
        self.stream, self.payload, self.key, self.one_step = stream, payload, key, one_step
        self.arrived = time.monotonic()
        self.loop, self.future = loop, future
        self.done = None  # [result, error] once settled (blocking calls)


class _Core:
    """Everything the worker thread uses (the worker holds no reference to the
    :class:`StreamBatcher`, so dropping the batcher stops it)."""

    def __init__(self, served, max_batch: int, max_delay_s: float):
        self.served = served
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.slots = served.open_state(_INITIAL_SLOTS)  # one row per stream slot
        self.free = list(range(_INITIAL_SLOTS - 1, -1, -1))
        self.released = deque()  # slots of closed / collected streams, zeroed at the next round
        self.open_count = 0
        self.queue = deque()
        self._new_locks()
        self.closed = False
        self.worker = None
        self.wake_at = 0  # queue length at which the worker wants a notify (0: it is not waiting)
        self.held = 0  # chunks the worker has taken from the queue and not yet run
        self.rounds = 0
        self.batched_steps = 0
        _LIVE_CORES.add(self)

    def after_fork_in_child(self) -> None:
        """A forked child has none of the parent's threads: new locks, no worker (the next call
        starts one), no pending calls (their callers are in the parent)."""
        self.queue = deque()
        self._new_locks()
        self.worker = None
        self.wake_at = 0

    def _new_locks(self) -> None:
        self.queue_lock = threading.Lock()  # cv's lock (taken directly by submit: cheaper)
        self.cv = threading.Condition(self.queue_lock)
        self.run_lock = threading.Lock()  # held while a batch runs or slots change

    # -- slots (call with run_lock held) ---------------------------------------------------
    def collect_released(self) -> None:
        while self.released:
            slot = self.released.popleft()
            self.slots.reset(slot)
            self.free.append(slot)
            self.open_count -= 1

    def take_slot(self) -> int:
        self.collect_released()
        if not self.free:
            old = self.slots.batch_size
            self.slots = self.slots.resized(2 * old)
            self.free.extend(range(2 * old - 1, old - 1, -1))
        self.open_count += 1
        return self.free.pop()

    def release(self, slot: int) -> None:
        """Finalizer of a stream: may run in any thread, at any time (garbage collection), so it
        only records the slot."""
        self.released.append(slot)

    def live_streams(self) -> int:
        return self.open_count - len(self.released)

    # -- queue ------------------------------------------------------------------------------
    def submit(self, req: _Request) -> None:
        with self.queue_lock:  # (the Condition's own __enter__ is a Python-level call)
            if self.closed:
                raise BatcherClosed("the StreamBatcher is closed")
            self.queue.append(req)
            if self.worker is None:
                self.worker = threading.Thread(
                    target=self.work, name="pylstm-stream-batcher", daemon=True
                )
                self.worker.start()
            if 0 < self.wake_at <= len(self.queue):  # (a wake-up per call would cost a
                self.wake_at = 0  # thread switch per call)
                self.cv.notify()

    def next_batch(self):
        """Wait for pending chunks (and, within max_delay, for more); None once closed."""
        with self.cv:
            while not self.queue and not self.closed:
                self.wake_at = 1
                self.cv.wait()
            # Wait for the other open streams' chunks to fill the batch, at most max_delay after
            # the oldest pending chunk arrived (a lone open stream never waits).
            while not self.closed and self.max_delay_s > 0:
                want = self.round_size()
                remaining = self.queue[0].arrived + self.max_delay_s - time.monotonic()
                if len(self.queue) >= want or remaining <= 0:
                    break
                self.wake_at = want
                self.cv.wait(remaining)
            self.wake_at = 0
            if self.closed:
                return None
            n = min(len(self.queue), self.round_size())
            self.held = n
            return [self.queue.popleft() for _ in range(n)]

    def round_size(self) -> int:
        """The most chunks a round takes: max_batch, and at most half the open streams once
        there are 2 * _MIN_HALF_ROUND of them, so that the callers' threads (an event loop)
        turn the results of one half around while the other half runs, instead of both sides
        taking turns."""
        live = self.live_streams()
        half = (live + 1) // 2 if live >= 2 * _MIN_HALF_ROUND else live
        return max(1, min(self.max_batch, half))

    def caller_may_run(self) -> bool:
        """Whether a blocking call may run its chunk in its own thread: nothing is pending or
        held by the worker, and there is nobody to wait for (one open stream, or no delay)."""
        return (
            not self.queue and not self.held and (self.max_delay_s == 0 or self.live_streams() <= 1)
        )

    def work(self) -> None:
        # Leave the callers' threads a CPU to take results and send chunks on while a batch
        # runs (measured, 256 asyncio streams of LSTM H=256 on 2 CPUs: 121 000 steps/s with
        # rounds on both CPUs and all streams in one round; 172 000 on one CPU in half rounds).
        _core._leave_cpus_in_this_thread(1)
        while True:
            batch = self.next_batch()
            if batch is None:
                return
            with self.run_lock:
                if self.closed:
                    settle(
                        [(r, None, BatcherClosed("the StreamBatcher was closed")) for r in batch]
                    )
                    return
                self.collect_released()
                done = self.run_round(batch)
                self.held = 0
            settle(done)
            del batch, done  # (do not keep the requests, their futures and loops, while idle)

    def run_round(self, batch) -> list:
        """Run the chunks of ``batch`` (run_lock held); returns ``[(request, result, error)]``."""
        done, groups = [], {}
        for req in batch:
            if req.stream._closed:
                done.append((req, None, RuntimeError("the stream was closed")))
            else:
                groups.setdefault((req.key, req.one_step), []).append(req)
        for (_, one_step), reqs in groups.items():
            try:
                rows = np.fromiter((r.stream._slot for r in reqs), np.intp, len(reqs))
                outputs, new = self.served.run(
                    [r.payload for r in reqs], one_step, self.slots.take(rows)
                )
                self.slots.put(rows, new)
            except BaseException as exc:  # (inputs were checked by the callers: engine failures)
                done.extend((r, None, exc) for r in reqs)
            else:
                done.extend((r, out, None) for r, out in zip(reqs, outputs))
            self.rounds += 1
            self.batched_steps += len(reqs)
        return done

    def close(self) -> None:
        with self.cv:
            if self.closed:
                return
            self.closed = True
            pending = list(self.queue)
            self.queue.clear()
            self.cv.notify_all()
        settle([(r, None, BatcherClosed("the StreamBatcher was closed")) for r in pending])
        worker = self.worker
        if worker is not None and worker is not threading.current_thread():
            worker.join()


_LIVE_CORES: weakref.WeakSet = weakref.WeakSet()


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
        when fewer are pending than streams are open (0: run whatever is pending at once).

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
        self._core = _Core(served_model(model), self.max_batch, delay / 1e3)
        self._finalizer = weakref.finalize(self, _Core.close, self._core)

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
        return {"rounds": self._core.rounds, "steps": self._core.batched_steps}

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
        with core.run_lock:
            if core.closed:
                raise BatcherClosed("the StreamBatcher is closed")
            slot = core.take_slot()
            if state is not None:
                core.slots.put([slot], state)
        return BatchedStream(self, slot)

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
        self._finalizer = weakref.finalize(self, _Core.release, self._core, slot)

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
        core = self._core
        payload, key, one_step = core.served.prepare(chunk)
        self._acquire()
        try:
            if core.caller_may_run() and core.run_lock.acquire(blocking=False):
                try:  # nobody to batch with: run here, no thread hand-off
                    if core.closed:
                        raise BatcherClosed("the StreamBatcher is closed")
                    core.collect_released()
                    rows = slice(self._slot, self._slot + 1)  # views; the engine writes new arrays
                    outputs, new = core.served.run([payload], one_step, core.slots.take(rows))
                    core.slots.put(rows, new)
                    core.rounds += 1
                    core.batched_steps += 1
                    return outputs[0]
                finally:
                    core.run_lock.release()
            req = _Request(self, payload, key, one_step)
            wake = threading.Lock()
            wake.acquire()
            req.done = [None, None, wake]
            core.submit(req)
            wake.acquire()
            if req.done[1] is not None:
                raise req.done[1]
            return req.done[0]
        finally:
            self._busy.release()

    async def astep(self, chunk):
        """:meth:`step` for asyncio: awaits the result without blocking the event loop.

        If the awaiting task is cancelled, the chunk still runs (the stream's state advances)
        and the stream accepts its next call once it has.
        """
        if self._closed or self._core.closed:  # (inlined checks: per step, microseconds count)
            self._check_open()
        core = self._core
        payload, key, one_step = core.served.prepare(chunk)
        loop = asyncio.get_running_loop()
        if not self._busy.acquire(False):  # released by the batcher when the chunk has run
            self._acquire()  # raises
        future = loop.create_future()
        try:
            core.submit(_Request(self, payload, key, one_step, loop, future))
        except BaseException:
            self._busy.release()
            raise
        return await future

    def reset(self) -> None:
        """Forget this stream's state (back to zeros)."""
        self._check_open()
        self._acquire()
        try:
            with self._core.run_lock:
                self._core.slots.reset(self._slot)
        finally:
            self._busy.release()

    @property
    def state(self):
        """A copy of this stream's state: a :class:`~pylstm.runtime.stream_state.StreamState` of one
        sequence (pass it to :meth:`StreamBatcher.open` to start another stream from it)."""
        self._check_open()
        with self._core.run_lock:
            return self._core.slots.take([self._slot])

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
