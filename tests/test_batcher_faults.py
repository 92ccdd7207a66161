"""pylstm.StreamBatcher under faults and load: bad chunks, closing with calls pending, streams
used after close or from several threads, garbage-collected streams, memory over many streams,
fork, engine failures, many event loops. References and tolerance as in test_batcher.py."""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from batcher_helpers import (
    TOL,
    H,
    I,
    _alone,
    _assert_same,
    _chunks,
    _keras_model,
    _serve_async,
    _serve_threads,
    _torch_model,
)

import pylstm


# -- faults ---------------------------------------------------------------------------------
def test_bad_chunks_fail_only_their_call():
    model = _torch_model("GRU")
    rng = np.random.default_rng(7)
    streams = [_chunks(rng, 30, one_step_share=1.0) for _ in range(6)]
    bad = [
        (np.zeros((2, I + 1), np.float32), ValueError),
        (np.zeros((1, 2, I), np.float32), ValueError),
        (np.zeros(I, np.int64), TypeError),
        ("text", TypeError),
    ]
    stop = threading.Event()
    failures = []

    def spoiler(b):
        s = b.open()
        while not stop.is_set():
            for chunk, err in bad:
                try:
                    s.step(chunk)
                except err:
                    pass
                else:  # pragma: no cover
                    failures.append(chunk)

    with pylstm.StreamBatcher(model, max_batch=8) as b:
        t = threading.Thread(target=spoiler, args=(b,))
        t.start()
        got = _serve_threads(b, streams)
        stop.set()
        t.join()
    assert not failures
    for g, c in zip(got, streams):
        _assert_same(g, _alone(model, "torch", c))


def test_close_fails_pending_calls_and_later_use():
    model = _torch_model("LSTM")
    b = pylstm.StreamBatcher(model, max_delay_ms=60_000)  # waits "forever" for a full batch
    streams = [b.open() for _ in range(4)]
    outcomes = []

    def call(s):
        try:
            s.step(np.zeros(I, np.float32))
            outcomes.append("ran")
        except pylstm.BatcherClosed:
            outcomes.append("closed")

    b._core.run_lock.acquire()  # the engine is busy: the three calls below stay pending
    threads = [threading.Thread(target=call, args=(s,)) for s in streams[:3]]
    for t in threads:
        t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    closer = threading.Thread(target=b.close)
    closer.start()
    time.sleep(0.05)
    b._core.run_lock.release()  # (close waits for the round the worker may be starting)
    closer.join()
    assert time.monotonic() - t0 < 5
    for t in threads:
        t.join()
    assert outcomes == ["closed"] * 3
    assert issubclass(pylstm.BatcherClosed, RuntimeError)
    with pytest.raises(pylstm.BatcherClosed):
        streams[3].step(np.zeros(I, np.float32))
    with pytest.raises(pylstm.BatcherClosed):
        b.open()
    b.close()  # idempotent


def test_close_fails_pending_async_calls():
    model = _torch_model("GRU")

    async def main():
        b = pylstm.StreamBatcher(model, max_delay_ms=60_000)
        streams = [b.open() for _ in range(3)]
        b._core.run_lock.acquire()  # the engine is busy
        tasks = [asyncio.ensure_future(s.astep(np.zeros(I))) for s in streams[:2]]
        await asyncio.sleep(0.1)
        closer = asyncio.get_running_loop().run_in_executor(None, b.close)
        await asyncio.sleep(0.05)
        b._core.run_lock.release()
        await closer
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, pylstm.BatcherClosed) for r in results)


def test_stream_after_close_and_concurrent_use():
    model = _torch_model("GRU")
    with pylstm.StreamBatcher(model) as b:
        s, other = b.open(), b.open()
        s.close()
        s.close()
        assert s.closed
        for call in (lambda: s.step(np.zeros(I)), s.reset, lambda: s.state):
            with pytest.raises(RuntimeError, match="closed"):
                call()
        # a second call of one stream while its first is pending
        b._core.run_lock.acquire()  # the engine is busy
        results = []
        t = threading.Thread(target=lambda: results.append(other.step(np.ones(I))))
        t.start()
        time.sleep(0.1)
        with pytest.raises(RuntimeError, match="already running"):
            other.step(np.zeros(I))
        b._core.run_lock.release()
        t.join()
        _assert_same(results[0], _alone(model, "torch", [np.ones(I, np.float32)])[0])


