"""The stream protocol (pylstm/runtime/stream_state.py): open a state for B sequences, step a
chunk, read / replace / reset the carried state per sequence; the same checks on every kind of
model (``test_protocol_conformance``: torch LSTM and GRU modules, a cell, a Keras model, an ONNX
model, a CUDA engine in the host emulation when it is built), and pylstm.Stream's details.

Exact equality wherever the same computation runs on the same batch (step vs step_state, a
stream vs its unpickled copy, the rows a call must leave alone). A row of a batch of B compared
with a stream of one sequence: ``ROW_TOL`` (1e-6, scaled by the magnitude of the reference),
since a chunk's input projection (and a Keras Dense) is one GEMM over all its rows, which may
block, and so sum, differently for another row count; a wrong or swapped state shows up as
errors of order 1e-1.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import pylstm
from pylstm.runtime.stream_state import StreamState

ROW_TOL = 1e-6  # a row of a batch vs a stream of one: see the module docstring


def make_model(cell, rng, *, H=5, I=3, layers=2, cellmodel=False):
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]

    def direction(inp):
        return pylstm.Direction(
            w=rng.normal(size=(G * H, inp)),
            r=rng.normal(size=(G * H, H)),
            bias_w=rng.normal(size=G * H),
            bias_r=rng.normal(size=G * H),
        )

    if cellmodel:
        import pylstm.assemble as assemble
        from pylstm.convert.torch import TorchConverted

        layer = pylstm.Layer(cell, [direction(I)])
        return assemble.torch_face(TorchConverted((layer.canonical,), is_cell=True))
    stack = [pylstm.Layer(cell, [direction(I if k == 0 else H)]) for k in range(layers)]
    return pylstm.from_arrays(stack)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("cellmodel", [False, True])
def test_rows_of_the_state_are_read_replaced_and_reset(cell, cellmodel):
    rng = np.random.default_rng(0)
    model = make_model(cell, rng, cellmodel=cellmodel)
    B = 3
    stream = model.stream(B)
    x = rng.normal(size=(4, B, 3)).astype(np.float32)
    stream.step(x)
    full = stream.get_state()
    assert isinstance(full, StreamState) and full.batch_size == B
    assert full.names == (("h", "c") if cell == "lstm" else ("h",))
    # get_state(rows) is the rows of the whole state
    part = stream.get_state([2, 0])
    for a, b in zip(part.arrays, full.arrays):
        np.testing.assert_array_equal(a, b[[2, 0]])
    # reset one row: only that row is zero
    stream.reset([1])
    after = stream.get_state()
    for a, b in zip(after.arrays, full.arrays):
        assert not np.any(a[1])
        np.testing.assert_array_equal(a[[0, 2]], b[[0, 2]])
    # replace one row with another's state: the next step of the two rows is the same
    stream.set_state(stream.get_state([0]), rows=[1])
    same = x[:2].copy()
    same[:, 1] = same[:, 0]  # the same input for rows 0 and 1
    y = stream.step(same)
    np.testing.assert_array_equal(y[:, 1], y[:, 0])
    # replace the whole state: back where we were; step equals step_state from that state
    stream.set_state(full)
    y_state, new = stream.step_state(x, full)
    np.testing.assert_array_equal(stream.step(x), y_state)
    for a, b in zip(stream.get_state().arrays, new.arrays):
        np.testing.assert_array_equal(a, b)
    stream.reset()
    assert not any(np.any(a) for a in stream.get_state().arrays)


def test_open_state_and_state_shapes():
    rng = np.random.default_rng(1)
    model = make_model("lstm", rng, layers=2)
    stream = model.stream(2)
    zero = stream.open_state(4)
    assert zero.batch_size == 4 and zero.shapes == ((2, 5), (2, 5))
    h, c = stream.state
    assert h.shape == (2, 2, 5) and c.shape == (2, 2, 5)  # like the model's h_n, c_n
    cell = make_model("gru", rng, cellmodel=True).stream(2)
    assert cell.state.shape == (2, 5)  # a cell's state is [B, H]


def test_set_state_checks_what_it_is_given():
    rng = np.random.default_rng(2)
    stream = make_model("lstm", rng).stream(2)
    with pytest.raises(TypeError, match="StreamState"):
        stream.set_state((np.zeros((2, 2, 5)), np.zeros((2, 2, 5))))
    with pytest.raises(ValueError, match="2 sequences"):
        stream.set_state(stream.open_state(3))
    other = make_model("lstm", rng, H=4).stream(2)
    with pytest.raises(ValueError, match="shapes"):
        stream.set_state(other.get_state())


# -- one conformance test over every kind of model --------------------------------------------
class Kind:
    """A model kind under test: its stream and how its chunks and outputs are laid out.

    ``chunk(rng, B, T)`` makes a chunk of B sequences; ``rows(chunk, idx)`` its sequences
    ``idx``; ``leaves(out)`` a step's outputs as a list of arrays, with ``out_axes`` the batch
    axis of each.
    """

    def __init__(self, model, chunk, chunk_axis, out_axes=None, picklable=True):
        self.model = model
        self.chunk = chunk
        self.chunk_axis = chunk_axis
        self.out_axes = out_axes
        self.picklable = picklable

    def rows(self, chunk, idx):
        return np.take(chunk, idx, axis=self.chunk_axis)

    def leaves(self, out):
        return list(out) if isinstance(out, list) else [out]

    def axes(self, out):
        return self.out_axes or [self.chunk_axis] * len(self.leaves(out))


def _saturating(module, scale=3.0):
    import torch

    with torch.no_grad():
        for p in module.parameters():
            p.mul_(scale)
    return module.eval()


def _floats(axis_b, axis_t, features=4):
    """Chunks of normal(0, 3) floats (saturating inputs), batch and time on the axes given."""

    def chunk(rng, B, T):
        dims = [0, 0, features]
        dims[axis_b], dims[axis_t] = B, T
        return (rng.normal(size=dims) * 3).astype(np.float32)

    return chunk


def kind_torch(cell):
    torch = pytest.importorskip("torch")
    torch.manual_seed(11)
    batch_first = cell == "GRU"  # one of each layout
    module = getattr(torch.nn, cell)(4, 6, num_layers=2, batch_first=batch_first)
    model = pylstm.from_torch(_saturating(module))
    b, t = (0, 1) if batch_first else (1, 0)
    return Kind(model, _floats(b, t), b)


def kind_cell():
    torch = pytest.importorskip("torch")
    torch.manual_seed(12)
    model = pylstm.from_torch(_saturating(torch.nn.LSTMCell(4, 6)))
    return Kind(model, _floats(1, 0), 1)


def kind_keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(13)
    layers = [
        keras.layers.LSTM(6, return_sequences=True),
        keras.layers.GRU(5, return_sequences=True),
        keras.layers.Dense(3, activation="tanh"),
    ]
    m = keras.Sequential([keras.Input((None, 4)), *layers])
    rng = np.random.default_rng(13)
    for layer in layers:  # saturating gates
        layer.set_weights(
            [(rng.uniform(-3, 3, w.shape) / np.sqrt(w.shape[0])).astype(w.dtype)
             for w in layer.get_weights()]
        )  # fmt: skip
    return Kind(pylstm.from_keras(m), _floats(0, 1), 0)


def kind_onnx():
    pytest.importorskip("onnx")
    from onnx_oracle import make_model, random_case

    from pylstm.assemble import from_onnx_model

    arrays = random_case("LSTM", np.random.default_rng(14), T=2, B=1, I=4, H=6, peephole=True)
    model = from_onnx_model(make_model("LSTM", arrays, {}))
    # outputs Y [T, D, B, H], Y_h and Y_c [D, B, H]
    return Kind(model, _floats(1, 0), 1, out_axes=[2, 1, 1])


def kind_cuda_emulation():
    emu = pytest.importorskip("pylstm._cuda_emu", reason="the CUDA emulation was not built")
    model = make_model("lstm", np.random.default_rng(15), H=6, I=4)
    engine = model.engine  # the engine on the emulated CUDA backend (as test_cuda_emulation)
    engine._net = emu.Network(engine._net.unpack(), "fp32", 0, "persistent")
    engine.device = "cuda:0"
    # (a CUDA model unpickles onto a CUDA device, which the emulation is not)
    return Kind(model, _floats(1, 0), 1, picklable=False)


KINDS = {
    "torch-lstm": lambda: kind_torch("LSTM"),
    "torch-gru": lambda: kind_torch("GRU"),
    "cell": kind_cell,
    "keras": kind_keras,
    "onnx": kind_onnx,
    "cuda-emulation": kind_cuda_emulation,
}


def _same(a: StreamState, b: StreamState, what):
    assert a.names == b.names and a.batch_size == b.batch_size, what
    for name, x, y in zip(a.names, a.arrays, b.arrays):
        np.testing.assert_array_equal(x, y, err_msg=f"{what}: {name}")


def _close(got, want, what):
    """``ROW_TOL`` scaled by the reference's magnitude: a row of a batch vs a lone stream."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    err = np.abs(got - want).max(initial=0.0)
    assert err <= ROW_TOL * max(1.0, np.abs(want).max(initial=0.0)), f"{what}: error {err:.3g}"


