"""PyTorch cells: ``from_torch(torch.nn.LSTMCell/GRUCell/RNNCell)`` and ``load`` of their state
dicts, against the real cells (float32, ``torch.no_grad()``), with weights 3x PyTorch's init so
that gates saturate and fresh seeded inputs.

Tolerances: fp32 3e-5 absolute for h (bounded by 1; relu cells relative to the row, as in
test_torch_parity), the LSTM cell state c scaled by max(1, its row's largest value)
(``helpers.assert_close(scaled=True)``)."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from helpers import assert_close

import pylstm

torch = pytest.importorskip("torch")

ATOL = 3e-5

CELLS = {
    "lstm": lambda I, H, bias: torch.nn.LSTMCell(I, H, bias=bias),
    "gru": lambda I, H, bias: torch.nn.GRUCell(I, H, bias=bias),
    "rnn_tanh": lambda I, H, bias: torch.nn.RNNCell(I, H, bias=bias),
    "rnn_relu": lambda I, H, bias: torch.nn.RNNCell(I, H, bias=bias, nonlinearity="relu"),
}


def make_cell(kind, I=7, H=11, *, bias=True, seed=0):
    cell = CELLS[kind](I, H, bias)
    rng = np.random.default_rng(seed)
    k = (1.0 if kind == "rnn_relu" else 3.0) / np.sqrt(H)
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(torch.from_numpy(rng.uniform(-k, k, size=tuple(p.shape)).astype(np.float32)))
    return cell.eval()


def torch_step(cell, x, hx=None):
    """The cell on numpy inputs: numpy (h, c) or h."""
    with torch.no_grad():
        t = torch.from_numpy
        state = None if hx is None else (tuple(map(t, hx)) if isinstance(hx, tuple) else t(hx))
        out = cell(t(x), state)
    return tuple(o.numpy() for o in out) if isinstance(out, tuple) else out.numpy()


def check(kind, out, ref, what):
    scaled = kind == "rnn_relu"  # relu outputs are unbounded: relative to the row
    if kind == "lstm":
        assert isinstance(out, tuple) and len(out) == 2, what
        assert_close(out[0], ref[0], atol=ATOL, what=what + " h")  # h bounded by 1
        assert_close(out[1], ref[1], atol=ATOL, scaled=True, what=what + " c")  # c unbounded
    else:
        assert isinstance(out, np.ndarray), what
        assert_close(out, ref, atol=1e-5 if scaled else ATOL, scaled=scaled, what=what)


def random_hx(kind, shape, rng):
    h = rng.uniform(-1, 1, size=shape).astype(np.float32)
    return (h, rng.uniform(-2, 2, size=shape).astype(np.float32)) if kind == "lstm" else h


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_call_matches_torch(kind, bias):
    cell = make_cell(kind, bias=bias)
    model = pylstm.from_torch(cell)
    assert isinstance(model, pylstm.CellModel)
    assert (model.input_size, model.hidden_size, model.bias) == (7, 11, bias)
    rng = np.random.default_rng(1)
    for B in (1, 5, 33):
        x = (rng.normal(size=(B, 7)) * 2).astype(np.float32)
        check(kind, model(x), torch_step(cell, x), f"B={B} no hx")
        hx = random_hx(kind, (B, 11), rng)
        check(kind, model(x, hx), torch_step(cell, x, hx), f"B={B} hx")
    # unbatched [I] (and [H] states), as torch's cells take it
    x = rng.normal(size=7).astype(np.float32)
    out = model(x)
    check(kind, out, torch_step(cell, x), "unbatched")
    hx = random_hx(kind, (11,), rng)
    check(kind, model(x, hx), torch_step(cell, x, hx), "unbatched hx")
    # torch tensors and float64 in
    xt = torch.from_numpy(x).double()
    check(kind, model(xt), torch_step(cell, x), "float64 tensor")


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_stepping_a_sequence_by_calls_and_by_stream(kind):
    """20 steps: the cell's state fed back by hand (torch and pylstm), and a stream that steps
    one [B, I] at a time, then [t, B, I] chunks."""
    cell = make_cell(kind, seed=3)
    model = pylstm.from_torch(cell)
    rng = np.random.default_rng(4)
    B, T = 6, 20
    xs = (rng.normal(size=(T, B, 7)) * 2).astype(np.float32)
    ref_state, state, refs = None, None, []
    for t in range(T):
        ref_state = torch_step(cell, xs[t], ref_state)
        state = model(xs[t], state)
        check(kind, state, ref_state, f"call step {t}")
        refs.append(ref_state[0] if kind == "lstm" else ref_state)
    refs = np.stack(refs)  # [T, B, H]: h after each step

    stream = model.stream(B)
    ys = [stream.step(xs[t]) for t in range(8)]  # one step [B, I] -> [B, H]
    assert ys[0].shape == (B, 11)
    ys.append(stream.step(xs[8:13]))  # chunks [t, B, I] -> [t, B, H]
    ys.append(stream.step(xs[13:]))
    y = np.concatenate([np.stack(ys[:8]), ys[8], ys[9]])
    assert_close(y, refs, atol=ATOL, what="stream")  # h bounded by 1
    final = stream.state  # the cell's own state shape: [B, H]
    check(kind, final, ref_state, "stream.state")
    stream.reset()
    first = torch_step(cell, xs[0])
    first_h = first[0] if kind == "lstm" else first
    assert_close(stream.step(xs[0]), first_h, atol=ATOL, what="after reset")  # h bounded by 1


@pytest.mark.parametrize("kind", list(CELLS))
def test_load_a_cells_state_dict(tmp_path, kind):
    cell = make_cell(kind, seed=5)
    path = tmp_path / "cell.pt"
    torch.save(cell.state_dict(), path)
    options = {"nonlinearity": "relu"} if kind == "rnn_relu" else {}
    model = pylstm.load(path, **options)
    assert isinstance(model, pylstm.CellModel)
    rng = np.random.default_rng(6)
    x = (rng.normal(size=(4, 7)) * 2).astype(np.float32)
    hx = random_hx(kind, (4, 11), rng)
    check(kind, model(x, hx), torch_step(cell, x, hx), "loaded")


class EncoderDecoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.LSTM(7, 11)
        self.decoder = torch.nn.Module()
        self.decoder.cell = torch.nn.LSTMCell(7, 11)
        self.head = torch.nn.Linear(11, 3)


def test_load_picks_a_cell_by_prefix(tmp_path):
    net = EncoderDecoder()
    net.decoder.cell = make_cell("lstm", seed=7)
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    with pytest.raises(ValueError, match=r"'decoder\.cell\.', 'encoder\.'"):
        pylstm.load(path)
    model = pylstm.load(path, prefix="decoder.cell")  # the trailing dot may be omitted
    assert isinstance(model, pylstm.CellModel)
    x = np.random.default_rng(8).normal(size=(3, 7)).astype(np.float32)
    check("lstm", model(x), torch_step(net.decoder.cell, x), "decoder.cell")
    assert isinstance(pylstm.load(path, prefix="encoder."), pylstm.TorchModel)
    with pytest.raises(ValueError, match="no recurrent module or cell with prefix 'nope'"):
        pylstm.load(path, prefix="nope")
    with pytest.raises(ValueError, match="batch_first does not apply"):
        pylstm.load(path, prefix="decoder.cell.", batch_first=True)


def test_safetensors_cell(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    cell = make_cell("gru", seed=9)
    path = tmp_path / "cell.safetensors"
    safetensors.save_file({k: v.contiguous() for k, v in cell.state_dict().items()}, path)
    model = pylstm.load(path)
    x = np.random.default_rng(10).normal(size=(2, 7)).astype(np.float32)
    check("gru", model(x), torch_step(cell, x), "safetensors")


def test_cell_pickles_with_its_stream():
    cell = make_cell("lstm", seed=11)
    model = pylstm.from_torch(cell)
    x = np.random.default_rng(12).normal(size=(5, 3, 7)).astype(np.float32)
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert isinstance(clone, pylstm.CellModel)
        a, b = model(x[0]), clone(x[0])
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])  # bit-identical
    stream = model.stream(3)
    stream.step(x[:2])
    moved = pickle.loads(pickle.dumps(stream))
    assert np.array_equal(moved.step(x[2:]), stream.step(x[2:]))


def test_a_batcher_serves_a_cell():
    cell = make_cell("gru", seed=13)
    model = pylstm.from_torch(cell)
    x = np.random.default_rng(14).normal(size=(4, 7)).astype(np.float32)
    alone = model.stream(1)
    expected = [alone.step(x[t][None])[0] for t in range(4)]
    with pylstm.StreamBatcher(model, max_delay_ms=0) as batcher:
        s = batcher.open()
        got = [s.step(x[t]) for t in range(4)]
    for a, b in zip(got, expected):
        assert_close(a, b, atol=0, what="batcher")  # the same engine: identical


def test_nan_in_a_cell_propagates_as_in_torch():
    cell = make_cell("lstm", seed=15)
    x = np.random.default_rng(16).normal(size=(3, 7)).astype(np.float32)
    x[1, 2] = np.nan
    x[2, 0] = np.inf
    h, c = pylstm.from_torch(cell)(x)
    h_ref, c_ref = torch_step(cell, x)
    assert np.array_equal(np.isnan(h), np.isnan(h_ref)) and np.isnan(h[1]).all()
    assert np.array_equal(np.isnan(c), np.isnan(c_ref))
    keep = [0, 2]
    assert_close(h[keep], h_ref[keep], atol=ATOL, what="finite rows")  # h bounded by 1
    assert_close(c[keep], c_ref[keep], atol=ATOL, scaled=True, what="finite rows c")


def test_cell_errors():
    model = pylstm.from_torch(make_cell("lstm"))
    gru = pylstm.from_torch(make_cell("gru"))
    x = np.zeros((2, 7), np.float32)
    with pytest.raises(ValueError, match=r"1-D \[I\] or 2-D \[B, I\]"):
        model(np.zeros((1, 2, 7), np.float32))
    with pytest.raises(ValueError, match="expected 7 features"):
        model(np.zeros((2, 6), np.float32))
    with pytest.raises(ValueError, match=r"h: expected shape \(2, 11\)"):
        model(x, (np.zeros((3, 11)), np.zeros((2, 11))))
    with pytest.raises(ValueError, match=r"expected shape \(11,\)"):
        model(x[0], (np.zeros((1, 11)), np.zeros((1, 11))))
    with pytest.raises(TypeError, match="tuple"):
        model(x, np.zeros((2, 11)))
    with pytest.raises(TypeError, match="not a tuple"):
        gru(x, (np.zeros((2, 11)),))
    with pytest.raises(TypeError, match="float"):
        gru(np.zeros((2, 7), np.int64))
    with pytest.raises(pylstm.UnsupportedError, match="LSTMCell"):
        pylstm.from_torch(torch.nn.Linear(3, 4))
