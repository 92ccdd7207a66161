"""pylstm.from_keras on live Keras 3 layers and models (torch backend) against what Keras
returns: every recurrent option, activations, Bidirectional merge modes, masks from Embedding,
Masking and explicit masks with very different lengths, functional graphs with several outputs."""

import zlib

import numpy as np
import pytest
from test_keras_common import (
    ATOL,
    assert_outputs,
    holey_mask,
    import_keras,
    masked_input,
    right_padded_mask,
    saturate,
    skip_without_activations,
    token_ids,
)

import pylstm

keras = import_keras()
L = keras.layers

CELLS = {
    "lstm": lambda **kw: L.LSTM(**kw),
    "gru": lambda **kw: L.GRU(**kw),
    "gru_reset_before": lambda **kw: L.GRU(reset_after=False, **kw),
    "rnn": lambda **kw: L.SimpleRNN(**kw),
}


def built(layer, x, rng, scale=3.0):
    """Call ``layer`` once (builds it), then give it saturating weights."""
    layer(x)
    saturate([layer], rng, scale)
    return layer


@pytest.mark.parametrize("return_state", [False, True])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("cell", list(CELLS))
def test_recurrent_layer_options(cell, return_sequences, go_backwards, use_bias, return_state):
    rng = np.random.default_rng(zlib.crc32(repr((cell, return_sequences, go_backwards)).encode()))
    x = masked_input(7, 9, 5, rng)
    layer = CELLS[cell](
        units=6,
        return_sequences=return_sequences,
        go_backwards=go_backwards,
        use_bias=use_bias,
        return_state=return_state,
    )
    built(layer, x, rng)
    model = pylstm.from_keras(layer)
    assert_outputs(model(x), layer(x), atol=ATOL, what="unmasked")  # 3e-5, unit scale
    for mask in (right_padded_mask(7, 9), holey_mask(7, 9, rng)):
        assert_outputs(model(x, mask=mask), layer(x, mask=mask), atol=ATOL, what="masked")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_zero_output_for_mask(cell):
    rng = np.random.default_rng(5)
    x = masked_input(6, 8, 3, rng)
    for go_backwards in (False, True):
        layer = CELLS[cell](
            units=4, return_sequences=True, zero_output_for_mask=True, go_backwards=go_backwards
        )
        built(layer, x, rng)
        mask = right_padded_mask(6, 8)
        got = pylstm.from_keras(layer)(x, mask=mask)
        assert_outputs(got, layer(x, mask=mask), atol=ATOL)  # 3e-5, unit scale


# (activation, recurrent_activation); recurrent ones stay bounded so that the state cannot
# explode over the steps (exponential is covered by the numpy layers).
ACTIVATIONS = [
    ("tanh", "hard_sigmoid"),  # Keras 3 hard_sigmoid: clip(x/6 + 0.5)
    ("hard_sigmoid", "sigmoid"),
    ("relu", "hard_sigmoid"),
    ("linear", "sigmoid"),
    ("elu", "softsign"),
    ("selu", "hard_tanh"),
    ("softplus", "sigmoid"),
    ("swish", "hard_sigmoid"),
    ("gelu", "sigmoid"),
    ("mish", "softsign"),
    ("celu", "hard_sigmoid"),
    ("leaky_relu", "sigmoid"),
    ("tanh_shrink", "sigmoid"),
    ("hard_silu", "hard_sigmoid"),
    ("relu6", "sigmoid"),
    ("log_sigmoid", "sigmoid"),
    ("softsign", "tanh"),
]


@pytest.mark.parametrize("activation, recurrent", ACTIVATIONS)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_activations(cell, activation, recurrent):
    skip_without_activations(activation, recurrent if cell != "rnn" else None)
    rng = np.random.default_rng(7)
    x = masked_input(5, 6, 4, rng)
    kwargs = {"activation": activation, "return_sequences": True}
    if cell != "rnn":
        kwargs["recurrent_activation"] = recurrent
    layer = built(CELLS[cell](units=5, **kwargs), x, rng, scale=1.5)
    mask = right_padded_mask(5, 6)
    # unbounded activations compare relative to each row's largest value (3e-5 * max(1, |row|))
    assert_outputs(pylstm.from_keras(layer)(x, mask=mask), layer(x, mask=mask), atol=ATOL)


