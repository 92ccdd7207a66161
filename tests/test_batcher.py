"""pylstm.StreamBatcher: many streams of one model served with cellular batching.

The reference for every stream is the same model's ``model.stream(1)`` fed that stream's chunks
alone. Tolerance: 1e-6 absolute (``TOL``). The batcher runs k streams as one engine call, and the
engine's input projection is a GEMM over T*k rows that may block (and so sum) differently for
different row counts, which can move the last bit of a float32; on the machines measured (AVX-512
and AVX2 paths) the rows come out bit-identical, which ``test_engine_rows_are_bit_identical``
checks where it holds. A wrong or swapped state would show up as errors of order 1e-1.
"""

from __future__ import annotations

import asyncio
import gc
import random
import threading
import time
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pylstm
from pylstm.runtime.stream_state import StreamState

TOL = 1e-6  # batched vs alone: see module docstring
I, H = 6, 12


# -- models and their reference runs ----------------------------------------------------------
def _torch_model(cell, **kw):
    torch.manual_seed(0)
    module = getattr(torch.nn, cell)(I, H, **kw).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(3.0)  # saturating gates
    return pylstm.from_torch(module)


def _from_arrays():
    rng = np.random.default_rng(3)
    d = pylstm.Direction(
        w=rng.normal(size=(4 * H, I)),
        r=rng.normal(size=(4 * H, H)),
        peephole=rng.normal(size=(3, H)),
    )
    return pylstm.from_arrays([pylstm.Layer("lstm", [d], clip=2.0)], batch_first=True)


def _keras_model(return_sequences=True):
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    m = keras.Sequential(
        [
            keras.Input((None, I)),
            keras.layers.LSTM(H, return_sequences=True),
            keras.layers.GRU(H, return_sequences=return_sequences),
            keras.layers.Dense(5, activation="tanh"),
        ]
    )
    return pylstm.from_keras(m)


def _onnx_model(tmp_path, with_state_inputs=False):
    pytest.importorskip("onnx")

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(I, H, num_layers=2, batch_first=True)
            self.head = torch.nn.Linear(H, 4)

        def forward(self, x, *hx):
            y, (h, c) = self.rnn(x, tuple(hx) if hx else None)
            return torch.relu(self.head(y)), h, c

    torch.manual_seed(1)
    module = Head().eval()
    args = (torch.randn(2, 3, I),)
    names, axes = ["x"], {"x": {0: "b", 1: "t"}}
    if with_state_inputs:
        args += (torch.zeros(2, 2, H), torch.zeros(2, 2, H))
        names += ["h0", "c0"]
        axes.update({"h0": {1: "b"}, "c0": {1: "b"}})
    path = str(tmp_path / "m.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, path, dynamo=False, input_names=names,
            output_names=["y", "h", "c"], dynamic_axes=axes, opset_version=14,
        )  # fmt: skip
    return pylstm.load(path)


def _alone(model, kind, chunks):
    """One stream's outputs from ``model.stream(1)`` alone: a list, one entry per chunk, in the
    batcher's form (no batch axis; no time axis for one-step chunks)."""
    s = model.stream(1)
    outs = []
    for c in chunks:
        one = c.ndim == 1
        x = c[None] if one else c
        if kind == "torch":  # time-major [T, 1, I] unless batch_first
            xb = x[None] if model.batch_first else x[:, None]
            y = s.step(xb)
            y = y[0] if model.batch_first else y[:, 0]
            outs.append(y[0] if one else y)
        elif kind in ("keras", "keras_last"):
            y = s.step(x[None])[0]
            outs.append(y[0] if one and kind == "keras" else y)
        else:  # onnx: [y [1, T, 4], h [2, 1, H], c [2, 1, H]]
            y, h, c = s.step({"x": x[None]})
            outs.append([y[0, 0] if one else y[0], h[:, 0], c[:, 0]])
    return outs


def _assert_same(got, want, tol=TOL):
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for g, w in zip(got, want):
            _assert_same(g, w, tol)
        return
    got = np.asarray(got)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)


def _chunks(rng, n, one_step_share=0.5, max_t=4):
    """A stream's chunks: one-step ``[I]`` and ``[T, I]`` with T in 1..max_t."""
    out = []
    for _ in range(n):
        if rng.random() < one_step_share:
            out.append(rng.normal(size=I).astype(np.float32) * 2)
        else:
            out.append(rng.normal(size=(int(rng.integers(1, max_t + 1)), I)).astype(np.float32))
    return out


