"""The numerical cases of Keras' own recurrent-layer tests replayed through pylstm.

Each case copies the configuration, the inputs and the expected numbers of one assertion in the
installed ``keras`` package's tests (the file is named in each block below: LSTM, GRU,
SimpleRNN, Bidirectional and stacked cells, ``keras/src/layers/rnn/*_test.py``; Keras 3.15),
builds the layer with the same constant initializers (kernel 0.01, recurrent 0.02, bias 0.03
unless said) and runs it through pylstm three ways: ``pylstm.from_keras`` on the live layer
(cases without ``initial_state``), ``pylstm.from_keras`` on a functional model around it (the
initial states as extra inputs), and ``pylstm.load`` of that model saved as ``.keras``. Each
result is compared with the test's numbers, at the test's tolerance (atol = rtol = 1e-5, 1e-4
where the test says), and with what the live Keras layer returns (3e-5, unit-scale outputs).

``RNN`` over a list of built-in cells (``stacked_rnn_cells_test.py``) runs too, also from
``.h5``. Keras' tests of ``RNN`` with user-written cells (``rnn_test.py``, the custom-cell stacks
of ``stacked_rnn_cells_test.py``) have no pylstm counterpart: a custom cell is refused with
``pylstm.UnsupportedError`` naming it (README, "Quick start for Keras users"), which is checked.
"""

from __future__ import annotations

import numpy as np
import pytest
from keras_rnn_cases import CASES, S24, Case
from test_keras_common import ATOL, assert_outputs, import_keras, save_h5, to_list

import pylstm

keras = import_keras()
L = keras.layers


def functional(layer, case):
    """A functional model around ``layer``: the sequence, then one input per initial state."""
    batch = case.x.shape[0] if case.stateful else None
    x_in = keras.Input(case.x.shape[1:], batch_size=batch, name="x")
    states = [
        keras.Input(s.shape[1:], batch_size=batch, name=f"state_{k}")
        for k, s in enumerate(case.initial_state)
    ]
    out = layer(x_in, initial_state=states) if states else layer(x_in)
    return keras.Model([x_in, *states] if states else x_in, out)


def keras_cannot_build(build):
    """None where ``build()`` works in this Keras, else why not: Keras 3.0 has no GRU
    ``implementation`` argument (ValueError) and cannot build ``Bidirectional`` with
    ``return_state=True`` (TypeError)."""
    try:
        build()
    except (TypeError, ValueError) as exc:
        return f"Keras {keras.__version__} cannot build it ({type(exc).__name__})"
    return None


def run_keras(layer, case):
    """What the live Keras layer returns for the case, as the test calls it."""
    kwargs = {}
    if case.mask is not None:
        kwargs["mask"] = case.mask
    if case.initial_state:
        kwargs["initial_state"] = list(case.initial_state)
    return layer(case.x, **kwargs)


def check(got, case, what):
    """``got`` against the test's numbers at the test's tolerance."""
    expected = case.expected if isinstance(case.expected, list) else [case.expected]
    assert isinstance(got, list) == isinstance(case.expected, list), what
    for k, (g, e) in enumerate(zip(to_list(got), expected)):
        np.testing.assert_allclose(g, e, atol=case.tol, rtol=case.tol, err_msg=f"{what} {k}")


def call(model, case, inputs):
    if case.stateful:
        model(inputs, mask=case.mask)
    return model(inputs, mask=case.mask)


@pytest.mark.parametrize("name", list(CASES))
def test_keras_case(name, tmp_path):
    case = CASES[name]
    inputs = [case.x, *case.initial_state] if case.initial_state else case.x

    why = keras_cannot_build(lambda: functional(case.build(), case))
    if why:
        pytest.skip(f"{name}: {why}")
    layer = case.build()
    model = functional(layer, case)
    reference = None if case.stateful else run_keras(layer, case)
    path = str(tmp_path / f"{name}.keras")
    model.save(path)

    runs = {
        "from_keras(model)": pylstm.from_keras(model),
        "load(.keras)": pylstm.load(path),
    }
    if not case.initial_state:
        runs["from_keras(layer)"] = pylstm.from_keras(layer)
    for how, m in runs.items():
        got = call(m, case, inputs)
        check(got, case, f"{name} {how}")
        if reference is not None:
            assert_outputs(got, reference, atol=ATOL, what=f"{name} {how} vs Keras")
        if case.stateful:  # reset_states, then the same two calls give the same numbers
            m.reset_states()
            check(call(m, case, inputs), case, f"{name} {how} after reset_states")


