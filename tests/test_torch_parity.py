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

import functools
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from child_process import child_env

torch = pytest.importorskip("torch")

from helpers import assert_close, make_module, random_hx, split_state, torch_forward

import pylstm

ISAS = list(pylstm._core.supported_isas())

ATOL = 3e-5  # unit-scale fp32 outputs, ARCHITECTURE.md
RELU_RTOL = 1e-5  # relu RNN: relative to the row's magnitude (unbounded outputs)


@pytest.fixture(params=ISAS)
def isa(request, monkeypatch):
    """Build models for one instruction set (the engine reads PYLSTM_SIMD at build time)."""
    monkeypatch.setenv("PYLSTM_SIMD", request.param)
    return request.param


def tolerance(cell: str) -> float:
    return RELU_RTOL if cell == "rnn_relu" else ATOL


# -- the grid ---------------------------------------------------------------------------------


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


# -- lengths (packed sequences) ---------------------------------------------------------------


@dataclass(frozen=True)
class LengthsCase:
    cell: str
    input_size: int
    hidden_size: int
    lengths: tuple
    steps: int
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    proj_size: int = 0
    bias: bool = True
    with_hx: bool = False
    seed: int = 0

    @property
    def scale(self) -> float:
        return 2.0 if self.cell == "rnn_relu" else 3.0

    @property
    def id(self) -> str:
        return (
            f"{self.cell}-I{self.input_size}-H{self.hidden_size}-L{self.num_layers}-"
            f"{'bi' if self.bidirectional else 'uni'}-{'bf' if self.batch_first else 'tf'}-"
            f"T{self.steps}-len{'_'.join(map(str, self.lengths))}"
            f"{f'-P{self.proj_size}' if self.proj_size else ''}{'-hx' if self.with_hx else ''}"
        )


def _lengths_cases() -> list:
    cases = []
    rng = np.random.default_rng(99)
    seed = 0
    for cell in ["lstm", "gru", "rnn_tanh", "rnn_relu"]:
        for bidirectional in (False, True):
            for batch_first in (False, True):
                seed += 1
                T = 11
                cases.append(
                    LengthsCase(
                        cell,
                        7,
                        13,
                        lengths=tuple(int(v) for v in rng.permutation(np.arange(1, 6)) * 2),
                        steps=T,
                        num_layers=2,
                        bidirectional=bidirectional,
                        batch_first=batch_first,
                        with_hx=seed % 2 == 0,
                        seed=seed,
                    )
                )
        seed += 1
        # all lengths equal to T, and all lengths 1
        cases.append(
            LengthsCase(
                cell,
                5,
                33,
                lengths=(9, 9, 9),
                steps=9,
                num_layers=2,
                bidirectional=True,
                with_hx=True,
                seed=seed,
            )
        )
        seed += 1
        cases.append(
            LengthsCase(
                cell,
                5,
                33,
                lengths=(1, 1, 1, 1),
                steps=6,
                num_layers=3,
                bidirectional=True,
                batch_first=True,
                seed=seed,
            )
        )
        seed += 1
        # batch 1, mixed 1 and T, odd sizes
        cases.append(
            LengthsCase(
                cell,
                13,
                65,
                lengths=(1, 17, 4, 17, 16, 2, 9),
                steps=17,
                bidirectional=True,
                bias=False,
                with_hx=True,
                seed=seed,
            )
        )
    seed += 1
    cases += [
        LengthsCase(
            "lstm",
            7,
            13,
            lengths=(3, 8, 1, 5, 7),
            steps=8,
            num_layers=2,
            bidirectional=True,
            proj_size=5,
            with_hx=True,
            seed=seed,
        ),
        LengthsCase(
            "lstm",
            3,
            16,
            lengths=(2, 40, 17),
            steps=40,
            num_layers=3,
            bidirectional=True,
            batch_first=True,
            proj_size=1,
            with_hx=True,
            seed=seed + 1,
        ),
        LengthsCase(
            "lstm",
            3,
            7,
            lengths=(6,),
            steps=6,
            num_layers=2,
            bidirectional=True,
            proj_size=3,
            seed=seed + 2,
        ),
        LengthsCase(
            "gru",
            3,
            7,
            lengths=(4,),
            steps=6,
            num_layers=2,
            bidirectional=True,
            with_hx=True,
            seed=seed + 3,
        ),
    ]
    return cases