def _serve_threads(batcher, streams_chunks, *, jitter_s=3e-4, seed=0):
    """Each stream in its own thread, chunks sent at random times; returns outputs per stream."""
    results = [None] * len(streams_chunks)
    errors = []

    def client(i):
        rnd = random.Random(seed + i)
        try:
            with batcher.open() as s:
                outs = []
                for c in streams_chunks[i]:
                    time.sleep(rnd.random() * jitter_s)
                    outs.append(s.step(c))
                results[i] = outs
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(streams_chunks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


async def _serve_async(batcher, streams_chunks, seed=0):
    async def client(i):
        rnd = random.Random(seed + i)
        s = batcher.open()
        outs = []
        for c in streams_chunks[i]:
            await asyncio.sleep(rnd.random() * 3e-4)
            outs.append(await s.astep(c))
        s.close()
        return outs

    return await asyncio.gather(*(client(i) for i in range(len(streams_chunks))))


# -- every model kind, from threads and from asyncio -------------------------------------------
TORCH_CASES = [
    ("LSTM", {"num_layers": 2}),
    ("GRU", {"num_layers": 2}),
    ("RNN", {"num_layers": 3, "nonlinearity": "relu"}),
    ("LSTM", {"num_layers": 2, "proj_size": 5, "batch_first": True}),
]


@pytest.mark.parametrize("cell,kw", TORCH_CASES, ids=[f"{c}-{len(k)}" for c, k in TORCH_CASES])
def test_torch_models_from_threads(cell, kw):
    model = _torch_model(cell, **kw)
    rng = np.random.default_rng(1)
    streams = [_chunks(rng, 12) for _ in range(10)]
    with pylstm.StreamBatcher(model, max_batch=4, max_delay_ms=0.5) as b:
        got = _serve_threads(b, streams)
        assert b.stats["steps"] == sum(len(c) for c in streams)
    for g, c in zip(got, streams):
        _assert_same(g, _alone(model, "torch", c))


def test_pending_chunks_run_as_one_batch():
    model = _torch_model("LSTM", num_layers=2)
    rng = np.random.default_rng(12)
    xs = [rng.normal(size=I).astype(np.float32) for _ in range(8)]
    with pylstm.StreamBatcher(model, max_batch=8) as b:
        streams = [b.open() for _ in range(8)]
        got = [None] * 8
        b._core.run_lock.acquire()  # the engine is busy while the eight chunks arrive
        threads = [
            threading.Thread(target=lambda i=i: got.__setitem__(i, streams[i].step(xs[i])))
            for i in range(8)
        ]
        for t in threads:
            t.start()
        time.sleep(0.2)
        b._core.run_lock.release()
        for t in threads:
            t.join()
        # one round, or two when the worker took the first arrival alone (a lone chunk runs at
        # once) before the others came
        assert b.stats["steps"] == 8 and b.stats["rounds"] <= 2
    for g, x in zip(got, xs):
        _assert_same(g, _alone(model, "torch", [x])[0])


def test_from_arrays_from_asyncio():
    model = _from_arrays()
    rng = np.random.default_rng(2)
    streams = [_chunks(rng, 10) for _ in range(12)]
    with pylstm.StreamBatcher(model, max_batch=8) as b:
        got = asyncio.run(_serve_async(b, streams))
    for g, c in zip(got, streams):
        _assert_same(g, _alone(model, "torch", c))


def test_engine_rows_are_bit_identical():
    """Where the engine gives a row the same bits whatever the batch, so does the batcher."""
    model = _torch_model("LSTM", num_layers=2)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 9, I)).astype(np.float32)
    y9, _ = model(x)
    if not all(np.array_equal(model(x[:, j : j + 1])[0][:, 0], y9[:, j]) for j in range(9)):
        pytest.skip("this engine's rows differ in the last bit across batch sizes here")
    streams = [[x[t, j] for t in range(3)] for j in range(9)]
    with pylstm.StreamBatcher(model, max_batch=9, max_delay_ms=50) as b:
        got = _serve_threads(b, streams, jitter_s=0)
    for j in range(9):
        assert np.array_equal(np.stack(got[j]), y9[:, j])


@pytest.mark.parametrize("return_sequences", [True, False])
def test_keras_model_with_dense(return_sequences):
    model = _keras_model(return_sequences)
    kind = "keras" if return_sequences else "keras_last"
    rng = np.random.default_rng(3)
    streams = [_chunks(rng, 8) for _ in range(6)]
    with pylstm.StreamBatcher(model, max_batch=6) as b:
        got = _serve_threads(b, streams[:3])
        got += asyncio.run(_serve_async(b, streams[3:]))
    for g, c in zip(got, streams):
        _assert_same(g, _alone(model, kind, c))


def test_onnx_export(tmp_path):
    model = _onnx_model(tmp_path)
    rng = np.random.default_rng(4)
    streams = [_chunks(rng, 8) for _ in range(6)]
    with pylstm.StreamBatcher(model, max_batch=6) as b:
        got = _serve_threads(b, streams[:3])
        got += asyncio.run(_serve_async(b, streams[3:]))
        s = b.open()
        y, _h, _c = s.step({"x": streams[0][0]})  # a dict of feeds works too
        assert y.shape[-1] == 4 and _h.shape == (2, H)
        with pytest.raises(ValueError, match="time inputs"):
            s.step({"x": streams[0][0], "nope": streams[0][0]})
    for g, c in zip(got, streams):
        _assert_same(g, _alone(model, "onnx", c))


