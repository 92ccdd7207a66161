"""Every kernel path the batch size selects, against torch, on every instruction set.

The recurrent product takes different paths by batch rows: several weight panels per call for
1-3 rows, column passes for up to twice a tile, full tiles beyond, remainders in between; the
hidden size decides partial vectors. Each output is a sequential sum over k whatever the path,
so a sequence must also give bit-identical results alone and inside any batch."""

import numpy as np
import pytest

import pylstm

torch = pytest.importorskip("torch")

BATCHES = [1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 17, 24, 25, 48, 49, 64]


def module_for(cell, hidden):
    torch.manual_seed(hidden)
    kw = {"proj_size": 11} if cell == "lstm-proj" else {}
    cls = {
        "lstm": torch.nn.LSTM,
        "lstm-proj": torch.nn.LSTM,
        "gru": torch.nn.GRU,
        "rnn": torch.nn.RNN,
    }[cell]
    module = cls(9, hidden, **kw).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(3.0)  # saturate the gates
    return module


@pytest.mark.parametrize("cell", ["lstm", "lstm-proj", "gru", "rnn"])
@pytest.mark.parametrize("hidden", [33, 96])
def test_every_batch_path_matches_torch_and_is_batch_invariant(isa, cell, hidden):
    module = module_for(cell, hidden)
    model = pylstm.from_torch(module)
    rng = np.random.default_rng(hidden)
    x = rng.normal(size=(6, max(BATCHES), 9)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x))[0].numpy()
    full = model(x)[0]
    np.testing.assert_allclose(full, ref, atol=3e-5, rtol=0)  # fp32 vs torch
    for b in BATCHES:
        part = model(x[:, :b])[0]
        # the same sequences in a smaller batch: bit for bit the same outputs
        np.testing.assert_array_equal(part, full[:, :b])
