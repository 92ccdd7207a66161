"""pylstm.from_torch / pylstm.from_arrays against the real torch.nn.LSTM, GRU and RNN.

The reference is the torch module itself (float32, ``torch.no_grad()``), with weights scaled 3x
beyond PyTorch's init so that gates saturate, and fresh inputs from a seeded numpy Generator.

Tolerances (ARCHITECTURE.md: fp32 outputs of unit scale agree within 3e-5 absolute):

* LSTM/GRU/tanh-RNN: 3e-5, scaled by ``max(1, largest |value| in the row)`` (see
  ``helpers.assert_close``). Hidden states of these cells are bounded by 1, so for them this is
  exactly 3e-5 absolute; the LSTM cell state ``c_n`` and projected outputs (``proj_size``) are
  not bounded by 1, and their rounding error grows with their size, hence the row scale.
* relu-RNN: 1e-5 relative to the row's magnitude. relu outputs are unbounded (they grow
  geometrically along the sequence), so an absolute bound is meaningless; rounding differences
  are relative to the size of the sums that produce each value. Measured errors are ~5e-7.

The whole grid runs once per instruction set the engine offers (``PYLSTM_SIMD``), since each ISA
has its own kernels (odd sizes exercise the vector-tail code).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers import assert_close, make_module, random_hx, split_state, torch_forward
from torch_parity_common import (
    ATOL,
    Case,
    check_against_torch,
    reference,
)

import pylstm

# -- the grid ---------------------------------------------------------------------------------


SIZES = [1, 2, 3, 7, 8, 13, 16, 17, 33, 65, 130]


def _random_cases(n: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    cells = ["lstm", "gru", "rnn_tanh", "rnn_relu"]
    cases = []
    for i in range(n):
        cell = cells[i % 4]
        hidden = int(rng.choice(SIZES))
        layers = int(rng.integers(1, 4))
        if hidden >= 65:  # keep the big ones cheap
            layers = min(layers, 2)
        proj = 0
        if cell == "lstm" and hidden > 1 and rng.random() < 0.4:
            proj = int(rng.choice([1, max(1, hidden // 2), hidden - 1]))
        cases.append(
            Case(
                cell=cell,
                input_size=int(rng.choice(SIZES)),
                hidden_size=hidden,
                num_layers=layers,
                bidirectional=bool(rng.random() < 0.5),
                bias=bool(rng.random() < 0.75),
                batch_first=bool(rng.random() < 0.5),
                proj_size=proj,
                steps=int(rng.choice([1, 2, 3, 9, 17, 40])),
                batch=[None, 1, 2, 3, 5, 8, 17][int(rng.integers(0, 7))],
                with_hx=bool(rng.random() < 0.5),
                float64=bool(rng.random() < 0.1),
                seed=i,
            )
        )
    return cases


def _edge_cases() -> list:
    cases = []
    cells = ["lstm", "gru", "rnn_tanh", "rnn_relu"]
    for k, cell in enumerate(cells):
        # every size 1: input_size, hidden_size, batch, T
        cases.append(Case(cell, 1, 1, steps=1, batch=1, seed=1000 + k))
        cases.append(
            Case(
                cell,
                1,
                1,
                num_layers=3,
                bidirectional=True,
                steps=1,
                batch=1,
                with_hx=True,
                seed=1010 + k,
            )
        )
        # unbatched, T=1, with and without hx
        cases.append(Case(cell, 7, 13, steps=1, batch=None, with_hx=True, seed=1020 + k))
        # long sequences (a few: torch itself takes ~0.1-0.5 s each)
        cases.append(
            Case(
                cell,
                13,
                33,
                num_layers=2,
                bidirectional=True,
                steps=1000,
                batch=3,
                with_hx=True,
                seed=1030 + k,
            )
        )
        # float64 input, batch_first, odd sizes
        cases.append(
            Case(
                cell,
                65,
                7,
                num_layers=2,
                batch_first=True,
                steps=9,
                batch=5,
                float64=True,
                seed=1040 + k,
            )
        )
        # a big odd hidden size, all options on
        cases.append(
            Case(
                cell,
                33,
                130,
                num_layers=3,
                bidirectional=True,
                batch_first=True,
                steps=17,
                batch=3,
                with_hx=True,
                seed=1050 + k,
            )
        )
    cases += [
        Case("lstm", 7, 13, proj_size=1, steps=9, batch=3, with_hx=True, seed=1100),
        Case(
            "lstm", 7, 2, proj_size=1, num_layers=3, bidirectional=True, steps=9, batch=2, seed=1101
        ),
        Case("lstm", 1, 65, proj_size=1, num_layers=2, batch=None, with_hx=True, seed=1102),
        Case(
            "lstm",
            13,
            130,
            proj_size=33,
            num_layers=2,
            bidirectional=True,
            steps=17,
            batch=17,
            with_hx=True,
            seed=1103,
        ),
        Case(
            "lstm",
            16,
            64,
            proj_size=16,
            num_layers=2,
            bidirectional=True,
            bias=False,
            steps=1000,
            batch=1,
            seed=1104,
        ),
        Case("gru", 3, 65, num_layers=1, steps=1000, batch=1, bias=False, seed=1105),
    ]
    return cases


CASES = _edge_cases() + _random_cases(220, seed=20240601)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_from_torch_matches_torch(case, isa):
    """from_torch(module)(x, hx) equals module(x, hx): output, h_n and (LSTM) c_n."""
    module, x, hx, out, h_n, c_n = reference(case)
    model = pylstm.from_torch(module)
    assert model.engine.backend.endswith(isa), model.engine.backend
    check_against_torch(model, case, module, x, hx, out, h_n, c_n)


@pytest.mark.parametrize("batch_first", [False, True], ids=["tf", "bf"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_batch_zero_returns_empty_like_torch(cell, batch_first):
    """A batch of 0 sequences gives torch's empty output and state shapes (torch accepts it)."""
    rng = np.random.default_rng(7)
    module = make_module(
        cell, 5, 7, num_layers=2, bidirectional=True, batch_first=batch_first, rng=rng
    )
    x = np.zeros((0, 4, 5) if batch_first else (4, 0, 5), np.float32)
    out, h_n, c_n = torch_forward(module, x)
    got_out, state = pylstm.from_torch(module)(x)
    got_h, got_c = split_state(module, state)
    assert got_out.shape == out.shape  # (4, 0, 14) / (0, 4, 14)
    assert got_h.shape == h_n.shape  # (4, 0, 7)
    if c_n is not None:
        assert got_c.shape == c_n.shape