LENGTHS_CASES = _lengths_cases()


@pytest.mark.parametrize("case", LENGTHS_CASES, ids=[c.id for c in LENGTHS_CASES])
def test_lengths_match_packed_sequence(case, isa):
    """model(x, hx, lengths=...) equals pack_padded_sequence(enforce_sorted=False) -> module ->
    pad_packed_sequence(total_length=T): zeros past each length, h_n/c_n at each sequence's last
    valid step, the reverse direction starting at the last valid element."""
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
    B = len(case.lengths)
    shape = (
        (B, case.steps, case.input_size) if case.batch_first else (case.steps, B, case.input_size)
    )
    x = (rng.normal(size=shape) * 1.5).astype(np.float32)
    hx = random_hx(module, B, rng) if case.with_hx else None
    lengths = np.array(case.lengths, np.int64)
    out, h_n, c_n = torch_forward(module, x, hx, lengths=lengths)
    model = pylstm.from_torch(module)
    check_against_torch(model, case, module, x, hx, out, h_n, c_n, lengths=lengths)
    # explicitly: exact zeros past each length (torch pads with 0.0)
    got_out = model(x, hx, lengths=lengths)[0]
    time_major = got_out.transpose(1, 0, 2) if case.batch_first else got_out
    for b, n in enumerate(case.lengths):
        assert not np.any(time_major[n:, b]), f"sequence {b}: output past length {n} is not 0"


@pytest.mark.parametrize("as_type", ["list", "tuple", "int32", "torch"])
def test_lengths_accepts_int_sequences(as_type):
    """lengths may be a list, tuple, int32 array or a torch int64 tensor (all equivalent)."""
    rng = np.random.default_rng(5)
    module = make_module("gru", 4, 9, rng=rng)
    x = rng.normal(size=(6, 3, 4)).astype(np.float32)
    base = [6, 2, 4]
    lengths = {
        "list": base,
        "tuple": tuple(base),
        "int32": np.array(base, np.int32),
        "torch": torch.tensor(base),
    }[as_type]
    out, h_n, _ = torch_forward(module, x, lengths=base)
    got, gh = pylstm.from_torch(module)(x, lengths=lengths)
    assert_close(got, out, atol=ATOL, what="output")  # unit-scale GRU outputs
    assert_close(gh, h_n, atol=ATOL, what="h_n")


# -- from_arrays ------------------------------------------------------------------------------


def _layers_from_module(module, gate_order: str | None = None):
    """Canonical pylstm Layers built by hand from a torch module's parameters, with the gate
    blocks permuted to ``gate_order`` (numpy only) when given."""
    cell = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn", "RNN_RELU": "rnn"}[module.mode]
    canonical = {"lstm": "ifgo", "gru": "rzn", "rnn": "h"}[cell]
    # letters of gate_order mapped to canonical letters (c == g for LSTM, h == n for GRU)
    alias = {"c": "g", "h": "n", "u": "z"} if cell != "rnn" else {}

    def permute(a):
        a = a.detach().numpy()
        if gate_order is None:
            return a
        blocks = np.split(a, len(canonical), axis=0)
        return np.concatenate(
            [blocks[canonical.index(alias.get(ch, ch))] for ch in gate_order], axis=0
        )

    acts = {"RNN_RELU": ("relu",), "RNN_TANH": ("tanh",)}.get(module.mode)
    layers = []
    sd = dict(module.named_parameters())
    for k in range(module.num_layers):
        dirs = []
        for reverse in (False, True) if module.bidirectional else (False,):
            sfx = f"_l{k}" + ("_reverse" if reverse else "")
            dirs.append(
                pylstm.Direction(
                    w=permute(sd["weight_ih" + sfx]),
                    r=permute(sd["weight_hh" + sfx]),
                    bias_w=permute(sd["bias_ih" + sfx]) if module.bias else None,
                    bias_r=permute(sd["bias_hh" + sfx]) if module.bias else None,
                    proj=sd["weight_hr" + sfx].detach().numpy()
                    if ("weight_hr" + sfx) in sd
                    else None,
                    activations=acts,
                    reverse=reverse,
                )
            )
        layers.append(pylstm.Layer(cell, dirs, gate_order=gate_order))
    return layers


