"""Memory: the workspace a call uses is bounded by the README's formula (proportional to
B·T·H), and repeated calls, streams and models do not grow the process."""

import os
import sys

import numpy as np
import pytest

import pylstm
from pylstm.runtime import output_buffers

torch = pytest.importorskip("torch")

BLOCK_FLOATS = 1 << 20  # projection block budget (cpp/src/cpu_backend.cpp)
F32 = 4


def workspace_bound(cell, T, B, I, H, layers, D, vl=16):
    """README bound, in bytes: a block of input projections (at most 4 MB, or one step), the
    states (about 6·D·B·H per layer), two intermediate sequences (2·T·B·D·H) for stacks; H
    rounded up to the kernels' chunk (4 vectors) and 64-byte alignment slack per buffer."""
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    Hp = -(-H // (4 * vl)) * 4 * vl
    step_floats = D * B * G * Hp
    xp = max(BLOCK_FLOATS, step_floats)
    states = 6 * D * B * Hp
    inter = 2 * T * B * D * H if layers > 1 else 0
    return F32 * (xp + states + inter + 5 * 16)


@pytest.mark.parametrize(
    "cell,T,B,I,H,layers,bi",
    [
        ("lstm", 100, 1, 256, 256, 1, False),
        ("lstm", 1000, 64, 64, 256, 3, True),
        ("gru", 25, 256, 1024, 1024, 2, False),
        ("rnn", 7, 3, 5, 13, 2, True),
    ],
)
def test_workspace_within_documented_bound(cell, T, B, I, H, layers, bi):
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    model = pylstm.from_torch(cls(I, H, num_layers=layers, bidirectional=bi))
    D = 2 if bi else 1
    got = model.engine._net.workspace_bytes(T, B)
    assert 0 < got <= workspace_bound(cell, T, B, I, H, layers, D)
    # proportional: ten times the steps, at most ten times the workspace
    assert model.engine._net.workspace_bytes(10 * T, B) <= 10 * got


def rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_ten_thousand_calls_do_not_grow_memory():
    torch.manual_seed(0)
    model = pylstm.from_torch(torch.nn.LSTM(16, 32, num_layers=2))
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(5, b, 16)).astype(np.float32) for b in (1, 3, 8)]
    lengths = [np.array([5]), np.array([5, 2, 4]), rng.integers(1, 6, size=8)]
    stream = model.stream(3)

    def calls(n):
        for i in range(n):
            k = i % 3
            model(xs[k], lengths=lengths[k] if i % 2 else None)
            stream.step(xs[1][0])

    calls(500)  # warm up: workspaces, allocator arenas, numpy caches
    before = rss_bytes()
    calls(10_000)
    grown = rss_bytes() - before
    # 10,000 calls: anything per call that leaked even 100 bytes would show as >= 1 MB
    assert grown < 1 << 20, f"RSS grew by {grown} bytes"


@pytest.mark.parametrize("batch_first", [False, True])
def test_outputs_start_on_a_cache_line(batch_first):
    """Threads write the columns of an output row side by side; a row that starts on a cache line
    keeps them off each other's lines (pylstm.runtime.output_buffers.empty_output; outputs under
    SMALL_BYTES excepted). Outputs stay ordinary writeable C-contiguous arrays."""
    module = torch.nn.LSTM(8, 64, batch_first=batch_first)
    model = pylstm.from_torch(module)
    x = np.random.default_rng(0).standard_normal((20, 3, 8), dtype=np.float32)
    if batch_first:
        x = np.ascontiguousarray(x.transpose(1, 0, 2))
    for _ in range(4):  # numpy's own allocations start 16 bytes into a line
        y, _ = model(x)
        assert y.nbytes >= output_buffers.SMALL_BYTES
        assert y.ctypes.data % 64 == 0
        assert y.flags.c_contiguous and y.flags.writeable and y.shape == (*x.shape[:2], 64)
    with torch.no_grad():
        want = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(y, want, rtol=0, atol=3e-6)  # float32 summation order