def test_onnx_state_inputs_are_refused(tmp_path):
    model = _onnx_model(tmp_path, with_state_inputs=True)
    with pytest.raises(ValueError, match="does not vary with time"):
        pylstm.StreamBatcher(model)


def test_bidirectional_is_refused():
    model = pylstm.from_torch(torch.nn.GRU(I, H, bidirectional=True))
    with pytest.raises(ValueError, match="backwards"):
        pylstm.StreamBatcher(model)
    with pytest.raises(TypeError, match="pylstm models"):
        pylstm.StreamBatcher(object())
    with pytest.raises(ValueError, match="max_batch"):
        pylstm.StreamBatcher(_from_arrays(), max_batch=0)


# -- state: reset, initial state, state copies ---------------------------------------------
def test_reset_initial_state_and_state_copy():
    model = _torch_model("LSTM", num_layers=2)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(5, I)).astype(np.float32)
    h0 = rng.normal(size=(2, H)).astype(np.float32)
    c0 = rng.normal(size=(2, H)).astype(np.float32)
    with pylstm.StreamBatcher(model) as b:
        a, other = b.open(), b.open()
        first = a.step(x)
        a.reset()
        _assert_same(a.step(x), first)
        s = b.open(initial_state=(h0, c0))
        y, _ = model(x[:, None], (h0[:, None], c0[:, None]))
        _assert_same(s.step(x), y[:, 0])
        copy = b.open(initial_state=s.state)  # a StreamState of one sequence
        _assert_same(copy.step(x), s.step(x))
        assert isinstance(s.state, StreamState) and s.state.batch_size == 1
        with pytest.raises(ValueError, match="h"):
            b.open(initial_state=(h0[:1], c0))
        with pytest.raises(TypeError, match="tuple"):
            b.open(initial_state=h0)
        other.close()


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
        assert b._core.slots.batch_size <= 16  # slots were reused
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
        assert b._core.slots.batch_size <= 16
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


def test_engine_failure_fails_its_group_and_the_worker_goes_on():
    model = _torch_model("GRU")
    with pylstm.StreamBatcher(model, max_delay_ms=50) as b:
        good, bad, spare = b.open(), b.open(), b.open()
        served = b._core.served
        real_run = served.run

        def run(payloads, one_step, state):
            if payloads[0].shape[0] == 2:  # the group of two-step chunks
                raise MemoryError("simulated engine failure")
            return real_run(payloads, one_step, state)

        served.run = run
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
        _assert_same(results["good"], _alone(model, "torch", [x1])[0])
        served.run = real_run
        _assert_same(bad.step(x2), _alone(model, "torch", [x2])[0])  # its state did not move


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


# -- the stream protocol itself ----------------------------------------------------------------
def _as_list(v):
    return v if isinstance(v, list) else [v]


def _protocol_check(stream, chunks, batch):
    """step_state from open_state equals step, state for state, and leaves the stream alone."""
    state = stream.open_state(batch)
    assert isinstance(state, StreamState) and state.batch_size == batch
    for chunk in chunks:
        before = stream.get_state()
        got, state = stream.step_state(chunk, state)
        for a, b in zip(before.arrays, stream.get_state().arrays):
            assert np.array_equal(a, b)  # step_state did not touch the stream's own state
        want = stream.step(chunk)
        _assert_same(_as_list(got), _as_list(want), 0)
        for a, b in zip(state.arrays, stream.get_state().arrays):
            np.testing.assert_array_equal(a, b)
    # take / put / reset per sequence
    part = state.take([batch - 1])
    assert part.batch_size == 1
    state.reset([0])
    assert all(not a[0].any() for a in state.arrays)
    state.put([0], part)
    for a in state.arrays:
        np.testing.assert_array_equal(a[0], a[batch - 1])
    with pytest.raises(ValueError, match="per-sequence shapes"):
        state.put([0], StreamState(("x",), [np.zeros((1, 3), np.float32)]))


def test_stream_protocol_torch_keras_onnx(tmp_path):
    rng = np.random.default_rng(14)
    torch_model = _torch_model("LSTM", num_layers=2, batch_first=True)
    xs = [rng.normal(size=(3, t, I)).astype(np.float32) for t in (1, 4, 2)]
    _protocol_check(torch_model.stream(3), xs, 3)
    _protocol_check(_torch_model("GRU").stream(3), [x.transpose(1, 0, 2).copy() for x in xs], 3)
    _protocol_check(_keras_model().stream(3), xs, 3)
    onnx_model = _onnx_model(tmp_path)
    _protocol_check(onnx_model.stream(3), [{"x": x} for x in xs], 3)


def test_event_loops_are_not_kept_alive():
    import weakref

    from pylstm.runtime import batcher_results as batcher_module

    model = _torch_model("GRU")
    with pylstm.StreamBatcher(model) as b:
        s, _other = b.open(), b.open()
        loop = asyncio.new_event_loop()
        loop.run_until_complete(s.astep(np.ones(I)))
        loop.close()
        ref = weakref.ref(loop)
        del loop
        gc.collect()
        assert ref() is None
        assert all(k is not None for k in batcher_module._INBOXES)