FROM_ARRAYS = [
    # (cell, kwargs for make_module, gate_order)
    ("lstm", {"num_layers": 2, "bidirectional": True}, None),
    ("lstm", {"num_layers": 2, "proj_size": 5, "bidirectional": True}, None),
    ("lstm", {"num_layers": 2, "bidirectional": True, "proj_size": 3}, "iofc"),
    ("lstm", {"bias": False, "batch_first": True}, "cfio"),
    ("gru", {"num_layers": 2, "bidirectional": True}, None),
    ("gru", {"num_layers": 2}, "zrh"),
    ("rnn_tanh", {"num_layers": 3, "bidirectional": True}, None),
    ("rnn_relu", {"num_layers": 2, "bias": False}, None),
]


@pytest.mark.parametrize(
    "cell,kwargs,gate_order",
    FROM_ARRAYS,
    ids=[f"{c}-{'-'.join(f'{k}{v}' for k, v in kw.items())}-{g}" for c, kw, g in FROM_ARRAYS],
)
def test_from_arrays_matches_torch(cell, kwargs, gate_order, isa):
    """from_arrays(Layers built from the module's weights) equals the torch module, also when
    the weights are handed over in another gate order (gate_order=...)."""
    rng = np.random.default_rng(31)
    module = make_module(cell, 7, 13, scale=2.0 if cell == "rnn_relu" else 3.0, rng=rng, **kwargs)
    B, T = 3, 10
    shape = (B, T, 7) if module.batch_first else (T, B, 7)
    x = (rng.normal(size=shape) * 1.5).astype(np.float32)
    hx = random_hx(module, B, rng)
    out, h_n, c_n = torch_forward(module, x, hx)
    model = pylstm.from_arrays(
        _layers_from_module(module, gate_order), batch_first=module.batch_first
    )
    got, state = model(x, hx)
    got_h, got_c = split_state(module, state)
    tol = tolerance(cell)  # see module docstring
    assert_close(got, out, atol=tol, scaled=True, what="output")
    assert_close(got_h, h_n, atol=tol, scaled=True, what="h_n")
    if c_n is not None:
        assert_close(got_c, c_n, atol=tol, scaled=True, what="c_n")


# -- thread count does not change results -----------------------------------------------------
#
# These run pylstm in a child process: changing the thread count of the process-wide pool has
# crashed the interpreter (segfault), and a crash must show up as a failing test, not end the
# whole test session. The child needs no torch: it rebuilds the model from the module's state
# dict with the same converter from_torch uses.

CHILD = r"""
import sys
import numpy as np
import pylstm
from pylstm.convert.torch import layers_from_state_dict

data = np.load(sys.argv[1])
threads = [int(v) for v in sys.argv[3].split(",")]
state = {k[len("w:"):]: data[k] for k in data.files if k.startswith("w:")}
layers = layers_from_state_dict(state, nonlinearity=str(data["nonlinearity"]))
x = data["x"]
hx = None
if "h0" in data.files:
    hx = (data["h0"], data["c0"]) if "c0" in data.files else data["h0"]
lengths = data["lengths"] if "lengths" in data.files else None
results = {}
for k, n in enumerate(threads):
    pylstm.set_num_threads(n)
    assert pylstm.get_num_threads() == n, pylstm.get_num_threads()
    model = pylstm.from_arrays(layers, batch_first=bool(data["batch_first"]))
    y, st = model(x, hx, lengths=lengths)
    h, c = st if isinstance(st, tuple) else (st, None)
    results[f"y{k}"] = y
    results[f"h{k}"] = h
    if c is not None:
        results[f"c{k}"] = c
np.savez(sys.argv[2], **results)
"""