def test_garbage_collected_streams_free_their_slots():
    model = _torch_model("GRU")
    with pylstm.StreamBatcher(model) as b:
        for _ in range(100):
            b.open().step(np.ones(I))  # dropped at once
        gc.collect()
        assert b.num_streams == 0
        keep = [b.open() for _ in range(5)]
        assert b.num_streams == 5
        assert b._core.slot_capacity() <= 16  # slots were reused
        # a reused slot starts from zeros
        y = keep[0].step(np.ones(I))
        _assert_same(y, model(np.ones((1, 1, I), np.float32))[0][0, 0])


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not hasattr(time, "monotonic"), reason="")
def test_opening_and_closing_many_streams_keeps_memory_flat():
    pytest.importorskip("resource")
    model = _torch_model("LSTM")
    x = np.ones(I, np.float32)
    with pylstm.StreamBatcher(model) as b:
        samples = []
        for i in range(10_000):
            s = b.open()
            if i % 3 == 0:
                s.step(x)
            if i % 2 == 0:
                s.close()  # the others are garbage-collected
            if i % 2000 == 1999:
                gc.collect()
                samples.append(_rss_bytes())
        gc.collect()
        assert b.num_streams <= 1
        assert b._core.slot_capacity() <= 16
    growth = samples[-1] - samples[0]
    assert growth < 2 * 2**20, [s // 1024 for s in samples]  # KiB, sampled every 2000 streams


def test_chunks_of_different_lengths_in_one_round():
    model = _torch_model("LSTM", num_layers=2)
    rng = np.random.default_rng(9)
    lengths = [1, 2, 3, 1, 5, 2, 1, 3]
    xs = [rng.normal(size=(n, I)).astype(np.float32) for n in lengths]
    with pylstm.StreamBatcher(model, max_batch=8, max_delay_ms=50) as b:
        got = _serve_threads(b, [[x] for x in xs], jitter_s=0)
        assert b.stats["rounds"] <= 5 + 3  # one engine call per distinct length (and stragglers)
    for g, x in zip(got, xs):
        _assert_same(g, _alone(model, "torch", [x]))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_forked_child_gets_a_working_batcher():
    import os

    model = _torch_model("GRU")
    x = np.ones((3, I), np.float32)
    with pylstm.StreamBatcher(model) as b:
        s, t = b.open(), b.open()
        s.step(x)  # the worker has run in the parent
        want = _alone(model, "torch", [x])[0]
        pid = os.fork()
        if pid == 0:  # child: exit code 0 only if both streams work and agree
            ok = False
            try:
                ok = np.allclose(t.step(x), want, atol=TOL) and s.step(x).shape == (3, H)
            finally:
                os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        _assert_same(t.step(x), want)


def _fail_two_step_chunks(core):
    """Make the engine calls over two-step chunks fail with MemoryError; returns the undo."""
    if hasattr(core, "cells"):  # the C++ core (models that are a network alone)
        core.cells.fail_chunks_of(2)
        return lambda: core.cells.fail_chunks_of(0)
    served = core.served  # the Python core: its served model's run
    real_run = served.run

    def run(payloads, one_step, state):
        if payloads[0].shape[0] == 2:
            raise MemoryError("simulated engine failure")
        return real_run(payloads, one_step, state)

    served.run = run
    return lambda: setattr(served, "run", real_run)


@pytest.mark.parametrize("kind", ["torch", "keras"])
def test_engine_failure_fails_its_group_and_the_worker_goes_on(kind):
    model = _torch_model("GRU") if kind == "torch" else _keras_model()
    with pylstm.StreamBatcher(model, max_delay_ms=50) as b:
        good, bad, spare = b.open(), b.open(), b.open()
        undo = _fail_two_step_chunks(b._core)
        results = {}

        def call(name, s, x):
            try:
                results[name] = s.step(x)
            except MemoryError as exc:
                results[name] = exc

        x1, x2 = np.ones((1, I), np.float32), np.ones((2, I), np.float32)
        threads = [
            threading.Thread(target=call, args=("good", good, x1)),
            threading.Thread(target=call, args=("bad", bad, x2)),
            threading.Thread(target=call, args=("spare", spare, x1)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert isinstance(results["bad"], MemoryError)
        _assert_same(results["good"], _alone(model, kind, [x1])[0])
        undo()
        _assert_same(bad.step(x2), _alone(model, kind, [x2])[0])  # its state did not move


def test_keras_embedding_model_takes_token_ids():
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(1)
    m = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(20, I, mask_zero=True),
            keras.layers.LSTM(H, return_sequences=True),
        ]
    )
    model = pylstm.from_keras(m)
    rng = np.random.default_rng(11)
    streams = [
        [np.int64(rng.integers(0, 20)) if k % 2 else rng.integers(0, 20, size=3) for k in range(6)]
        for _ in range(4)
    ]
    with pylstm.StreamBatcher(model) as b:
        got = _serve_threads(b, streams)
        with pytest.raises(TypeError, match="token ids"):
            b.open().step(np.zeros(3, np.float32))
    for g, chunks in zip(got, streams):
        s = model.stream(1)
        for out, c in zip(g, chunks):
            want = s.step(np.atleast_1d(c)[None])[0]
            _assert_same(out, want[0] if np.ndim(c) == 0 else want)


def test_many_event_loops_and_threads_share_one_batcher():
    model = _torch_model("LSTM", num_layers=2)
    rng = np.random.default_rng(13)
    streams = [_chunks(rng, 10) for _ in range(13)]
    got = {}
    with pylstm.StreamBatcher(model, max_batch=16) as b:

        def loop_thread(first, count):
            outs = asyncio.run(_serve_async(b, streams[first : first + count], seed=first))
            got.update({first + i: o for i, o in enumerate(outs)})

        def blocking_threads(first, count):
            outs = _serve_threads(b, streams[first : first + count], seed=first)
            got.update({first + i: o for i, o in enumerate(outs)})

        workers = [
            threading.Thread(target=loop_thread, args=(0, 5)),
            threading.Thread(target=loop_thread, args=(5, 5)),
            threading.Thread(target=blocking_threads, args=(10, 3)),
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert sorted(got) == list(range(13))
    for i, c in enumerate(streams):
        _assert_same(got[i], _alone(model, "torch", c))
