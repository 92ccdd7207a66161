"""The stream batcher's core for models that are a recurrent network alone (``from_torch``,
``from_arrays``, cells): the queue, the worker thread, the rounds and the streams' states are in
C++ (``_core.CellBatcher``, cpp/src/cell_batcher.hpp).

A blocking :meth:`~pylstm.BatchedStream.step` hands its chunk over and waits without the GIL,
and the worker runs rounds without it, so a client thread's call costs one wake-up (and the GIL
hand-off CPython adds) and the batch runs while the callers' threads turn results around (a
worker in Python needed the GIL for every chunk it took and every result it handed back: from
128 client threads it served a quarter of what the same threads got calling
``model.stream(1)`` each).
Asynchronous results reach their event loops through :mod:`pylstm.runtime.batcher_results`
(the worker takes the GIL once per round for them).
"""

from __future__ import annotations

import itertools
import weakref

import numpy as np

from .. import _core
from ..errors import BatcherClosed
from .batcher_models import EngineModel
from .batcher_results import post_to_loops
from .stream_state import StreamState


class EngineRounds:
    """A batcher core (the methods of :class:`~pylstm.runtime.batcher_rounds.PythonRounds`)
    whose rounds run in C++, for ``served``, an :class:`EngineModel`."""

    def __init__(self, served: EngineModel, max_batch: int, max_delay_s: float):
        self.served = served
        template = self.served.open_state(1)  # h [1, rows, Hout] (and c [1, rows, H])
        self._names, self._shapes = template.names, template.shapes
        self._pending = {}  # token -> (future, stream, loop) of asynchronous chunks
        self._tokens = itertools.count()
        self.cells = _core.CellBatcher(
            served.engine._net, max_batch, max_delay_s, _calls_weakly(self._on_done)
        )
        self.run_lock = _Hold(self.cells)

    # -- slots ------------------------------------------------------------------------------
    def open_slot(self, state) -> int:
        """A slot for a new stream, starting from ``state`` (one sequence; None: zeros)."""
        if self.cells.closed:
            raise BatcherClosed("the StreamBatcher is closed")
        if state is None:
            return self.cells.open_slot()
        flat = [np.ascontiguousarray(a, np.float32).reshape(-1) for a in state.arrays]
        return self.cells.open_slot(*flat)

    def release(self, slot: int) -> None:
        """Finalizer of a stream (any thread, any time): the slot is freed at the next round."""
        self.cells.release_slot(slot)

    def reset_slot(self, slot: int) -> None:
        self.cells.reset_slot(slot)

    def slot_state(self, slot: int) -> StreamState:
        flat = self.cells.read_slot(slot)
        arrays = [a.reshape(1, *shape) for a, shape in zip(flat, self._shapes)]
        return StreamState(self._names, arrays)

    def slot_capacity(self) -> int:
        return self.cells.slot_capacity()

    def live_streams(self) -> int:
        return self.cells.live_streams()

    def round_size(self) -> int:
        return self.cells.round_size()

    @property
    def stats(self) -> dict:
        return {"rounds": self.cells.rounds, "steps": self.cells.steps}

    @property
    def closed(self) -> bool:
        return self.cells.closed

    # -- chunks -----------------------------------------------------------------------------
    def step(self, stream, chunk):
        return self.cells.step(stream._slot, chunk)

    def submit_async(self, stream, chunk, loop):
        """Enqueue ``chunk`` of ``stream``; returns the future of ``loop`` its outputs go to
        (``stream._busy`` is released when they do)."""
        future = loop.create_future()
        token = next(self._tokens)
        self._pending[token] = (future, stream, loop)  # (before the worker can report it)
        try:
            empty = self.cells.submit(stream._slot, chunk, token)
        except BaseException:
            del self._pending[token]
            raise
        if empty is not None:  # zero steps: nothing to run
            del self._pending[token]
            stream._busy.release()
            future.set_result(empty)
        return future

    def _on_done(self, items) -> None:
        """From the worker (with the GIL): the asynchronous chunks of a round, as
        (token, outputs, error)."""
        results = []
        for token, y, error in items:
            future, stream, loop = self._pending.pop(token)
            stream._busy.release()
            results.append((loop, future, y, error))
        post_to_loops(results)

    def close(self) -> None:
        self.cells.close()

    def after_fork_in_child(self) -> None:
        self.cells.after_fork_in_child()
        self._pending.clear()  # their callers are in the parent


def _calls_weakly(method):
    """``method`` called through a weak reference to its object: the C++ core keeps its callback
    in a member the garbage collector cannot see, so a bound method there would keep the core
    and its slots alive forever."""
    ref = weakref.WeakMethod(method)

    def call(*args):
        bound = ref()
        if bound is not None:
            bound(*args)

    return call


class _Hold:
    """``run_lock`` of the C++ core: held, no round runs (tests)."""

    def __init__(self, cells):
        self._cells = cells

    def acquire(self) -> None:
        self._cells.hold_rounds()

    def release(self) -> None:
        self._cells.release_rounds()
