"""model.stream(batch_size): feeding a sequence chunk by chunk with the state carried over.

The reference is one call of the same model on the whole sequence (and, once, the torch module).
Tolerance between streamed and whole-sequence results: 1e-6 absolute (scaled by the row's
magnitude for unbounded values, see ``helpers.assert_close``). The recurrence is the same
arithmetic either way, but the engine computes the input projection of a chunk as one GEMM over
its t*B rows, and a GEMM may block (and so sum) differently for different row counts, which can
move the last bit or two of a float32; 1e-6 allows that and nothing more (a wrong carried state
would show up as errors of order 1e-1).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers import assert_close, make_module, split_state, torch_forward

import pylstm

STREAM_TOL = 1e-6  # streamed vs whole call: see module docstring
TORCH_TOL = 3e-5  # vs torch, fp32 unit-scale outputs (ARCHITECTURE.md)

MODELS = [
    # (cell, make_module kwargs)
    ("lstm", {}),
    ("lstm", {"num_layers": 3}),
    ("lstm", {"num_layers": 2, "proj_size": 5}),
    ("lstm", {"num_layers": 2, "proj_size": 1, "batch_first": True}),
    ("lstm", {"bias": False, "batch_first": True}),
    ("gru", {}),
    ("gru", {"num_layers": 2, "batch_first": True}),
    ("rnn_tanh", {"num_layers": 2}),
    ("rnn_relu", {"num_layers": 2, "batch_first": True}),
]
MODEL_IDS = [f"{c}-" + "-".join(f"{k}{v}" for k, v in kw.items()) for c, kw in MODELS]

# chunk-size patterns, repeated until the sequence is used up
CHUNKINGS = {
    "steps1": [1],
    "uneven": [1, 3, 7, 2, 5],
    "halves": [20],
    "whole": [40],
}


def build(cell, kwargs, seed=0, input_size=7, hidden_size=13):
    rng = np.random.default_rng(seed)
    module = make_module(
        cell, input_size, hidden_size, rng=rng, scale=2.0 if cell == "rnn_relu" else 3.0, **kwargs
    )
    return module, pylstm.from_torch(module), rng


def random_input(module, rng, batch, steps):
    shape = (
        (batch, steps, module.input_size)
        if module.batch_first
        else (steps, batch, module.input_size)
    )
    return (rng.normal(size=shape) * 1.5).astype(np.float32)


def time_slice(x, module, start, stop):
    return x[:, start:stop] if module.batch_first else x[start:stop]


def chunks_of(total, pattern):
    """(start, stop) ranges covering [0, total) with sizes cycling through ``pattern``."""
    start, k = 0, 0
    while start < total:
        stop = min(total, start + pattern[k % len(pattern)])
        yield start, stop
        start, k = stop, k + 1


def run_stream(stream, module, x, pattern, two_d_single_steps=False):
    """Feed ``x`` through ``stream`` in chunks; returns the outputs concatenated along time.
    With ``two_d_single_steps`` one-step chunks are passed as 2-D ``[B, I]`` arrays."""
    steps = x.shape[1] if module.batch_first else x.shape[0]
    time_axis = 1 if module.batch_first else 0
    outs = []
    for start, stop in chunks_of(steps, pattern):
        chunk = time_slice(x, module, start, stop)
        if two_d_single_steps and stop - start == 1:
            chunk = chunk[:, 0] if module.batch_first else chunk[0]
            y = stream.step(chunk)
            assert y.ndim == 2, f"a [B, I] step must return [B, O], got shape {y.shape}"
            y = np.expand_dims(y, time_axis)
        else:
            y = stream.step(chunk)
        assert y.dtype == np.float32
        outs.append(y)
    return np.concatenate(outs, axis=time_axis)


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("cell,kwargs", MODELS, ids=MODEL_IDS)
def test_chunks_concatenate_to_whole_call(cell, kwargs, chunking):
    """Chunks of various sizes, concatenated, equal one call on the whole sequence; the carried
    ``state`` equals the whole call's h_n (and c_n)."""
    module, model, rng = build(cell, kwargs, seed=len(chunking))
    B, T = 3, 40
    x = random_input(module, rng, B, T)
    y_full, state_full = model(x)
    stream = model.stream(B)
    y = run_stream(stream, module, x, CHUNKINGS[chunking])
    assert_close(y, y_full, atol=STREAM_TOL, scaled=True, what="streamed output")
    h_full, c_full = split_state(module, state_full)
    h, c = split_state(module, stream.state)
    assert_close(h, h_full, atol=STREAM_TOL, scaled=True, what="stream.state h")
    if c_full is not None:
        assert_close(c, c_full, atol=STREAM_TOL, scaled=True, what="stream.state c")
    else:
        assert not isinstance(stream.state, tuple), "GRU/RNN state must be one array"


