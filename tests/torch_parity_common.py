"""What the PyTorch parity tests share (tests/test_torch_parity*.py): the ISA fixture, the
tolerances (see test_torch_parity.py's docstring), the Case of one module configuration and its
torch reference."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers import assert_close, make_module, random_hx, split_state, torch_forward

import pylstm

ISAS = list(pylstm._core.supported_isas())

ATOL = 3e-5  # unit-scale fp32 outputs, ARCHITECTURE.md
RELU_RTOL = 1e-5  # relu RNN: relative to the row's magnitude (unbounded outputs)


def tolerance(cell: str) -> float:
    return RELU_RTOL if cell == "rnn_relu" else ATOL


@dataclass(frozen=True)
class Case:
    """One module configuration and one input. ``batch=None`` means unbatched 2-D input."""

    cell: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    bias: bool = True
    batch_first: bool = False
    proj_size: int = 0
    steps: int = 5
    batch: int | None = 2
    with_hx: bool = False
    float64: bool = False
    seed: int = 0

    @property
    def scale(self) -> float:
        # relu RNNs explode geometrically with scaled-up weights; keep them finite over long
        # sequences (gates do not saturate in a relu RNN anyway).
        if self.cell == "rnn_relu":
            return 2.0 if self.steps <= 40 else 1.0
        return 3.0

    @property
    def id(self) -> str:
        parts = [
            self.cell,
            f"I{self.input_size}",
            f"H{self.hidden_size}",
            f"L{self.num_layers}",
            "bi" if self.bidirectional else "uni",
            "bias" if self.bias else "nobias",
            "bf" if self.batch_first else "tf",
            f"T{self.steps}",
            "unbatched" if self.batch is None else f"B{self.batch}",
        ]
        if self.proj_size:
            parts.append(f"P{self.proj_size}")
        if self.with_hx:
            parts.append("hx")
        if self.float64:
            parts.append("f64")
        return "-".join(parts) + f"-s{self.seed}"


@functools.cache
def reference(case: Case):
    """(module, x, hx, torch output, h_n, c_n) for a case; computed once, shared by all ISAs."""
    rng = np.random.default_rng(case.seed)
    module = make_module(
        case.cell,
        case.input_size,
        case.hidden_size,
        num_layers=case.num_layers,
        bidirectional=case.bidirectional,
        bias=case.bias,
        batch_first=case.batch_first,
        proj_size=case.proj_size,
        scale=case.scale,
        rng=rng,
    )
    if case.batch is None:
        shape = (case.steps, case.input_size)
    elif case.batch_first:
        shape = (case.batch, case.steps, case.input_size)
    else:
        shape = (case.steps, case.batch, case.input_size)
    x = rng.normal(size=shape) * 1.5
    x = x if case.float64 else x.astype(np.float32)
    hx = random_hx(module, case.batch, rng) if case.with_hx else None
    out, h_n, c_n = torch_forward(module, x.astype(np.float32), hx)
    return module, x, hx, out, h_n, c_n


def check_against_torch(model, case: Case, module, x, hx, out, h_n, c_n, lengths=None):
    """Run ``model`` like the module and compare output, h_n and c_n with torch's."""
    got_out, state = model(x, hx, lengths=lengths) if lengths is not None else model(x, hx)
    got_h, got_c = split_state(module, state)
    tol = tolerance(case.cell)
    # bounds: see the module docstring (3e-5 absolute on unit-scale rows, scaled by the row's
    # magnitude for relu outputs, projections and the LSTM cell state)
    assert isinstance(got_out, np.ndarray) and got_out.dtype == np.float32
    assert_close(got_out, out, atol=tol, scaled=True, what="output")
    assert_close(got_h, h_n, atol=tol, scaled=True, what="h_n")
    if c_n is not None:
        assert got_c.dtype == np.float32
        assert_close(got_c, c_n, atol=tol, scaled=True, what="c_n")
    else:
        assert not isinstance(state, tuple), "GRU/RNN must return h_n alone, not a tuple"
