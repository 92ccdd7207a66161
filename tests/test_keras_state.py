"""State kept between calls: Keras ``stateful=True`` layers (with reset_states) and
``model.stream(batch_size)`` for Keras-sourced models."""

import numpy as np
import pytest
from test_keras_common import (
    ATOL,
    assert_outputs,
    holey_mask,
    import_keras,
    masked_input,
    saturate,
    token_ids,
)

import pylstm

keras = import_keras()
L = keras.layers


def reset_keras(model):
    for layer in model.layers:
        if hasattr(layer, "reset_states"):
            layer.reset_states()


@pytest.mark.parametrize("masked", [False, True])
def test_stateful_layers_keep_state_between_calls(masked):
    rng = np.random.default_rng(31)
    B = 5
    model = keras.Sequential(
        [
            keras.Input(batch_shape=(B, None, 3)),
            L.Masking(0.0),
            L.GRU(4, stateful=True, return_sequences=True),
            L.Bidirectional(L.LSTM(3, stateful=True, return_sequences=True)),
            L.SimpleRNN(3, stateful=True, go_backwards=True),
        ]
    )
    saturate(model.layers, rng)
    ours = pylstm.from_keras(model)
    assert ours.stateful
    for call in range(3):
        # masked: holes anywhere, and whole chunks masked for some sequences (the state is
        # carried; Keras restarts "repeat the previous output" from zero at each call)
        mask = holey_mask(B, 6, rng) if masked else None
        x = masked_input(B, 6, 3, rng, mask)
        assert_outputs(ours(x), model(x), atol=ATOL, what=f"call {call}")  # 3e-5, unit scale
    reset_keras(model)
    ours.reset_states()
    x = masked_input(B, 6, 3, rng)
    assert_outputs(ours(x), model(x), atol=ATOL, what="after reset")  # 3e-5, unit scale
    with pytest.raises(ValueError, match="stateful"):
        ours(masked_input(B + 1, 6, 3, rng))


def test_stateful_single_layer_with_return_state():
    rng = np.random.default_rng(32)
    layer = L.LSTM(4, stateful=True, return_state=True)
    x = masked_input(3, 5, 2, rng)
    layer(x)
    saturate([layer], rng)
    layer.reset_states()
    ours = pylstm.from_keras(layer)
    for _ in range(2):
        x = masked_input(3, 5, 2, rng)
        assert_outputs(ours(x), layer(x), atol=ATOL)  # 3e-5, unit scale


def chunks_of(x, sizes):
    cuts = np.cumsum(sizes)[:-1]
    return np.split(x, cuts, axis=1)


def test_stream_equals_one_call_with_masks():
    rng = np.random.default_rng(33)
    inp = keras.Input((None,), dtype="int32")
    h = L.Embedding(20, 4, mask_zero=True)(inp)
    h = L.LSTM(5, return_sequences=True)(h)
    h = L.TimeDistributed(L.Dense(3, activation="tanh"))(h)
    out = L.GRU(4, return_sequences=True, reset_after=False)(h)
    model = keras.Model(inp, out)
    saturate(model.layers, rng)
    ids = token_ids(6, 14, 20, rng)
    ids[4, 3:9] = 0  # a gap in the middle: the next chunk starts on masked steps
    whole = pylstm.from_keras(model)(ids)
    assert_outputs(whole, model(ids), atol=ATOL)  # 3e-5, unit scale
    stream = pylstm.from_keras(model).stream(6)
    parts = [stream.step(c) for c in chunks_of(ids, [3, 1, 5, 5])]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, atol=1e-6, rtol=0)
    stream.reset()
    again = [stream.step(c) for c in chunks_of(ids, [7, 7])]
    np.testing.assert_allclose(np.concatenate(again, axis=1), whole, atol=1e-6, rtol=0)


def test_stream_last_output_and_states():
    rng = np.random.default_rng(34)
    model = keras.Sequential(
        [
            keras.Input((None, 3)),
            L.Masking(0.0),
            L.LSTM(4, return_sequences=True),
            L.GRU(3, return_state=True),
        ]
    )
    saturate(model.layers, rng)
    mask = holey_mask(4, 10, rng)
    x = masked_input(4, 10, 3, rng, mask)
    ref = model(x)
    stream = pylstm.from_keras(model).stream(4)
    for chunk in chunks_of(x, [4, 6]):
        got = stream.step(chunk)
    # after the last chunk: what one call on the whole sequence returns (3e-5, unit scale)
    assert_outputs(got, ref, atol=ATOL)


def test_stream_refuses_backward_layers_and_bad_chunks():
    rng = np.random.default_rng(35)
    for layer in (L.Bidirectional(L.GRU(3)), L.LSTM(3, go_backwards=True)):
        layer(masked_input(2, 4, 3, rng))
        with pytest.raises(ValueError, match="backwards"):
            pylstm.from_keras(layer).stream(2)
    layer = L.LSTM(3, return_sequences=True)
    layer(masked_input(2, 4, 3, rng))
    stream = pylstm.from_keras(layer).stream(2)
    with pytest.raises(ValueError, match="batch_size"):
        stream.step(masked_input(3, 4, 3, rng))
    with pytest.raises(TypeError):
        stream.step(np.zeros((2, 4, 3), np.int64))
