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

import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest
from test_keras_common import ATOL, assert_outputs, import_keras, to_list

import pylstm

keras = import_keras()
L = keras.layers
Constant = keras.initializers.Constant


def const(kernel=0.01, recurrent=0.02, bias=0.03):
    """The initializers every Keras recurrent test uses."""
    return dict(
        kernel_initializer=Constant(kernel),
        recurrent_initializer=Constant(recurrent),
        bias_initializer=Constant(bias),
    )


def cols(values, units):
    """``values`` with each number repeated over ``units`` columns (the tests' arrays, whose
    columns are equal because the weights are constant)."""
    return np.repeat(np.asarray(values, np.float32)[..., None], units, axis=-1)


S72 = np.arange(72).reshape((3, 6, 4)).astype("float32")
S24 = np.arange(24).reshape((2, 3, 4)).astype("float32")
S24T = np.arange(24).reshape((2, 4, 3)).astype("float32")
M_LSTM = np.array([[True, True, True, False], [True, True, False, False]])
M_LSTM_BACK = np.array([[False, True, True, True], [False, False, True, True]])
M_HOLES = np.array([[True, True, False, True], [True, False, False, True]])
H2 = np.arange(4).reshape((2, 2)).astype("float32")


@dataclass
class Case:
    build: object  # () -> a fresh Keras layer
    x: np.ndarray
    expected: object  # an array, or a list of arrays where Keras returns a list
    mask: np.ndarray | None = None
    initial_state: list = field(default_factory=list)
    stateful: bool = False  # called twice; the second call's output is the expected one
    tol: float = 1e-5  # the test's atol and rtol


def gru_legacy_implementation():
    config = L.GRU(3, **const()).get_config()
    config["implementation"] = 0  # gru_test.py: test_legacy_implementation_argument
    return L.GRU.from_config(config)


LSTM_72 = [0.6288687, 0.86899155, 0.9460773]
GRU_72 = [0.5217289, 0.6371659, 0.39384964]
GRU_INIT = np.array([[0.23774096, 0.33508456], [0.83659905, 1.0227708]])
GRU_INIT_BACK = np.array([[0.13486053, 0.23261218], [0.78257304, 0.9691353]])
RNN_24 = [0.405432, 0.73605347]
RNN_24_BACK = [0.11144729, 0.5528889]
BI_LSTM_STATE = [0.1990008, 0.52335435, 0.12659755, 0.44717982]

