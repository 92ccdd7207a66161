"""pylstm.from_torch with ``lengths`` (packed sequences) and pylstm.from_arrays against the real
torch modules; tolerances as in test_torch_parity.py's docstring."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers import assert_close, make_module, random_hx, split_state, torch_forward
from torch_parity_common import (
    ATOL,
    check_against_torch,
    tolerance,
)

import pylstm

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
