"""Shared helpers for the PyTorch-facing tests: random torch modules with saturating weights,
torch reference runs (also with packed-sequence lengths) and tolerance-aware comparisons.

Everything random comes from a seeded ``numpy.random.Generator`` so that every run sees the same
data; weights are PyTorch's default ``uniform(-k, k)`` (``k = 1/sqrt(hidden_size)``) times a scale
of 2-4, which pushes most sigmoid/tanh inputs far enough from 0 that gates saturate.
"""

from __future__ import annotations

import numpy as np
import torch

#: Cell names used throughout the tests -> (torch class name, nonlinearity).
CELLS = {
    "lstm": ("LSTM", None),
    "gru": ("GRU", None),
    "rnn_tanh": ("RNN", "tanh"),
    "rnn_relu": ("RNN", "relu"),
}


def make_module(
    cell: str,
    input_size: int,
    hidden_size: int,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    bias: bool = True,
    batch_first: bool = False,
    proj_size: int = 0,
    scale: float = 3.0,
    rng: np.random.Generator | None = None,
):
    """A ``torch.nn.LSTM``/``GRU``/``RNN`` in eval mode whose parameters are drawn from ``rng``:
    ``uniform(-k, k) * scale`` with ``k = 1/sqrt(hidden_size)`` (PyTorch's init, scaled up so
    gates saturate). ``cell`` is one of :data:`CELLS`."""
    t = torch
    rng = rng if rng is not None else np.random.default_rng(0)
    cls_name, nonlinearity = CELLS[cell]
    kwargs = {
        "num_layers": num_layers,
        "bidirectional": bidirectional,
        "bias": bias,
        "batch_first": batch_first,
    }
    if cell == "lstm" and proj_size:
        kwargs["proj_size"] = proj_size
    if nonlinearity is not None:
        kwargs["nonlinearity"] = nonlinearity
    module = getattr(t.nn, cls_name)(input_size, hidden_size, **kwargs)
    k = 1.0 / np.sqrt(hidden_size)
    with t.no_grad():
        for p in module.parameters():
            values = rng.uniform(-k, k, size=tuple(p.shape)) * scale
            p.copy_(t.from_numpy(values.astype(np.float32)))
    return module.eval()


def state_shapes(module, batch: int | None):
    """Shapes of (h_0, c_0) for ``module``; ``batch=None`` for unbatched input.
    ``c_0`` is None for GRU/RNN."""
    rows = module.num_layers * (2 if module.bidirectional else 1)
    h_size = getattr(module, "proj_size", 0) or module.hidden_size
    lead = (rows,) if batch is None else (rows, batch)
    h_shape = (*lead, h_size)
    c_shape = (*lead, module.hidden_size) if module.mode == "LSTM" else None
    return h_shape, c_shape


def random_hx(module, batch: int | None, rng: np.random.Generator):
    """A random initial state in the form the module takes: ``(h_0, c_0)`` for LSTM, else
    ``h_0``; float32 numpy arrays. ``c_0`` is drawn wider than ``h_0`` (it is unbounded)."""
    h_shape, c_shape = state_shapes(module, batch)
    h0 = rng.uniform(-1, 1, size=h_shape).astype(np.float32)
    if c_shape is None:
        return h0
    return h0, rng.uniform(-2, 2, size=c_shape).astype(np.float32)


def _to_torch_state(hx):
    t = torch
    if hx is None:
        return None
    if isinstance(hx, tuple):
        return tuple(t.from_numpy(np.ascontiguousarray(a, np.float32)) for a in hx)
    return t.from_numpy(np.ascontiguousarray(hx, np.float32))


def split_state(module, state):
    """``(h_n, c_n)`` from what a torch-style call returns as state (``c_n`` None unless LSTM)."""
    if module.mode == "LSTM":
        return state[0], state[1]
    return state, None


def torch_forward(module, x: np.ndarray, hx=None, lengths=None):
    """Run ``module`` on numpy ``x`` (float32) under ``torch.no_grad()``.

    With ``lengths`` the batch goes through ``pack_padded_sequence(enforce_sorted=False)`` ->
    module -> ``pad_packed_sequence(total_length=T)``, PyTorch's own way to run sequences of
    different lengths. Returns numpy ``(output, h_n, c_n)`` (``c_n`` None unless LSTM).
    """
    t = torch
    xt = t.from_numpy(np.ascontiguousarray(x, np.float32))
    h = _to_torch_state(hx)
    with t.no_grad():
        if lengths is None:
            out, state = module(xt, h)
        else:
            T = x.shape[1] if module.batch_first else x.shape[0]
            packed = t.nn.utils.rnn.pack_padded_sequence(
                xt,
                t.as_tensor(np.asarray(lengths, np.int64)),
                batch_first=module.batch_first,
                enforce_sorted=False,
            )
            out_packed, state = module(packed, h)
            out, _ = t.nn.utils.rnn.pad_packed_sequence(
                out_packed, batch_first=module.batch_first, total_length=T
            )
    h_n, c_n = split_state(module, state)
    return out.numpy(), h_n.numpy(), None if c_n is None else c_n.numpy()


def assert_close(actual, expected, *, atol: float, scaled: bool = False, what: str = ""):
    """Assert ``|actual - expected| <= bound`` elementwise, with a message naming the worst element.

    ``bound`` is ``atol``, or with ``scaled=True`` ``atol * max(1, max |expected| over the last
    axis)``: the error of a value is set by the size of the terms summed into it, and those are
    of the size of the largest values in its row, not of the value itself (a relu output close to
    0 can be the difference of two large sums). For rows bounded by 1 (sigmoid/tanh outputs) the
    two bounds coincide.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert np.all(np.isfinite(expected)), f"{what}: the reference itself is not finite"
    if actual.size == 0:
        return
    err = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    bound = np.full(err.shape, float(atol))
    if scaled:
        row = np.abs(expected.astype(np.float64)).max(axis=-1, keepdims=True)
        bound = bound * np.maximum(1.0, row)
    bad = ~(err <= bound)  # NaN in actual counts as bad
    if bad.any():
        where = np.unravel_index(np.argmax(np.where(bad, 1.0, 0.0) + err / bound), err.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {err.size} elements off; worst at {where}: "
            f"got {actual[where]!r}, expected {expected[where]!r} "
            f"(|diff| {err[where]:.3g} > bound {bound[where]:.3g})"
        )
