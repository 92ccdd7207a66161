"""Harness ``call``: the call path with random shapes, dtypes, layouts, lengths, states and
streams, on models built from torch modules. Bad arguments may raise ``ValueError`` or
``TypeError``; good ones must give what the torch module gives (plain calls, float32 inputs,
3e-5 relative to the output scale, the tolerance of tests/test_torch_parity.py)."""

from __future__ import annotations

import numpy as np

NAME = "call"
SUFFIX = ".bin"

_MODELS = None


class Bytes:
    """Consumes the fuzz input as a stream of small integers (zeros once it runs out)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def int(self, lo: int, hi: int) -> int:
        """An int in ``[lo, hi]``."""
        return lo + (self.byte() | self.byte() << 8) % (hi - lo + 1)

    def pick(self, options):
        return options[self.int(0, len(options) - 1)]


def _models():
    global _MODELS
    if _MODELS is None:
        import torch

        import pylstm

        torch.manual_seed(0)
        mods = [
            torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True),
            torch.nn.GRU(3, 5, batch_first=True),
            torch.nn.RNN(3, 4, nonlinearity="relu"),
            torch.nn.LSTM(3, 6, proj_size=2),
            torch.nn.LSTMCell(3, 4),
            torch.nn.GRUCell(3, 4),
        ]
        _MODELS = [(m.eval(), pylstm.from_torch(m)) for m in mods]
    return _MODELS


def _array(b: Bytes, shape, rng):
    dtype = b.pick([np.float32, np.float32, np.float64, np.float16, np.int32, np.bool_])
    x = (rng.standard_normal(shape) * b.int(1, 4)).astype(dtype)
    special = b.int(0, 15)
    if special == 1 and x.size and x.dtype.kind == "f":
        x.reshape(-1)[0] = np.nan
    elif special == 2 and x.size and x.dtype.kind == "f":
        x.reshape(-1)[-1] = np.inf
    layout = b.int(0, 5)
    if layout == 1 and x.ndim >= 1:  # strided
        x = np.repeat(x, 2, axis=-1)[..., ::2]
    elif layout == 2 and x.ndim >= 2:  # not C-contiguous
        x = np.asfortranarray(x)
    elif layout == 3:
        x = x.tolist()
    return x


def _check_against_torch(torch_mod, x, out):
    import torch

    with torch.no_grad():
        ref = torch_mod(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
    ref_y = ref[0] if isinstance(ref, tuple) else ref
    y = out[0] if isinstance(out, tuple) else out
    ref_y = ref_y.numpy()
    scale = max(1.0, float(np.nanmax(np.abs(ref_y))) if ref_y.size else 1.0)
    np.testing.assert_allclose(y, ref_y, rtol=0, atol=3e-5 * scale)


def test_one_input(data: bytes) -> None:
    """One input: one model, one call or stream with parameters read from ``data``."""
    b = Bytes(data)
    torch_mod, model = _models()[b.int(0, len(_models()) - 1)]
    rng = np.random.default_rng(b.int(0, 1000))
    is_cell = not hasattr(model, "stream")
    T, B = b.int(0, 6), b.int(0, 5)
    features = 3 if b.int(0, 9) else b.pick([0, 2, 4])
    try:
        if is_cell:
            shape = (B, features) if b.int(0, 3) else (features,)
            x = _array(b, shape, rng)
            model(x)
            return
        batch_first = getattr(model, "batch_first", False)
        shape = (B, T, features) if batch_first else (T, B, features)
        if b.int(0, 7) == 0:
            shape = shape[1:]  # unbatched
        x = _array(b, shape, rng)
        mode = b.int(0, 3)
        if mode == 0:
            out = model(x)
            plain = isinstance(x, np.ndarray) and x.dtype == np.float32 and len(shape) == 3
            if plain and features == 3 and np.isfinite(x).all():
                _check_against_torch(torch_mod, x, out)
        elif mode == 1:
            lengths = [b.int(0, T + 1) - (1 if b.int(0, 20) == 0 else 0) for _ in range(B)]
            model(x, lengths=lengths if b.int(0, 1) else np.asarray(lengths))
        elif mode == 2:
            layers = getattr(model, "num_layers", 1) * (
                2 if getattr(model, "bidirectional", False) else 1
            )
            hidden = getattr(model, "proj_size", 0) or getattr(model, "hidden_size", 4)
            h = rng.standard_normal((layers, B + (b.int(0, 9) == 0), hidden)).astype(np.float32)
            c = rng.standard_normal((layers, B, getattr(model, "hidden_size", 4))).astype(
                np.float32
            )
            model(x, (h, c) if getattr(model, "cell", "") == "lstm" else h)
        else:
            stream = model.stream(b.int(0, 4))
            for _ in range(b.int(1, 4)):
                if b.int(0, 5) == 0:
                    stream.reset()
                chunk_shape = (b.int(0, 3), b.int(0, 4), features)
                stream.step(_array(b, chunk_shape, rng))
    except (ValueError, TypeError):
        pass