def run_in_child(tmp_path, module, x, hx, threads, *, lengths=None, env=None):
    """Run the model (rebuilt from ``module``'s weights) in a fresh Python process once per entry
    of ``threads`` (``set_num_threads`` before each build+call); returns a list of
    ``(output, h_n, c_n)``. Fails the test if the child dies."""
    arrays = {f"w:{k}": v.detach().numpy() for k, v in module.state_dict().items()}
    arrays["x"] = x
    arrays["batch_first"] = np.array(module.batch_first)
    arrays["nonlinearity"] = np.array("relu" if module.mode == "RNN_RELU" else "tanh")
    if hx is not None:
        if isinstance(hx, tuple):
            arrays["h0"], arrays["c0"] = hx
        else:
            arrays["h0"] = hx
    if lengths is not None:
        arrays["lengths"] = np.asarray(lengths, np.int64)
    inp, out = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(inp, **arrays)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(inp), str(out), ",".join(map(str, threads))],
        # eager teams: every thread count runs as a team even on these small inputs
        env=child_env({"PYLSTM_TEAM_POLICY": "eager", **(env or {})}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, (
        f"child running thread counts {threads} exited with {proc.returncode} "
        f"(negative: killed by that signal, -11 = segfault):\n{proc.stderr[-3000:]}"
    )
    res = np.load(out)
    return [
        (res[f"y{k}"], res[f"h{k}"], res[f"c{k}"] if f"c{k}" in res.files else None)
        for k in range(len(threads))
    ]


def assert_bitwise_equal(results, labels):
    """All (output, h_n, c_n) triples identical to the first, bit for bit (tolerance 0)."""
    first = results[0]
    for label, res in zip(labels[1:], results[1:]):
        for a, b, name in zip(res, first, ("output", "h_n", "c_n")):
            if b is None:
                continue
            np.testing.assert_array_equal(a, b, err_msg=f"{name}: {label} vs {labels[0]}")


THREAD_CASES = [
    Case(
        "lstm",
        33,
        130,
        num_layers=2,
        bidirectional=True,
        steps=20,
        batch=17,
        with_hx=True,
        seed=501,
    ),
    Case("lstm", 7, 65, proj_size=33, num_layers=2, steps=20, batch=1, seed=502),
    Case("gru", 13, 130, num_layers=2, bidirectional=True, steps=20, batch=5, seed=503),
    Case("rnn_tanh", 13, 257, num_layers=2, steps=20, batch=3, seed=504),
    Case("rnn_relu", 13, 65, num_layers=2, steps=20, batch=33, seed=505),
]


@pytest.mark.parametrize("case", THREAD_CASES, ids=[c.id for c in THREAD_CASES])
def test_thread_count_does_not_change_results(case, isa, tmp_path):
    """A model built and run with 1 thread and with 2 threads (``set_num_threads``) gives
    bitwise-identical output, h_n and c_n (the engine splits work so that each value's
    arithmetic does not depend on the thread count), and the result matches torch."""
    module, x, hx, out, _h_n, _c_n = reference(case)
    results = run_in_child(tmp_path, module, x, hx, [1, 2])
    assert_bitwise_equal(results, ["1 thread", "2 threads"])  # tolerance 0
    # see the module docstring for the bound
    assert_close(results[1][0], out, atol=tolerance(case.cell), scaled=True, what="output")


def test_thread_count_bitwise_with_lengths(tmp_path):
    """Bitwise identity across thread counts also with lengths (masked steps)."""
    rng = np.random.default_rng(77)
    module = make_module("lstm", 9, 130, num_layers=2, bidirectional=True, rng=rng)
    x = rng.normal(size=(15, 6, 9)).astype(np.float32)
    lengths = [15, 3, 9, 1, 14, 7]
    results = run_in_child(tmp_path, module, x, None, [1, 2], lengths=lengths)
    assert_bitwise_equal(results, ["1 thread", "2 threads"])  # tolerance 0


def test_changing_thread_count_repeatedly(tmp_path):
    """set_num_threads up and down between calls (2, 1, 2, 3, 1, 3) in one process neither
    crashes nor changes the results (bitwise)."""
    rng = np.random.default_rng(78)
    module = make_module("lstm", 33, 130, num_layers=2, rng=rng)
    x = rng.normal(size=(20, 17, 33)).astype(np.float32)
    counts = [2, 1, 2, 3, 1, 3]
    results = run_in_child(tmp_path, module, x, None, counts)
    assert_bitwise_equal(results, [f"{n} threads (call {k})" for k, n in enumerate(counts)])