@pytest.mark.parametrize("cell,kwargs", MODELS, ids=MODEL_IDS)
def test_single_steps_as_2d_chunks(cell, kwargs):
    """Stepping one time step at a time with 2-D ``[B, I]`` chunks returns ``[B, O]`` per step,
    and the steps stacked equal the whole call and the torch module."""
    module, model, rng = build(cell, kwargs, seed=5, input_size=13, hidden_size=33)
    B, T = 2, 25
    x = random_input(module, rng, B, T)
    stream = model.stream(B)
    y = run_stream(stream, module, x, [1], two_d_single_steps=True)
    y_full, _ = model(x)
    assert_close(y, y_full, atol=STREAM_TOL, scaled=True, what="streamed output")
    out, h_n, c_n = torch_forward(module, x)
    # vs torch: 3e-5 on unit-scale rows, scaled for relu/projection rows (helpers.assert_close)
    assert_close(
        y,
        out,
        atol=TORCH_TOL if cell != "rnn_relu" else 1e-5,
        scaled=True,
        what="streamed output vs torch",
    )
    h, c = split_state(module, stream.state)
    assert_close(h, h_n, atol=TORCH_TOL, scaled=True, what="state h vs torch")
    if c_n is not None:
        assert_close(c, c_n, atol=TORCH_TOL, scaled=True, what="state c vs torch")


def test_batch_one_single_steps():
    """batch_size=1, input_size=1, hidden_size=1: the smallest stream still matches."""
    module, model, rng = build("lstm", {"num_layers": 2}, seed=9, input_size=1, hidden_size=1)
    x = random_input(module, rng, 1, 12)
    stream = model.stream(1)
    y = run_stream(stream, module, x, [1], two_d_single_steps=True)
    assert_close(y, model(x)[0], atol=STREAM_TOL, what="output")  # unit-scale LSTM outputs


def test_float64_chunks_accepted():
    """float64 chunks are accepted (converted to float32) like in a full call."""
    _module, model, rng = build("gru", {"num_layers": 2}, seed=10)
    x = rng.normal(size=(8, 2, 7)) * 1.5
    stream = model.stream(2)
    y = np.concatenate([stream.step(x[:3]), stream.step(x[3:])])
    assert_close(y, model(x)[0], atol=STREAM_TOL, what="output")  # unit-scale GRU outputs


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_reset_restarts_from_zeros(cell):
    """After ``reset()`` the stream behaves like a fresh one: state is zeros and the next chunks
    give the whole-call result of the new sequence alone."""
    module, model, rng = build(cell, {"num_layers": 2}, seed=11)
    B = 4
    first = random_input(module, rng, B, 9)
    second = random_input(module, rng, B, 9)
    stream = model.stream(B)
    stream.step(first)
    h, _ = split_state(module, stream.state)
    assert np.abs(h).max() > 0.1  # the state really moved away from zeros
    stream.reset()
    h, c = split_state(module, stream.state)
    assert not np.any(h), "state h after reset() must be zeros"
    if c is not None:
        assert not np.any(c), "state c after reset() must be zeros"
    y = np.concatenate([stream.step(second[:4]), stream.step(second[4:])])
    assert_close(y, model(second)[0], atol=STREAM_TOL, what="output after reset")  # unit scale


def test_state_starts_at_zero_with_torch_shapes():
    """A new stream's state is zeros with the shapes torch uses for h_n and c_n."""
    _module, model, _ = build("lstm", {"num_layers": 3, "proj_size": 4}, seed=12)
    h, c = model.stream(5).state
    assert h.shape == (3, 5, 4) and c.shape == (3, 5, 13)
    assert not np.any(h) and not np.any(c)


def test_state_is_a_copy():
    """Modifying the returned ``state`` arrays does not change the stream."""
    module, model, rng = build("gru", {}, seed=13)
    x = random_input(module, rng, 2, 10)
    stream = model.stream(2)
    stream.step(x[:5])
    stream.state[...] = 123.0
    y = np.concatenate([np.zeros((5, 2, 13), np.float32), stream.step(x[5:])])
    assert_close(y[5:], model(x)[0][5:], atol=STREAM_TOL, what="output")  # unit-scale GRU


