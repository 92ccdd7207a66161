"""The stream batcher's C++ core (pylstm/runtime/batcher_engine.py, cpp/src/cell_batcher.hpp),
which serves models that are a recurrent network alone: which models it serves, rounds that run
while Python holds the GIL, chunks of zero steps, states read and written through it, a batcher
closed while asyncio calls wait; and when a chunk waits for others (both cores). References and
tolerance as in test_batcher.py."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
import weakref

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from batcher_helpers import (
    H,
    I,
    _alone,
    _assert_same,
    _from_arrays,
    _keras_model,
    _serve_threads,
    _torch_model,
)

import pylstm
from pylstm.runtime.batcher_engine import EngineRounds
from pylstm.runtime.batcher_rounds import PythonRounds


def test_networks_alone_get_the_cpp_core_and_keras_the_python_one():
    with pylstm.StreamBatcher(_torch_model("GRU")) as b:
        assert isinstance(b._core, EngineRounds)
    with pylstm.StreamBatcher(_from_arrays()) as b:
        assert isinstance(b._core, EngineRounds)
    with pylstm.StreamBatcher(_keras_model()) as b:
        assert isinstance(b._core, PythonRounds)


def test_rounds_run_while_a_python_thread_holds_the_gil():
    """Blocking callers wait without the GIL and the worker never takes it for them: a round
    completes while the main thread runs Python without letting go of the GIL."""
    model = _torch_model("LSTM", num_layers=2)
    xs = [np.full(I, 0.1 * i, np.float32) for i in range(8)]
    got = [None] * 8
    with pylstm.StreamBatcher(model, max_batch=8, max_delay_ms=0) as b:
        streams = [b.open() for _ in range(8)]
        b._core.run_lock.acquire()  # the calls below queue
        threads = [
            threading.Thread(target=lambda i=i: got.__setitem__(i, streams[i].step(xs[i])))
            for i in range(8)
        ]
        for t in threads:
            t.start()
        time.sleep(0.3)  # all eight queue (they wait in C++, without the GIL)
        assert b._core.cells.steps == 0
        interval = sys.getswitchinterval()
        sys.setswitchinterval(100.0)  # this thread keeps the GIL unless it blocks
        try:
            b._core.run_lock.release()
            spin_until = time.monotonic() + 5
            while b._core.cells.steps < 8 and time.monotonic() < spin_until:
                pass  # pure Python: the GIL stays here
            ran_without_gil = b._core.cells.steps
        finally:
            sys.setswitchinterval(interval)
        for t in threads:
            t.join()
    assert ran_without_gil == 8
    for g, x in zip(got, xs):
        _assert_same(g, _alone(model, "torch", [x])[0])


def test_chunks_of_zero_steps_return_empty_outputs():
    model = _torch_model("GRU")
    with pylstm.StreamBatcher(model) as b:
        s = b.open()
        assert s.step(np.zeros((0, I), np.float32)).shape == (0, H)

        async def main():
            return await s.astep(np.zeros((0, I), np.float32))

        assert asyncio.run(main()).shape == (0, H)
        x = np.ones((2, I), np.float32)
        _assert_same(s.step(x), _alone(model, "torch", [x])[0])  # the state did not move


def test_state_and_initial_state_round_trip_through_the_cpp_slots():
    model = _torch_model("LSTM", num_layers=2)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, I)).astype(np.float32)
    with pylstm.StreamBatcher(model) as b:
        a = b.open()
        a.step(x)
        state = a.state
        assert state.names == ("h", "c") and state.arrays[0].shape == (1, 2, H)
        twin = b.open(initial_state=state)
        y = rng.normal(size=(3, I)).astype(np.float32)
        np.testing.assert_array_equal(twin.step(y), a.step(y))  # same state, same bits
        a.reset()
        _assert_same(a.step(y), _alone(model, "torch", [y])[0])


def test_close_fails_waiting_asyncio_calls_of_the_cpp_core():
    model = _torch_model("GRU")
    b = pylstm.StreamBatcher(model, max_batch=4)
    streams = [b.open() for _ in range(3)]

    async def main():
        b._core.run_lock.acquire()  # the engine is busy: the calls stay pending
        tasks = [asyncio.ensure_future(s.astep(np.ones(I, np.float32))) for s in streams]
        await asyncio.sleep(0.05)
        closer = threading.Thread(target=b.close)
        closer.start()
        await asyncio.sleep(0.05)
        b._core.run_lock.release()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        closer.join()
        return results

    results = asyncio.run(main())
    assert all(isinstance(r, pylstm.BatcherClosed) for r in results), results
    with pytest.raises(pylstm.BatcherClosed):
        streams[0].step(np.ones(I, np.float32))


def test_a_dropped_batcher_frees_its_core():
    b = pylstm.StreamBatcher(_torch_model("GRU"))
    s = b.open()
    s.step(np.ones(I, np.float32))
    core = weakref.ref(b._core)
    del b, s
    gc.collect()
    assert core() is None  # the worker stopped and the slots went with the core


def _step_from_threads(b, streams, x, stagger_s):
    """Each stream steps ``x`` once from its own thread, the threads started ``stagger_s`` apart;
    returns (outputs, seconds until the last returned)."""
    got = [None] * len(streams)
    threads = [
        threading.Thread(target=lambda i=i: got.__setitem__(i, streams[i].step(x)))
        for i in range(len(streams))
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
        time.sleep(stagger_s)
    for t in threads:
        t.join()
    return got, time.monotonic() - t0


def _pretend_engine_busy(core, busy: bool) -> None:
    if isinstance(core, EngineRounds):
        core.cells.pretend_engine_busy(busy)
    else:  # the Python rounds: freeze their EngineLoad
        core.load.note = lambda start: None
        core.load.busy_until = float("inf") if busy else 0.0


@pytest.mark.parametrize("kind", ["torch", "keras"])
def test_an_idle_engine_runs_a_chunk_at_once_a_busy_one_fills_rounds(kind):
    """max_delay_ms is spent only while the engine is busy (it ran at least half of the last
    20 ms): then waiting saves engine time; with the engine mostly idle it would only add
    latency (cpp/src/cell_batcher.hpp, engine_busy; batcher_rounds.EngineLoad)."""
    model = _torch_model("GRU") if kind == "torch" else _keras_model()
    x = np.ones(I, np.float32)
    with pylstm.StreamBatcher(model, max_batch=8, max_delay_ms=2000) as b:
        streams = [b.open() for _ in range(4)]
        _pretend_engine_busy(b._core, False)
        got, seconds = _step_from_threads(b, streams, x, 0.05)
        assert seconds < 1.5  # nobody waited the 2 s for the other streams
        assert b.stats["rounds"] == 4  # one chunk at a time, as they came
        _pretend_engine_busy(b._core, True)
        got_busy, _ = _step_from_threads(b, streams[:3], x, 0.05)
        # the first chunk waited (up to 2 s) for the others: one round for the three, or two
        # when the worker took the first before the others came
        assert b.stats["rounds"] - 4 <= 2 and b.stats["steps"] == 7
    first, second = _alone(model, kind, [x, x])
    for g in got:
        _assert_same(g, first)
    for g in got_busy:
        _assert_same(g, second)  # each of these streams' second step


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_and_cells_through_the_cpp_core(precision):
    """The C++ rounds call the backend's own step, whatever its weights' precision; a cell
    module streams one step per call."""
    torch.manual_seed(2)
    module = torch.nn.LSTM(I, H, num_layers=2).eval()
    cell = torch.nn.GRUCell(I, H).eval()
    rng = np.random.default_rng(6)
    for model in (pylstm.from_torch(module, precision=precision), pylstm.from_torch(cell)):
        streams = [[rng.normal(size=I).astype(np.float32) for _ in range(6)] for _ in range(5)]
        with pylstm.StreamBatcher(model, max_batch=4) as b:
            assert isinstance(b._core, EngineRounds)
            got = _serve_threads(b, streams)
        for g, chunks in zip(got, streams):
            _assert_same(g, _alone(model, "torch", chunks))