def test_keras_case_reference_numbers_hold_in_keras():
    """The copied numbers are Keras' own here too (guards the copying): the live layers."""
    for name, case in CASES.items():
        if keras_cannot_build(lambda case=case: functional(case.build(), case)):
            continue  # test_keras_case skips it with the reason
        layer = case.build()
        got = run_keras(layer, case)
        if case.stateful:
            got = run_keras(layer, case)
        check(got if not isinstance(got, tuple) else list(got), case, f"{name} keras")


def stacked_cells(cell):
    """stacked_rnn_cells_test.py: test_basics (three stacked cells of 3, 4 and 5 units,
    returning sequences, dropout ignored at inference; shapes only there) and
    test_stacked_lstm_cell_mask (two LSTMCells of one unit, kernels of ones; its numbers)."""
    if cell == "LSTMCell_mask":
        return Case(
            lambda: L.RNN(
                [
                    L.LSTMCell(1, kernel_initializer="ones", recurrent_initializer="ones")
                    for _ in range(2)
                ]
            ),
            np.ones((2, 3, 4), np.float32),
            np.array([[0.7793], [0.5998]]),
            mask=np.array([[True, True, True], [True, True, False]]),
            tol=1e-4,
        )
    cls = getattr(L, cell)
    return Case(
        lambda: L.RNN(
            [cls(u, dropout=0.1, recurrent_dropout=0.1) for u in (3, 4, 5)], return_sequences=True
        ),
        S24 / 24.0,
        None,
    )


@pytest.mark.parametrize("cell", ["SimpleRNNCell", "GRUCell", "LSTMCell", "LSTMCell_mask"])
def test_keras_stacked_cells(cell, tmp_path):
    """``RNN`` over a list of cells (Keras wraps them in ``StackedRNNCells``): live layer,
    functional model, ``.keras`` and ``.h5`` files, against the test's numbers where it gives
    them and against the live layer (test_basics: saturating weights here)."""
    case = stacked_cells(cell)
    layer = case.build()
    model = functional(layer, case)
    if case.expected is None:
        rng = np.random.default_rng(len(cell))
        for w in layer.weights:
            scale = 3.0 / np.sqrt(w.shape[0])
            w.assign((rng.uniform(-1, 1, w.shape) * scale).astype(np.float32))
    reference = run_keras(layer, case)
    if case.expected is not None:
        check(to_list(reference)[0], case, f"{cell} keras")
    model.save(str(tmp_path / "stacked.keras"))
    runs = {
        "from_keras(layer)": pylstm.from_keras(layer),
        "from_keras(model)": pylstm.from_keras(model),
        "load(.keras)": pylstm.load(str(tmp_path / "stacked.keras")),
    }
    if save_h5(model, str(tmp_path / "stacked.h5")):  # Keras 3.0 cannot write this .h5
        runs["load(.h5)"] = pylstm.load(str(tmp_path / "stacked.h5"))
    for how, m in runs.items():
        got = m(case.x, mask=case.mask)
        if case.expected is not None:
            check(got, case, f"{cell} {how}")
        assert_outputs(got, reference, atol=ATOL, what=f"{cell} {how} vs Keras")
    if case.mask is None:  # streamed: every cell's state carried from chunk to chunk
        stream = runs["load(.keras)"].stream(case.x.shape[0])
        chunks = [stream.step(case.x[:, :1]), stream.step(case.x[:, 1:])]
        assert_outputs(np.concatenate(chunks, axis=1), reference, atol=ATOL, what="stream")


@pytest.mark.parametrize("option", ["go_backwards", "return_state"])
def test_keras_stacked_cells_refused_options(option):
    """What pylstm does not run of a cell stack is refused, naming the option."""
    layer = L.RNN([L.LSTMCell(3), L.GRUCell(2)], **{option: True})
    layer(S24)
    with pytest.raises(pylstm.UnsupportedError, match=f"StackedRNNCells with {option}"):
        pylstm.from_keras(layer)


class DoublingCell(L.Layer):
    """A user-written cell (rnn_test.py's cells are of this kind): h' = x W + 2 h."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="ones")

    def call(self, inputs, states):
        h = keras.ops.matmul(inputs, self.kernel) + 2 * states[0]
        return h, [h]


def test_keras_custom_cell_is_refused():
    layer = L.RNN(DoublingCell(2))
    layer(S24)
    with pytest.raises(pylstm.UnsupportedError, match="DoublingCell"):
        pylstm.from_keras(layer)