def _rows_match(kind, batch, singles, out, single_outs, what):
    """Row r of the batched stream (its state and outputs) against the lone stream r."""
    for r, single in enumerate(singles):
        for name, a, b in zip(
            batch.get_state().names, batch.get_state(r).arrays, single.get_state().arrays
        ):
            _close(a, b, f"{what}: state {name} of row {r}")
        if out is None:
            continue
        for k, (leaf, axis, ref) in enumerate(
            zip(kind.leaves(out), kind.axes(out), kind.leaves(single_outs[r]))
        ):
            _close(np.take(leaf, [r], axis=axis), ref, f"{what}: output {k} of row {r}")


@pytest.mark.parametrize("name", list(KINDS))
def test_protocol_conformance(name):
    kind = KINDS[name]()
    rng = np.random.default_rng(100 + len(name))
    B, T = 3, 4
    x = [kind.chunk(rng, B, T) for _ in range(5)]

    # open_state(B) then step_state equals step; neither state is changed by step_state
    stream = kind.model.stream(B)
    zero = stream.open_state(B)
    assert isinstance(zero, StreamState) and zero.batch_size == B
    out_state, after = stream.step_state(x[0], zero)
    _same(stream.get_state(), zero, "step_state changed the stream's own state")
    assert not any(a.any() for a in zero.arrays), "step_state changed the state it was given"
    out = stream.step(x[0])
    for k, (a, b) in enumerate(zip(kind.leaves(out), kind.leaves(out_state))):
        np.testing.assert_array_equal(a, b, err_msg=f"step vs step_state, output {k}")
    _same(stream.get_state(), after, "state after step vs after step_state")

    # rows of a batch of B follow B lone streams (one sequence each)
    singles = [kind.model.stream(1) for _ in range(B)]
    single_outs = [s.step(kind.rows(x[0], [r])) for r, s in enumerate(singles)]
    _rows_match(kind, stream, singles, out, single_outs, "first chunk")
    _same(stream.get_state([2, 0]), after.take([2, 0]), "get_state(rows)")

    # reset(rows) zeroes those rows only
    before = stream.get_state()
    stream.reset([1])
    now = stream.get_state()
    assert not any(a[1].any() for a in now.arrays), "reset([1]) left row 1"
    _same(now.take([0, 2]), before.take([0, 2]), "reset([1]) changed other rows")
    singles[1].reset()
    out = stream.step(x[1])
    single_outs = [s.step(kind.rows(x[1], [r])) for r, s in enumerate(singles)]
    _rows_match(kind, stream, singles, out, single_outs, "after reset(rows)")

    # set_state(state, rows) replaces those rows only; the next step continues from it
    before = stream.get_state()
    moved = singles[0].get_state()
    stream.set_state(moved, rows=[2])
    now = stream.get_state()
    _same(now.take([2]), moved, "set_state(rows) row 2")
    _same(now.take([0, 1]), before.take([0, 1]), "set_state(rows) changed other rows")
    singles[2].set_state(moved)
    out = stream.step(x[2])
    single_outs = [s.step(kind.rows(x[2], [r])) for r, s in enumerate(singles)]
    _rows_match(kind, stream, singles, out, single_outs, "after set_state(rows)")

    # the whole state replaced, then stepping from it equals step_state from it
    full = stream.get_state()
    out_a = stream.step(x[3])
    stream.set_state(full)
    _same(stream.get_state(), full, "set_state(full)")
    out_state, after = stream.step_state(x[3], full)
    for k, (a, b, c) in enumerate(
        zip(kind.leaves(stream.step(x[3])), kind.leaves(out_state), kind.leaves(out_a))
    ):
        np.testing.assert_array_equal(a, b, err_msg=f"after set_state: output {k}")
        np.testing.assert_array_equal(a, c, err_msg=f"after set_state: output {k} (again)")
    _same(stream.get_state(), after, "after set_state: state")

    # pickled mid-sequence, the copy continues bit-identically
    if kind.picklable:
        copy = pickle.loads(pickle.dumps(stream))
        _same(copy.get_state(), stream.get_state(), "unpickled state")
        for k, (a, b) in enumerate(
            zip(kind.leaves(copy.step(x[4])), kind.leaves(stream.step(x[4])))
        ):
            np.testing.assert_array_equal(a, b, err_msg=f"unpickled stream: output {k}")
        _same(copy.get_state(), stream.get_state(), "unpickled stream: state after a step")

    # reset() of everything
    stream.reset()
    assert not any(a.any() for a in stream.get_state().arrays)


@pytest.mark.parametrize("name", ["torch-lstm", "keras", "onnx"])
def test_rows_and_states_are_checked(name):
    kind = KINDS[name]()
    stream = kind.model.stream(3)
    one = stream.open_state(1)
    stream.set_state(one, rows=slice(0, 2))  # one sequence for all rows
    stream.set_state(stream.open_state(2), rows=[2, 0])  # one per row
    with pytest.raises(ValueError, match="one per row"):
        stream.set_state(stream.open_state(2), rows=[0, 1, 2])
    with pytest.raises(ValueError, match="3 sequences"):
        stream.set_state(one)
    with pytest.raises(TypeError, match="StreamState"):
        stream.set_state(list(one.arrays))
    with pytest.raises(IndexError, match="rows"):
        stream.reset([3])
    with pytest.raises(IndexError, match="rows"):
        stream.get_state(5)
    assert stream.get_state(-1).batch_size == 1  # an int keeps the batch axis
