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
import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from batcher_helpers import (
    H,
    I,
    _alone,
    _assert_same,
    _chunks,
    _from_arrays,
    _keras_model,
    _onnx_model,
    _serve_async,
    _serve_threads,
    _torch_model,
)

import pylstm
from pylstm.runtime.stream_state import StreamState

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


def test_a_round_takes_at_most_half_the_open_streams_once_there_are_many():
    """So that the callers turn one half's results around while the other half runs
    (pylstm/runtime/batcher.py, _Core.round_size); few streams still run in one round."""
    model = _from_arrays()
    with pylstm.StreamBatcher(model, max_batch=256) as b:
        streams = [b.open() for _ in range(100)]
        assert b._core.round_size() == 50
        for s in streams[:60]:
            s.close()
        assert b._core.round_size() == 40  # 40 open: below 64, one round for all
    with pylstm.StreamBatcher(model, max_batch=16) as b:
        streams = [b.open() for _ in range(100)]
        assert b._core.round_size() == 16


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
