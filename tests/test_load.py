"""pylstm.load on PyTorch files: results equal the live torch module; options (prefix,
batch_first, nonlinearity); loading in a process where torch cannot be imported."""

import json
import subprocess
import sys

import numpy as np
import pytest
from child_process import child_env

import pylstm

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

ATOL = 3e-5  # fp32, unit-scale outputs: different summation order than torch


def saturating(module, scale=3.0, seed=0):
    """Scale torch's default init up so that gates saturate."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-1, 1, generator=gen).mul_(scale / module.hidden_size**0.5)
    return module.eval()


def torch_out(module, x, batch_first=False):
    with torch.no_grad():
        out, state = module(torch.from_numpy(x))
    states = state if isinstance(state, tuple) else (state,)
    return out.numpy(), [s.numpy() for s in states]


def states_of(result):
    state = result[1]
    return list(state) if isinstance(state, tuple) else [state]


def save(module, path, kind):
    sd = module.state_dict()
    if kind == "zip":
        torch.save(sd, path)
    elif kind == "legacy":
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    else:
        safetensors_torch.save_file({k: v.contiguous() for k, v in sd.items()}, path)


MODULES = {
    "lstm-proj-bi": lambda: torch.nn.LSTM(6, 9, num_layers=2, bidirectional=True, proj_size=4),
    "gru-2": lambda: torch.nn.GRU(5, 11, num_layers=2),
    "rnn-relu-nobias": lambda: torch.nn.RNN(4, 7, nonlinearity="relu", bias=False),
}


@pytest.mark.parametrize("kind", ["zip", "legacy", "safetensors"])
@pytest.mark.parametrize("name", list(MODULES))
def test_load_matches_module(tmp_path, kind, name):
    module = saturating(MODULES[name]())
    path = tmp_path / f"model.{'safetensors' if kind == 'safetensors' else 'pt'}"
    save(module, path, kind)
    options = {"nonlinearity": "relu"} if "relu" in name else {}
    model = pylstm.load(path, **options)
    x = np.random.default_rng(1).normal(size=(13, 3, module.input_size)).astype(np.float32) * 2
    ref_out, ref_states = torch_out(module, x)
    got = model(x)
    # relu RNN outputs are unbounded: compare relative to their magnitude
    tol = ATOL * max(1.0, float(np.abs(ref_out).max()))
    np.testing.assert_allclose(got[0], ref_out, atol=tol, rtol=0)
    for g, r in zip(states_of(got), ref_states):
        np.testing.assert_allclose(g, r, atol=tol, rtol=0)


def test_prefix_batch_first_and_nested_checkpoint(tmp_path):
    enc = saturating(torch.nn.GRU(5, 8, batch_first=True), seed=1)
    dec = saturating(torch.nn.LSTM(8, 6), seed=2)
    state = {f"encoder.rnn.{k}": v for k, v in enc.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in dec.state_dict().items()})
    state["head.weight"] = torch.randn(3, 6)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": state, "epoch": 7}, path)

    with pytest.raises(ValueError, match="several recurrent modules") as err:
        pylstm.load(path)
    assert "model.encoder.rnn." in str(err.value) and "model.decoder." in str(err.value)
    with pytest.raises(ValueError, match=r"no recurrent module with prefix 'nope\.'"):
        pylstm.load(path, prefix="nope.")

    model = pylstm.load(path, prefix="model.encoder.rnn", batch_first=True)  # dot optional
    assert model.batch_first and model.cell == "gru"
    x = np.random.default_rng(2).normal(size=(4, 9, 5)).astype(np.float32)
    ref_out, ref_states = torch_out(enc, x)
    out, h = model(x)
    np.testing.assert_allclose(out, ref_out, atol=ATOL, rtol=0)  # fp32 tolerance
    np.testing.assert_allclose(h, ref_states[0], atol=ATOL, rtol=0)


def test_unknown_option_and_bad_nonlinearity(tmp_path):
    path = tmp_path / "m.pt"
    torch.save(torch.nn.RNN(3, 4).state_dict(), path)
    with pytest.raises(TypeError, match="config"):
        pylstm.load(path, config="x.json")
    with pytest.raises(ValueError, match="nonlinearity"):
        pylstm.load(path, nonlinearity="sigmoid")


def test_state_dict_without_rnn_weights(tmp_path):
    path = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(3, 4).state_dict(), path)
    with pytest.raises(pylstm.FormatError, match="no LSTM/GRU/RNN weights"):
        pylstm.load(path)


def test_wrong_shapes_in_state_dict(tmp_path):
    sd = torch.nn.LSTM(3, 4, num_layers=2).state_dict()
    sd["weight_hh_l1"] = torch.randn(16, 5)
    path = tmp_path / "bad.pt"
    torch.save(sd, path)
    with pytest.raises(pylstm.FormatError, match=r"weight_hh_l1.*\(16, 5\).*\(16, 4\)"):
        pylstm.load(path)


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        pylstm.load("/nonexistent/model.pt")


BLOCKED_IMPORT = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'safetensors', 'tensorflow', 'keras'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import json, numpy as np, pylstm
args = json.loads(sys.argv[1])
model = pylstm.load(args['path'], **args['options'])
x = np.load(args['x'])
out = model(x)
np.save(args['out'], out[0])
assert 'torch' not in sys.modules
"""


@pytest.mark.parametrize("kind", ["zip", "legacy", "safetensors"])
def test_load_with_torch_blocked(tmp_path, kind):
    module = saturating(torch.nn.LSTM(4, 6, num_layers=2, bidirectional=True))
    path = tmp_path / ("m.safetensors" if kind == "safetensors" else "m.pt")
    save(module, path, kind)
    x = np.random.default_rng(3).normal(size=(7, 2, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    args = {
        "path": str(path),
        "options": {},
        "x": str(tmp_path / "x.npy"),
        "out": str(tmp_path / "y.npy"),
    }
    subprocess.run(
        [sys.executable, "-c", BLOCKED_IMPORT, json.dumps(args)],
        check=True,
        env=child_env(),
        cwd=tmp_path,
    )
    ref_out, _ = torch_out(module, x)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ref_out, atol=ATOL, rtol=0)