@pytest.mark.parametrize("return_state", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_bidirectional(cell, merge_mode, return_sequences, return_state):
    rng = np.random.default_rng(11)
    x = masked_input(7, 8, 4, rng)
    inner = CELLS[cell](units=5, return_sequences=return_sequences, return_state=return_state)
    layer = built(L.Bidirectional(inner, merge_mode=merge_mode), x, rng)
    model = pylstm.from_keras(layer)
    assert_outputs(model(x), layer(x), atol=ATOL, what="unmasked")  # 3e-5, unit scale
    for mask in (right_padded_mask(7, 8), holey_mask(7, 8, rng)):
        assert_outputs(model(x, mask=mask), layer(x, mask=mask), atol=ATOL, what="masked")


def test_bidirectional_custom_backward_layer():
    rng = np.random.default_rng(12)
    x = masked_input(6, 7, 3, rng)
    layer = L.Bidirectional(
        L.LSTM(4, return_sequences=True),
        backward_layer=L.GRU(3, go_backwards=True, return_sequences=True, reset_after=False),
    )
    built(layer, x, rng)
    mask = right_padded_mask(6, 7)
    got = pylstm.from_keras(layer)(x, mask=mask)
    assert_outputs(got, layer(x, mask=mask), atol=ATOL)  # 3e-5, unit scale


def test_rnn_wrapping_cells():
    rng = np.random.default_rng(13)
    x = masked_input(5, 6, 3, rng)
    for cell in (L.LSTMCell(4), L.GRUCell(4, reset_after=False), L.SimpleRNNCell(4)):
        layer = built(L.RNN(cell, return_sequences=True, go_backwards=True), x, rng)
        mask = holey_mask(5, 6, rng)
        got = pylstm.from_keras(layer)(x, mask=mask)
        assert_outputs(got, layer(x, mask=mask), atol=ATOL)  # 3e-5, unit scale


def test_sequential_masking_stack():
    rng = np.random.default_rng(21)
    mask = holey_mask(8, 10, rng)
    x = masked_input(8, 10, 4, rng, mask)
    model = keras.Sequential(
        [
            keras.Input((None, 4)),
            L.Masking(0.0),
            L.Dense(5, activation="tanh"),
            L.LSTM(6, return_sequences=True, recurrent_activation="hard_sigmoid"),
            L.Dropout(0.3),
            L.GRU(5, return_sequences=True, go_backwards=True, reset_after=False),
            L.Bidirectional(L.SimpleRNN(3, return_sequences=True), merge_mode="ave"),
            L.TimeDistributed(L.Dense(3)),
            L.Activation("softmax"),
            L.LSTM(4),
            L.Dense(2),
        ]
    )
    saturate(model.layers, rng)
    got = pylstm.from_keras(model)(x)
    assert_outputs(got, model(x), atol=ATOL)  # 3e-5 * max(1, |row|)


def test_embedding_functional_several_outputs():
    rng = np.random.default_rng(22)
    ids = token_ids(9, 12, 30, rng)
    inp = keras.Input((None,), dtype="int32")
    h = L.Embedding(30, 6, mask_zero=True)(inp)
    seq, h_n, c_n = L.LSTM(5, return_sequences=True, return_state=True)(h)
    bi = L.Bidirectional(L.GRU(4, return_sequences=True), merge_mode="concat")(seq)
    top = L.TimeDistributed(L.Dense(3, activation="relu"))(bi)
    last = L.Bidirectional(L.LSTM(3), merge_mode="mul")(top)
    model = keras.Model(inp, [last, top, h_n, c_n])
    saturate(model.layers, rng)
    got = pylstm.from_keras(model)(ids)
    assert_outputs(got, model(ids), atol=ATOL)  # 3e-5 * max(1, |row|)


def test_sequential_return_state_last_and_output_structures():
    rng = np.random.default_rng(23)
    x = masked_input(4, 5, 3, rng)
    seq = keras.Sequential([keras.Input((5, 3)), L.Masking(), L.GRU(4, return_state=True)])
    saturate(seq.layers, rng)
    x[0, 3:] = 0
    assert_outputs(pylstm.from_keras(seq)(x), seq(x), atol=ATOL)  # 3e-5, unit scale
    inp = keras.Input((5, 3))
    model = keras.Model(inp, [L.LSTM(3)(inp)])  # Keras unpacks a list of one output
    saturate(model.layers, rng)
    assert_outputs(pylstm.from_keras(model)(x), model(x), atol=ATOL)  # 3e-5, unit scale
    inp = keras.Input((5, 3))
    seq, h = L.GRU(3, return_sequences=True, return_state=True)(inp)
    model = keras.Model(inp, {"h": h, "seq": seq})  # a dict of outputs stays a dict
    saturate(model.layers, rng)
    got, ref = pylstm.from_keras(model)(x), model(x)
    assert isinstance(got, dict) and sorted(got) == ["h", "seq"]
    for key in got:
        assert_outputs(got[key], ref[key], atol=ATOL)  # 3e-5, unit scale


def test_shared_layer_called_twice():
    rng = np.random.default_rng(24)
    x = masked_input(4, 6, 3, rng)
    inp = keras.Input((6, 3))
    shared = L.Dense(3, activation="tanh")
    out = L.LSTM(4)(shared(shared(inp)))
    model = keras.Model(inp, out)
    saturate(model.layers, rng)
    assert_outputs(pylstm.from_keras(model)(x), model(x), atol=ATOL)  # 3e-5, unit scale