CASES = {
    # keras/src/layers/rnn/lstm_test.py
    "lstm_correctness": Case(lambda: L.LSTM(3, **const()), S72, cols(LSTM_72, 3)),
    "lstm_correctness_implementation_1": Case(
        lambda: L.LSTM(3, implementation=1, **const()), S72, cols(LSTM_72, 3)
    ),
    "lstm_go_backwards": Case(
        lambda: L.LSTM(3, go_backwards=True, **const()),
        S72,
        cols([0.35622165, 0.74789524, 0.8872726], 3),
    ),
    "lstm_unroll": Case(lambda: L.LSTM(3, unroll=True, **const()), S72, cols(LSTM_72, 3)),
    "lstm_no_unit_forget_bias": Case(
        lambda: L.LSTM(3, unit_forget_bias=False, **const()),
        S72,
        cols([0.57019705, 0.8661914, 0.9459622], 3),
    ),
    "lstm_no_bias": Case(
        lambda: L.LSTM(3, use_bias=False, **const()),
        S72,
        cols([0.54986924, 0.86226785, 0.9443936], 3),
    ),
    "lstm_stateful": Case(
        lambda: L.LSTM(4, stateful=True, **const()),
        S24,
        cols([0.3124785, 0.6863672], 4),
        stateful=True,
    ),
    "lstm_initial_state": Case(
        lambda: L.LSTM(2, **const()),
        S24T,
        np.array([[0.20574439, 0.3558822], [0.64930826, 0.66276]]),
        initial_state=[H2, H2],
    ),
    "lstm_initial_state_go_backwards": Case(
        lambda: L.LSTM(2, go_backwards=True, **const()),
        S24T,
        np.array([[0.13281618, 0.2790356], [0.5839337, 0.5992567]]),
        initial_state=[H2, H2],
    ),
    "lstm_mask_unroll": Case(
        lambda: L.LSTM(2, unroll=True, **const()),
        S24T,
        cols([0.11755939, 0.28556206], 2),
        mask=M_LSTM,
    ),
    "lstm_mask_sequences": Case(
        lambda: L.LSTM(2, return_sequences=True, **const()),
        S24T,
        cols(
            [
                [0.01588910, 0.05552048, 0.11755939, 0.11755939],
                [0.14185596, 0.28556206, 0.28556206, 0.28556206],
            ],
            2,
        ),
        mask=M_LSTM,
    ),
    "lstm_mask_zero_output": Case(
        lambda: L.LSTM(2, return_sequences=True, zero_output_for_mask=True, **const()),
        S24T,
        cols([[0.01588910, 0.05552048, 0.11755939, 0.0], [0.14185596, 0.28556206, 0.0, 0.0]], 2),
        mask=M_LSTM,
    ),
    "lstm_mask_go_backwards": Case(
        lambda: L.LSTM(2, go_backwards=True, **const()),
        S24T,
        cols([0.15341201, 0.3844719], 2),
        mask=M_LSTM_BACK,
    ),
    # keras/src/layers/rnn/gru_test.py
    "gru_correctness": Case(lambda: L.GRU(3, **const()), S72, cols(GRU_72, 3)),
    "gru_go_backwards": Case(
        lambda: L.GRU(3, go_backwards=True, **const()),
        S72,
        cols([0.24406259, 0.611516, 0.3928808], 3),
    ),
    "gru_unroll": Case(lambda: L.GRU(3, unroll=True, **const()), S72, cols(GRU_72, 3)),
    "gru_reset_before": Case(
        lambda: L.GRU(3, reset_after=False, **const()),
        S72,
        cols([0.51447755, 0.6426879, 0.40208298], 3),
    ),
    "gru_no_bias": Case(
        lambda: L.GRU(3, use_bias=False, **const()),
        S72,
        cols([0.49988455, 0.64701194, 0.4103359], 3),
    ),
    "gru_legacy_implementation": Case(gru_legacy_implementation, S72, cols(GRU_72, 3)),
    "gru_stateful": Case(
        lambda: L.GRU(4, stateful=True, **const()),
        S24,
        cols([0.29542392, 0.5885018], 4),
        stateful=True,
    ),
    "gru_initial_state": Case(lambda: L.GRU(2, **const()), S24T, GRU_INIT, initial_state=[H2]),
    "gru_initial_state_go_backwards": Case(
        lambda: L.GRU(2, go_backwards=True, **const()),
        S24T,
        GRU_INIT_BACK,
        initial_state=[H2],
    ),
    "gru_return_state": Case(
        lambda: L.GRU(2, return_state=True, **const()),
        S24T,
        [GRU_INIT, GRU_INIT],
        initial_state=[H2],
    ),
    "gru_return_state_go_backwards": Case(
        lambda: L.GRU(2, return_state=True, go_backwards=True, **const()),
        S24T,
        [GRU_INIT_BACK, GRU_INIT_BACK],
        initial_state=[H2],
    ),
    "gru_mask_unroll": Case(
        lambda: L.GRU(2, unroll=True, **const()),
        S24T,
        cols([0.19393763, 0.30818558], 2),
        mask=M_HOLES,
    ),
    "gru_mask_sequences": Case(
        lambda: L.GRU(2, return_sequences=True, **const()),
        S24T,
        cols(
            [
                [0.03606692, 0.09497581, 0.09497581, 0.19393763],
                [0.16051409, 0.16051409, 0.16051409, 0.30818558],
            ],
            2,
        ),
        mask=M_HOLES,
    ),
    "gru_mask_zero_output": Case(
        lambda: L.GRU(2, return_sequences=True, zero_output_for_mask=True, **const()),
        S24T,
        cols([[0.03606692, 0.09497581, 0.0, 0.19393763], [0.16051409, 0.0, 0.0, 0.30818558]], 2),
        mask=M_HOLES,
    ),
    "gru_mask_go_backwards": Case(
        lambda: L.GRU(2, go_backwards=True, **const()),
        S24T,
        cols([0.11669192, 0.28380975], 2),
        mask=M_HOLES,
    ),
    # keras/src/layers/rnn/simple_rnn_test.py
    "simple_rnn_correctness": Case(lambda: L.SimpleRNN(4, **const()), S24, cols(RNN_24, 4)),
    "simple_rnn_unroll": Case(lambda: L.SimpleRNN(4, unroll=True, **const()), S24, cols(RNN_24, 4)),
    "simple_rnn_go_backwards": Case(
        lambda: L.SimpleRNN(4, go_backwards=True, **const()), S24, cols(RNN_24_BACK, 4)
    ),
    "simple_rnn_go_backwards_unroll": Case(
        lambda: L.SimpleRNN(4, go_backwards=True, unroll=True, **const()),
        S24,
        cols(RNN_24_BACK, 4),
    ),
    "simple_rnn_stateful": Case(
        lambda: L.SimpleRNN(4, stateful=True, **const()),
        S24,
        cols([0.40559256, 0.7361247], 4),
        stateful=True,
    ),
    "simple_rnn_initial_state": Case(
        lambda: L.SimpleRNN(4, **const()),
        S24T,
        cols([0.33621645, 0.6262637], 4),
        initial_state=[np.arange(8).reshape((2, 4)).astype("float32")],
    ),
    "simple_rnn_initial_state_go_backwards": Case(
        lambda: L.SimpleRNN(4, go_backwards=True, **const()),
        S24T,
        cols([0.07344437, 0.43043602], 4),
        initial_state=[np.arange(8).reshape((2, 4)).astype("float32")],
    ),
    "simple_rnn_mask_unroll": Case(
        lambda: L.SimpleRNN(4, unroll=True, **const()),
        S24T,
        cols([0.32951632, 0.61799484], 4),
        mask=M_HOLES,
    ),
    "simple_rnn_mask_sequences": Case(
        lambda: L.SimpleRNN(2, return_sequences=True, **const()),
        S24T,
        cols(
            [
                [0.0599281, 0.15122814, 0.15122814, 0.32394567],
                [0.3969304, 0.3969304, 0.3969304, 0.608085],
            ],
            2,
        ),
        mask=M_HOLES,
    ),
    "simple_rnn_mask_zero_output": Case(
        lambda: L.SimpleRNN(2, return_sequences=True, zero_output_for_mask=True, **const()),
        S24T,
        cols([[0.0599281, 0.15122814, 0.0, 0.32394567], [0.3969304, 0.0, 0.0, 0.608085]], 2),
        mask=M_HOLES,
    ),
    "simple_rnn_mask_go_backwards": Case(
        lambda: L.SimpleRNN(4, go_backwards=True, **const()),
        S24T,
        cols([0.07376196, 0.43645123], 4),
        mask=M_HOLES,
    ),
    # keras/src/layers/rnn/bidirectional_test.py
    "bidirectional_concat": Case(
        lambda: L.Bidirectional(L.SimpleRNN(2, **const())),
        S24,
        np.array(
            [
                [0.39687276, 0.39687276, 0.10004295, 0.10004295],
                [0.7237238, 0.7237238, 0.53391594, 0.53391594],
            ]
        ),
    ),
    "bidirectional_ave": Case(
        lambda: L.Bidirectional(L.SimpleRNN(2, **const()), merge_mode="ave"),
        S24,
        cols([0.24845785, 0.6288199], 2),
    ),
    "bidirectional_none": Case(
        lambda: L.Bidirectional(L.SimpleRNN(2, **const()), merge_mode=None),
        S24,
        [cols([0.39687276, 0.7237238], 2), cols([0.10004295, 0.53391594], 2)],
    ),
    "bidirectional_backward_layer_mul": Case(
        lambda: L.Bidirectional(
            L.SimpleRNN(2, **const()),
            backward_layer=L.SimpleRNN(2, go_backwards=True, **const(0.03, 0.02, 0.01)),
            merge_mode="mul",
        ),
        S24,
        cols([0.08374989, 0.6740834], 2),
    ),
    "bidirectional_gru_sequences_sum": Case(
        lambda: L.Bidirectional(L.GRU(2, return_sequences=True, **const()), merge_mode="sum"),
        S24,
        cols([[0.20937867, 0.34462988, 0.40290534], [0.59829646, 0.6734641, 0.6479671]], 2),
    ),
    "bidirectional_stateful": Case(
        lambda: L.Bidirectional(L.LSTM(2, stateful=True, **const())),
        S24T,
        np.array(
            [
                [0.26234663, 0.26234663, 0.16959146, 0.16959146],
                [0.6137073, 0.6137073, 0.5381646, 0.5381646],
            ]
        ),
        stateful=True,
    ),
    "bidirectional_initial_state": Case(
        lambda: L.Bidirectional(L.LSTM(2, **const())),
        S24T,
        np.array(
            [
                [0.20794602, 0.4577124, 0.14046375, 0.48191673],
                [0.6682636, 0.6711909, 0.60943645, 0.60950446],
            ]
        ),
        initial_state=[H2 * 1, H2 * 2, H2 * 3, H2 * 4],
    ),
    "bidirectional_mask": Case(
        lambda: L.Bidirectional(L.GRU(2, **const())),
        S24T,
        np.array(
            [
                [0.19393763, 0.19393763, 0.11669192, 0.11669192],
                [0.30818558, 0.30818558, 0.28380975, 0.28380975],
            ]
        ),
        mask=M_HOLES,
    ),
    "bidirectional_return_state": Case(
        lambda: L.Bidirectional(L.LSTM(2, return_state=True, **const())),
        S24T,
        [
            np.concatenate([cols(BI_LSTM_STATE[:2], 2), cols(BI_LSTM_STATE[2:], 2)], axis=1),
            cols(BI_LSTM_STATE[:2], 2),
            cols([0.35567185, 1.0492687], 2),
            cols(BI_LSTM_STATE[2:], 2),
            cols([0.2501858, 0.941473], 2),
        ],
    ),
}


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras 3 calls .h5 legacy
        model.save(str(tmp_path / "stacked.h5"))
    runs = {
        "from_keras(layer)": pylstm.from_keras(layer),
        "from_keras(model)": pylstm.from_keras(model),
        "load(.keras)": pylstm.load(str(tmp_path / "stacked.keras")),
        "load(.h5)": pylstm.load(str(tmp_path / "stacked.h5")),
    }
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