def test_two_streams_are_independent():
    """Two streams of one model keep separate states (interleaved steps)."""
    module, model, rng = build("lstm", {"num_layers": 2}, seed=14)
    xa = random_input(module, rng, 2, 6)
    xb = random_input(module, rng, 3, 6)
    sa, sb = model.stream(2), model.stream(3)
    ya, yb = [], []
    for t in range(6):
        ya.append(sa.step(xa[t]))
        yb.append(sb.step(xb[t]))
    assert_close(np.stack(ya), model(xa)[0], atol=STREAM_TOL, what="stream a")  # unit scale
    assert_close(np.stack(yb), model(xb)[0], atol=STREAM_TOL, what="stream b")


@pytest.mark.parametrize("wrong", [1, 2, 5])
@pytest.mark.parametrize("batch_first", [False, True])
def test_wrong_batch_size_raises(wrong, batch_first):
    """A chunk with another number of sequences than the stream's batch_size is a ValueError
    naming batch_size; 3-D and 2-D chunks alike. The state is left untouched."""
    module, model, rng = build("lstm", {"batch_first": batch_first}, seed=15)
    stream = model.stream(3)
    stream.step(random_input(module, rng, 3, 2))
    before = stream.state
    with pytest.raises(ValueError, match="batch_size"):
        stream.step(random_input(module, rng, wrong, 2))
    with pytest.raises(ValueError, match="batch_size"):
        stream.step(rng.normal(size=(wrong, 7)).astype(np.float32))
    after = stream.state
    np.testing.assert_array_equal(after[0], before[0])  # exact: nothing ran
    np.testing.assert_array_equal(after[1], before[1])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_bidirectional_cannot_stream(cell):
    """Bidirectional models need the whole sequence: ``.stream()`` is a ValueError saying so."""
    _, model, _ = build(cell, {"num_layers": 2, "bidirectional": True}, seed=16)
    with pytest.raises(ValueError, match="bidirectional"):
        model.stream(2)


@pytest.mark.parametrize(
    "bad,exc",
    [(0, ValueError), (-3, ValueError), (1.5, TypeError), ("2", TypeError), (True, TypeError)],
)
def test_bad_batch_size(bad, exc):
    """stream(batch_size) needs a positive int."""
    _, model, _ = build("gru", {}, seed=17)
    with pytest.raises(exc, match="batch_size"):
        model.stream(bad)


@pytest.mark.parametrize("batch_first", [False, True])
def test_chunk_with_wrong_feature_size_names_chunk(batch_first):
    """A chunk with the wrong number of input features is a ValueError that names ``chunk`` and
    says what was expected (7 features) and what came (its shape)."""
    _module, model, _rng = build("lstm", {"batch_first": batch_first}, seed=18)
    stream = model.stream(2)
    bad3d = np.zeros((2, 3, 5) if batch_first else (3, 2, 5), np.float32)  # B=2, t=3, I=5
    with pytest.raises(ValueError, match=r"(?s)chunk.*7"):
        stream.step(bad3d)
    with pytest.raises(ValueError, match=r"(?s)chunk.*7"):
        stream.step(np.zeros((2, 5), np.float32))


def test_chunk_wrong_ndim_and_dtype():
    """1-D / 4-D chunks are ValueErrors naming the chunk; integer chunks are TypeErrors."""
    _, model, _ = build("gru", {}, seed=19)
    stream = model.stream(2)
    with pytest.raises(ValueError, match="chunk"):
        stream.step(np.zeros(7, np.float32))
    with pytest.raises(ValueError, match="chunk"):
        stream.step(np.zeros((1, 1, 2, 7), np.float32))
    with pytest.raises(TypeError, match="chunk"):
        stream.step(np.zeros((2, 7), np.int64))


def test_empty_chunk_is_harmless_or_clear():
    """A chunk of zero time steps either returns an empty ``[0, B, O]`` output and leaves the
    state unchanged, or raises a ValueError about the chunk's length; it must not raise an
    unrelated internal error (e.g. about strides)."""
    module, model, rng = build("lstm", {}, seed=20)
    stream = model.stream(2)
    stream.step(random_input(module, rng, 2, 3))
    before = stream.state
    try:
        y = stream.step(np.zeros((0, 2, 7), np.float32))
    except ValueError as exc:
        msg = str(exc)
        assert "chunk" in msg and ("0" in msg or "empty" in msg), msg
        assert "contiguous" not in msg, f"misleading message for an empty chunk: {msg}"
    else:
        assert y.shape == (0, 2, 13)
        np.testing.assert_array_equal(stream.state[0], before[0])  # exact: nothing ran
