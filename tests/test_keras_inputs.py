"""Keras models with several inputs: recurrent layers whose ``initial_state`` comes from other
``Input`` s or from another layer's states (encoder-decoder), called with ``model([x, h, c])``
or a dict keyed by input names, as Keras takes them; live models and saved ``.keras`` files,
against Keras 3 (torch backend) with saturating weights.

Tolerance: 3e-5 for unit-scale outputs (fp32, another summation order), relative to the row's
largest value for unbounded ones (Dense, the LSTM cell state): ``helpers.assert_close(scaled)``.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close
from test_keras_common import ATOL, build_or_skip, import_keras, saturate

import pylstm

keras = import_keras()
L = keras.layers


def outputs_of(model, inputs):
    out = model(inputs)
    if isinstance(out, dict):
        return {k: keras.ops.convert_to_numpy(v) for k, v in out.items()}
    out = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in out]


def check(got, refs, what):
    if isinstance(refs, dict):
        assert isinstance(got, dict) and set(got) == set(refs), what
        got, refs = [got[k] for k in refs], list(refs.values())
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(refs), f"{what}: {len(got)} outputs, Keras gives {len(refs)}"
    for k, (g, r) in enumerate(zip(got, refs)):
        assert_close(g, r, atol=ATOL, scaled=True, what=f"{what} output {k}")


def weighted(model, seed):
    saturate([layer for layer in model.layers if layer.get_weights()], np.random.default_rng(seed))
    return model


def state_input_model(kind):
    """x [B, T, 4] and the states as Inputs: LSTM/GRU/SimpleRNN/Bidirectional/go_backwards."""
    x = keras.Input((None, 4), name="x")
    H = 6
    if kind == "bi-lstm":
        states = [keras.Input((H,), name=n) for n in ("h_f", "c_f", "h_b", "c_b")]
        layer = L.Bidirectional(L.LSTM(H, return_sequences=True, return_state=True))
    elif kind in ("lstm", "lstm-backwards"):
        states = [keras.Input((H,), name="h"), keras.Input((H,), name="c")]
        layer = L.LSTM(H, return_sequences=True, return_state=True, go_backwards=kind != "lstm")
    else:
        states = [keras.Input((H,), name="h")]
        cls = {"gru": L.GRU, "gru-before": L.GRU, "rnn": L.SimpleRNN}[kind]
        extra = {"reset_after": False} if kind == "gru-before" else {}
        layer = cls(H, return_sequences=True, return_state=True, **extra)
    outs = build_or_skip(lambda: layer(x, initial_state=states), f"{kind} with initial_state")
    return weighted(keras.Model([x, *states], outs), seed=len(kind))


KINDS = ["lstm", "lstm-backwards", "gru", "gru-before", "rnn", "bi-lstm"]


@pytest.mark.parametrize("kind", KINDS)
def test_initial_state_from_inputs(kind, tmp_path):
    model = state_input_model(kind)
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(3, 7, 4)) * 2).astype(np.float32)
    states = [rng.uniform(-1, 1, size=(3, 6)).astype(np.float32) for _ in model.inputs[1:]]
    refs = outputs_of(model, [x, *states])
    pm = pylstm.from_keras(model)
    assert pm.input_names == [t.name for t in model.inputs]
    check(pm([x, *states]), refs, f"{kind} list")
    check(pm(dict(zip(pm.input_names, [x, *states]))), refs, f"{kind} dict")
    path = str(tmp_path / "m.keras")
    model.save(path)
    check(pylstm.load(path)([x, *states]), refs, f"{kind} .keras")
    # zeros as given states = no initial_state at all (the default start)
    zeros = [np.zeros_like(s) for s in states]
    check(pm([x, *zeros]), outputs_of(model, [x, *zeros]), f"{kind} zero states")


def seq2seq(cell, embed, explicit_mask=False):
    """The Keras encoder-decoder: the encoder's final states start the decoder. Keras 3 does
    not propagate the decoder Embedding's mask into a call with ``initial_state`` (several tensor
    arguments); ``explicit_mask`` passes it as ``mask=``."""
    H = 8
    rnn = {"lstm": L.LSTM, "gru": L.GRU}[cell]
    if embed:
        enc_in = keras.Input((None,), dtype="int32", name="encoder_tokens")
        dec_in = keras.Input((None,), dtype="int32", name="decoder_tokens")
        enc_x = L.Embedding(20, 5, mask_zero=True)(enc_in)
        dec_x = L.Embedding(20, 5, mask_zero=True)(dec_in)
    else:
        enc_in = keras.Input((None, 5), name="encoder_x")
        dec_in = keras.Input((None, 3), name="decoder_x")
        enc_x, dec_x = enc_in, dec_in
    _, *states = rnn(H, return_state=True, name="encoder")(enc_x)
    extra = {"mask": keras.ops.not_equal(dec_in, 0)} if explicit_mask else {}
    dec_seq, *_ = rnn(H, return_sequences=True, return_state=True, name="decoder")(
        dec_x, initial_state=states, **extra
    )
    out = L.Dense(4, activation="softmax", name="probs")(dec_seq)
    return weighted(keras.Model([enc_in, dec_in], out), seed=3)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize(
    "embed,explicit_mask",
    [(False, False), (True, False), (True, True)],
    ids=["floats", "tokens", "tokens-mask"],
)
def test_encoder_decoder(cell, embed, explicit_mask, tmp_path):
    model = seq2seq(cell, embed, explicit_mask)
    rng = np.random.default_rng(2)
    if embed:  # padded token batches (0 = padding, masked by the Embeddings)
        enc = rng.integers(1, 20, size=(4, 9))
        dec = rng.integers(1, 20, size=(4, 5))
        enc[1, 4:] = 0
        enc[2, 1:] = 0
        dec[3, 2:] = 0
    else:
        enc = (rng.normal(size=(4, 9, 5)) * 2).astype(np.float32)
        dec = (rng.normal(size=(4, 5, 3)) * 2).astype(np.float32)
    refs = outputs_of(model, [enc, dec])
    pm = pylstm.from_keras(model)
    check(pm([enc, dec]), refs, "live")
    check(pm(dict(zip(pm.input_names, [enc, dec]))), refs, "dict")
    path = str(tmp_path / "s2s.keras")
    model.save(path)
    check(pylstm.load(path)((enc, dec)), refs, ".keras")  # a tuple works as a list
    weights = str(tmp_path / "s2s.weights.h5")
    model.save_weights(weights)
    check(pylstm.load(weights, config=model.to_json())([enc, dec]), refs, "weights + json")


def test_errors_name_the_inputs():
    pm = pylstm.from_keras(state_input_model("lstm"))
    x = np.zeros((2, 5, 4), np.float32)
    h = np.zeros((2, 6), np.float32)
    with pytest.raises(TypeError, match=r"3 inputs \(x, h, c\)"):
        pm(x)
    with pytest.raises(TypeError, match="3 inputs"):
        pm([x, h])
    with pytest.raises(ValueError, match=r"missing \['c'\], unknown \['cc'\]"):
        pm({"x": x, "h": h, "cc": h})
    with pytest.raises(ValueError, match=r"input 'c': expected shape \['B', 6\]"):
        pm([x, h, np.zeros((2, 5), np.float32)])
    with pytest.raises(ValueError, match="input 'h' holds 3 sequences"):
        pm([x, np.zeros((3, 6), np.float32), h])
    with pytest.raises(ValueError, match="cannot stream: the model has 3 inputs"):
        pm.stream(2)


def test_keras2_initial_state_as_further_inbound_tensors(tmp_path):
    """tf.keras 2 records ``LSTM(...)(x, initial_state=[h, c])`` as one call on three inbound
    tensors ``[[x], [h], [c]]``: a whole-model ``.h5`` written in that layout (h5py, tf.keras 2's
    attributes) with the weights of a Keras 3 model, which is the reference."""
    h5py = pytest.importorskip("h5py")
    import json

    model = state_input_model("lstm")
    layer = model.get_layer(index=3)
    assert isinstance(layer, L.LSTM)
    inputs = [
        {
            "class_name": "InputLayer",
            "name": n,
            "inbound_nodes": [],
            "config": {"batch_input_shape": shape, "dtype": "float32", "name": n},
        }
        for n, shape in (("x", [None, None, 4]), ("h", [None, 6]), ("c", [None, 6]))
    ]
    lstm = {
        "class_name": "LSTM",
        "name": "lstm",
        "inbound_nodes": [[["x", 0, 0, {}], ["h", 0, 0, {}], ["c", 0, 0, {}]]],
        "config": {
            "name": "lstm",
            "units": 6,
            "activation": "tanh",
            "recurrent_activation": "sigmoid",
            "use_bias": True,
            "return_sequences": True,
            "return_state": True,
            "go_backwards": False,
            "stateful": False,
            "unroll": False,
            "time_major": False,
        },
    }
    config = {
        "class_name": "Functional",
        "config": {
            "name": "model",
            "layers": [*inputs, lstm],
            "input_layers": [["x", 0, 0], ["h", 0, 0], ["c", 0, 0]],
            "output_layers": [["lstm", 0, 0], ["lstm", 0, 1], ["lstm", 0, 2]],
        },
    }
    path = str(tmp_path / "keras2.h5")
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(config)
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.array([b"x", b"h", b"c", b"lstm"], dtype=object)
        for n in ("x", "h", "c"):
            g.create_group(n).attrs["weight_names"] = np.array([], "S1")
        names = [f"lstm/lstm_cell/{w}:0" for w in ("kernel", "recurrent_kernel", "bias")]
        lg = g.create_group("lstm")
        lg.attrs["weight_names"] = np.array([n.encode() for n in names], dtype=object)
        for n, w in zip(names, layer.get_weights()):
            lg.create_dataset(n, data=w)
    rng = np.random.default_rng(9)
    x = (rng.normal(size=(3, 7, 4)) * 2).astype(np.float32)
    h, c = (rng.uniform(-1, 1, size=(3, 6)).astype(np.float32) for _ in range(2))
    check(pylstm.load(path)([x, h, c]), outputs_of(model, [x, h, c]), "tf.keras 2 layout")