def test_float64_state_accepted():
    """hx given as float64 arrays (and torch tensors) is accepted and gives torch's result."""
    rng = np.random.default_rng(11)
    module = make_module("lstm", 7, 13, num_layers=2, rng=rng)
    x = rng.normal(size=(9, 3, 7))
    h0, c0 = random_hx(module, 3, rng)
    out, h_n, c_n = torch_forward(module, x.astype(np.float32), (h0, c0))
    model = pylstm.from_torch(module)
    for hx in [
        (h0.astype(np.float64), c0.astype(np.float64)),
        (torch.from_numpy(h0), torch.from_numpy(c0)),
    ]:
        got, (gh, gc) = model(x, hx)
        assert_close(got, out, atol=ATOL, what="output")  # unit-scale LSTM outputs
        assert_close(gh, h_n, atol=ATOL, what="h_n")
        assert_close(gc, c_n, atol=ATOL, scaled=True, what="c_n")  # unbounded cell state


@pytest.mark.parametrize(
    "view",
    ["step-feature-batch", "reversed-time", "reversed-batch", "transposed", "fortran"],
)
def test_strided_input_accepted(view):
    """Non-contiguous inputs (steps along feature and batch axes, negative strides, transposed
    and Fortran-ordered arrays) give the same result as their contiguous copy."""
    rng = np.random.default_rng(12)
    module = make_module("gru", 7, 13, rng=rng)
    big = rng.normal(size=(9, 6, 14)).astype(np.float32)
    x = {
        "step-feature-batch": big[:, ::2, ::2],
        "reversed-time": big[::-1, :, :7],
        "reversed-batch": big[:, ::-1, 7:],
        "transposed": big[..., :7].transpose(1, 0, 2).copy().transpose(1, 0, 2),
        "fortran": np.asfortranarray(big[..., :7]),
    }[view]
    out, h_n, _ = torch_forward(module, np.ascontiguousarray(x))
    got, gh = pylstm.from_torch(module)(x)
    assert_close(got, out, atol=ATOL, what="output")  # unit-scale GRU outputs
    assert_close(gh, h_n, atol=ATOL, what="h_n")


def test_inputs_not_modified_and_outputs_fresh():
    """A call leaves x, h_0 and c_0 untouched, and each call returns new arrays (a second call
    does not overwrite the first call's results)."""
    rng = np.random.default_rng(13)
    module = make_module("lstm", 7, 13, num_layers=2, bidirectional=True, rng=rng)
    model = pylstm.from_torch(module)
    x = rng.normal(size=(6, 3, 7)).astype(np.float32)
    h0, c0 = random_hx(module, 3, rng)
    copies = [a.copy() for a in (x, h0, c0)]
    y1, (h1, c1) = model(x, (h0, c0))
    kept = [a.copy() for a in (y1, h1, c1)]
    model(rng.normal(size=(6, 3, 7)).astype(np.float32), (h0 * 0.5, c0 * 0.5))
    for a, b, name in zip((x, h0, c0), copies, ("x", "h_0", "c_0")):
        np.testing.assert_array_equal(a, b, err_msg=f"{name} was modified")  # exact
    for a, b, name in zip((y1, h1, c1), kept, ("output", "h_n", "c_n")):
        np.testing.assert_array_equal(a, b, err_msg=f"first call's {name} changed")  # exact


@pytest.mark.parametrize("magnitude", [1e6, 1e30], ids=["1e6", "1e30"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_huge_inputs_saturate_without_nan(cell, magnitude, isa):
    """Inputs of size 1e6 and 1e30 drive every gate of the first layer to its limit: the output
    must be finite and equal torch's (the vectorised exp/tanh must not overflow into NaN/inf).
    Tolerance 3e-5 absolute (unit-scale outputs); 1e4-sized inputs are avoided on purpose: there
    a pre-activation can land near 0 as the difference of two 1e4-sized sums, where float32
    rounding (~1e-3) alone gives differences above 3e-5 (conditioning, not a bug)."""
    rng = np.random.default_rng(int(np.log10(magnitude)))
    module = make_module(cell, 7, 33, num_layers=2, bidirectional=True, rng=rng)
    x = (rng.normal(size=(6, 3, 7)) * magnitude).astype(np.float32)
    out, h_n, c_n = torch_forward(module, x)
    got, state = pylstm.from_torch(module)(x)
    got_h, got_c = split_state(module, state)
    assert np.all(np.isfinite(got)), "non-finite outputs"
    assert_close(got, out, atol=ATOL, what="output")
    assert_close(got_h, h_n, atol=ATOL, what="h_n")
    if c_n is not None:
        assert_close(got_c, c_n, atol=ATOL, scaled=True, what="c_n")  # unbounded cell state
