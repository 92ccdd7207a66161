"""The numerical cases of Keras' own recurrent-layer tests, as data (no tests here): the
configuration, inputs and expected numbers of each assertion in the installed ``keras``
package's ``keras/src/layers/rnn/*_test.py`` (Keras 3.15; the file is named above each block),
replayed by ``test_framework_cases_keras.py``. The numbers are copied, not the code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from test_keras_common import import_keras

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
