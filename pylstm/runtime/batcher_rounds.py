"""The stream batcher's rounds run in Python: the core of :class:`pylstm.StreamBatcher` for
models with layers around their recurrent network (Keras and ONNX models), whose batches run
through numpy and the model's own stream protocol. Models that are a network alone are served
by the C++ core instead (:mod:`pylstm.runtime.batcher_engine`); both offer the same methods to
:mod:`pylstm.runtime.batcher` (see :class:`PythonRounds`).
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from .. import _core
from ..errors import BatcherClosed
from .batcher_results import settle

_INITIAL_SLOTS = 16
# With at least twice this many streams open, a round takes at most half of them
# (see PythonRounds.round_size).
_MIN_HALF_ROUND = 32


class _Request:
    """One pending chunk of one stream."""

    __slots__ = ("arrived", "done", "future", "key", "loop", "one_step", "payload", "stream")

    def __init__(self, stream, payload, key, one_step, loop=None, future=None):
        self.stream, self.payload, self.key, self.one_step = stream, payload, key, one_step
        self.arrived = time.monotonic()
        self.loop, self.future = loop, future
        self.done = None  # [result, error] once settled (blocking calls)


class EngineLoad:
    """Whether the engine is busy: it ran at least half of the last window (20 ms), as
    cpp/src/cell_batcher.hpp's engine_busy. Only then does a chunk wait for others to fill a
    round: waiting saves engine time; with the engine mostly idle it only adds latency."""

    WINDOW_S = 0.02

    def __init__(self):
        self.window_start = time.monotonic()
        self.busy_s = 0.0
        self.busy_until = 0.0

    def note(self, start: float) -> None:
        """After a round (or a caller's own run) that started at ``start``."""
        end = time.monotonic()
        self.busy_s += end - start
        window = end - self.window_start
        if window < self.WINDOW_S:
            return
        if 2 * self.busy_s >= window:
            self.busy_until = end + self.WINDOW_S
        self.window_start, self.busy_s = end, 0.0

    def busy(self) -> bool:
        return time.monotonic() < self.busy_until


class PythonRounds:
    """A batcher core whose worker thread runs the rounds in Python (the worker holds no
    reference to the :class:`~pylstm.StreamBatcher`, so dropping the batcher stops it).

    What :mod:`pylstm.runtime.batcher` uses of a core (this one's and the C++ one's):
    ``served``, ``open_slot``, ``release``, ``reset_slot``, ``slot_state``, ``step``,
    ``submit_async``, ``close``, ``closed``, ``live_streams``, ``round_size``, ``stats``,
    ``slot_capacity``, ``after_fork_in_child``, and ``run_lock`` (held: no round runs; tests).
    """

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
        self.load = EngineLoad()

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

    def open_slot(self, state) -> int:
        """A slot for a new stream, starting from ``state`` (one sequence; None: zeros)."""
        with self.run_lock:
            if self.closed:
                raise BatcherClosed("the StreamBatcher is closed")
            slot = self.take_slot()
            if state is not None:
                self.slots.put([slot], state)
        return slot

    def reset_slot(self, slot: int) -> None:
        with self.run_lock:
            self.slots.reset(slot)

    def slot_state(self, slot: int):
        with self.run_lock:
            return self.slots.take([slot])

    @property
    def stats(self) -> dict:
        return {"rounds": self.rounds, "steps": self.batched_steps}

    def slot_capacity(self) -> int:
        return self.slots.batch_size

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
            # While the engine is busy, wait for the other open streams' chunks to fill the
            # batch, at most max_delay after the oldest pending chunk arrived (a lone open stream
            # never waits).
            while not self.closed and self.max_delay_s > 0 and self.load.busy():
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
        held by the worker, and there is nobody to wait for (one open stream, no delay, or an
        engine too idle for waiting to pay)."""
        return (
            not self.queue
            and not self.held
            and (self.max_delay_s == 0 or self.live_streams() <= 1 or not self.load.busy())
        )

    def step(self, stream, chunk):
        """Run ``chunk`` of ``stream`` (whose call this is); blocks until it ran."""
        payload, key, one_step = self.served.prepare(chunk)
        if self.caller_may_run() and self.run_lock.acquire(blocking=False):
            try:  # nobody to batch with: run here, no thread hand-off
                if self.closed:
                    raise BatcherClosed("the StreamBatcher is closed")
                self.collect_released()
                rows = slice(stream._slot, stream._slot + 1)  # views; the engine writes new arrays
                start = time.monotonic()
                outputs, new = self.served.run([payload], one_step, self.slots.take(rows))
                self.load.note(start)
                self.slots.put(rows, new)
                self.rounds += 1
                self.batched_steps += 1
                return outputs[0]
            finally:
                self.run_lock.release()
        req = _Request(stream, payload, key, one_step)
        wake = threading.Lock()
        wake.acquire()
        req.done = [None, None, wake]
        self.submit(req)
        wake.acquire()
        if req.done[1] is not None:
            raise req.done[1]
        return req.done[0]

    def submit_async(self, stream, chunk, loop):
        """Enqueue ``chunk`` of ``stream``; returns the future of ``loop`` its outputs go to
        (``stream._busy`` is released when they do)."""
        payload, key, one_step = self.served.prepare(chunk)
        future = loop.create_future()
        self.submit(_Request(stream, payload, key, one_step, loop, future))
        return future

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
                start = time.monotonic()
                done = self.run_round(batch)
                self.load.note(start)
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
