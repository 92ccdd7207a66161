"""What the stream batcher's tests share (tests/test_batcher*.py): the models of every kind, each
stream's reference run alone, the tolerance (see test_batcher.py's docstring) and thread drivers."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pylstm

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
