"""pylstm.Stream implements the stream protocol (pylstm/runtime/stream_state.py): open a state
for B sequences, step a chunk, read / replace / reset the carried state per sequence.

Streams of one model agree bit for bit with each other here: every comparison is of the same
engine run on the same rows from the same state (exact equality, no tolerance)."""

from __future__ import annotations

import numpy as np
import pytest

import pylstm
from pylstm.runtime.stream_state import StreamState


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
