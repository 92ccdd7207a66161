"""Reduced-precision weights (``precision="bf16"`` / ``"int8"``): outputs stay close to the
fp32 engine and to torch, on every instruction set and every cell path (LSTM with projection,
both GRU reset placements, RNN), and the bounds documented in the README hold."""

import numpy as np
import pytest

import pylstm

torch = pytest.importorskip("torch")

# Worst absolute error against torch fp32 allowed for unit-scale outputs, with torch's default
# init (|w| <= 1/sqrt(H)), as documented in the README: bf16 keeps 8 significant bits of each
# weight (relative error <= 2^-9), int8 about 7 bits of each row's largest weight.
MAX_ABS_ERROR = {"bf16": 1e-2, "int8": 3e-2}
MEAN_ABS_ERROR = {"bf16": 1.5e-3, "int8": 4e-3}


def torch_module(cell, I, H, **kw):
    torch.manual_seed(7)
    return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](
        I, H, **kw
    ).eval()


CASES = [
    ("lstm", 33, 64, {}),
    ("lstm", 20, 130, {"proj_size": 17, "num_layers": 2}),
    ("gru", 64, 100, {"bidirectional": True}),
    ("rnn", 16, 70, {"num_layers": 2}),
    ("lstm", 256, 256, {}),
]


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("cell,I,H,kw", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_reduced_precision_close_to_torch(isa, precision, cell, I, H, kw):
    module = torch_module(cell, I, H, **kw)
    x = np.random.default_rng(0).normal(size=(30, 5, I)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x))[0].numpy()
    out = pylstm.from_torch(module, precision=precision)(x)[0]
    err = np.abs(out - ref)
    assert err.max() < MAX_ABS_ERROR[precision], err.max()
    assert err.mean() < MEAN_ABS_ERROR[precision], err.mean()
    # and clearly not fp32 (the weights really are stored narrower)
    assert err.max() > 1e-6


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_gru_reset_before_product(precision):
    """The two-phase GRU path (reset applied before the recurrent product) in reduced precision
    against the same canonical layer in fp32."""
    rng = np.random.default_rng(1)
    H, I = 40, 12
    k = 1 / np.sqrt(H)
    d = pylstm.Direction(
        w=rng.uniform(-k, k, (3 * H, I)),
        r=rng.uniform(-k, k, (3 * H, H)),
        bias_w=rng.uniform(-k, k, 3 * H),
        bias_r=rng.uniform(-k, k, 3 * H),
    )
    layer = pylstm.Layer("gru", [d], linear_before_reset=False)
    x = rng.normal(size=(20, 3, I))
    ref = pylstm.from_arrays([layer])(x)[0]
    out = pylstm.from_arrays([layer], precision=precision)(x)[0]
    assert 1e-7 < np.abs(out - ref).max() < MAX_ABS_ERROR[precision]


def test_unknown_precision():
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, int8"):
        pylstm.from_torch(torch.nn.LSTM(3, 4), precision="fp16")
    with pytest.raises(TypeError, match="precision must be a string"):
        pylstm.from_torch(torch.nn.LSTM(3, 4), precision=16)
