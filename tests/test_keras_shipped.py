"""Keras models as people ship them: live Keras 3.15 configs (tuples where saved configs hold
lists) with ``return_state=True`` and ``Bidirectional(merge_mode=None)`` outputs, weights-only
files refused with a catchable ``pylstm.FormatError``, tf.keras 2 weights-only ``.h5`` paired
with a config whose layer names differ (by order, as tf.keras 2's ``load_weights``), and Keras 2
``CuDNNLSTM`` / ``CuDNNGRU`` files (hand-built with h5py in tf.keras 2's layout) against torch,
which uses cuDNN's conventions (two biases per gate, GRU reset after the recurrent product).

Tolerance: 3e-5 absolute for unit-scale outputs (fp32, another summation order), the LSTM cell
state relative to its row's largest value (``test_keras_common.ATOL``, ``helpers.assert_close``).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from helpers import assert_close
from test_keras_common import (
    ATOL,
    FIXTURES,
    build_or_skip,
    import_keras,
    saturate,
    unpack_fixture,
)

import pylstm

h5py = pytest.importorskip("h5py")


def keras_outputs(model, x):
    keras = import_keras()
    out = model(x)
    out = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in out]


def check_all(got, refs, what):
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(refs), f"{what}: {len(got)} outputs, Keras gives {len(refs)}"
    for k, (g, r) in enumerate(zip(got, refs)):
        # h outputs are unit-scale; an LSTM's c is not: relative to its row
        assert_close(g, r, atol=ATOL, scaled=True, what=f"{what} output {k}")


# -- live Keras 3 configs with tuples ----------------------------------------------------------


def _state_models(keras):
    L = keras.layers
    return {
        "lstm": lambda: L.LSTM(7, return_state=True),
        "lstm-seq": lambda: L.LSTM(7, return_state=True, return_sequences=True),
        "gru": lambda: L.GRU(7, return_state=True),
        "simple_rnn": lambda: L.SimpleRNN(7, return_state=True),
        "bi-none": lambda: L.Bidirectional(L.LSTM(5, return_sequences=True), merge_mode=None),
        "bi-none-state": lambda: L.Bidirectional(L.GRU(5, return_state=True), merge_mode=None),
        "bi-concat-state": lambda: L.Bidirectional(L.LSTM(5, return_state=True)),
    }


@pytest.mark.parametrize(
    "name",
    ["lstm", "lstm-seq", "gru", "simple_rnn", "bi-none", "bi-none-state", "bi-concat-state"],
)
def test_models_with_several_outputs(name, tmp_path):
    keras = import_keras()
    keras.utils.set_random_seed(1)
    inp = keras.Input((6, 4))
    layer = _state_models(keras)[name]()
    outputs = build_or_skip(lambda: layer(inp), f"{type(layer).__name__} with return_state")
    model = keras.Model(inp, outputs)
    # a tuple in live Keras 3.15 (the case tested here), a list in Keras 3.0
    assert isinstance(model.get_config()["output_layers"], (tuple, list))
    saturate([layer], np.random.default_rng(2))
    x = np.random.default_rng(3).normal(size=(3, 6, 4)).astype(np.float32)
    refs = keras_outputs(model, x)
    check_all(pylstm.from_keras(model)(x), refs, f"{name} live")
    path = str(tmp_path / "m.keras")
    model.save(path)
    check_all(pylstm.load(path)(x), refs, f"{name} .keras")
    # the live config dict itself (tuples and all) as config= of a weights file
    weights = str(tmp_path / "m.weights.h5")
    model.save_weights(weights)
    config = {"class_name": "Functional", "config": model.get_config()}
    check_all(pylstm.load(weights, config=config)(x), refs, f"{name} weights + dict config")


# -- weights-only refusals ---------------------------------------------------------------------


def test_weights_only_refusal_is_a_format_error(tmp_path):
    keras = import_keras()
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4)])
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    legacy = unpack_fixture("weights_only", str(tmp_path))  # tf.keras 2 save_weights
    for p in (path, legacy):
        with pytest.raises(pylstm.FormatError, match="holds weights only; pass the architecture"):
            pylstm.load(p)


# -- tf.keras 2 weights-only .h5 with a config of other layer names ---------------------------


def _renamed_config(tmp_path, renames):
    with open(os.path.join(FIXTURES, "weights_only.json")) as fh:
        text = fh.read()
    for old, new in renames.items():
        text = text.replace(f'"{old}"', f'"{new}"')
    path = tmp_path / "renamed.json"
    path.write_text(text)
    return str(path)


def test_weights_only_h5_pairs_layers_by_order_when_names_differ(tmp_path):
    """The fixture's model rebuilt with other names (what happens when a model is built twice
    in one session: lstm -> lstm_1): tf.keras 2 pairs the file's layers with weights in order."""
    npz = np.load(os.path.join(FIXTURES, "weights_only.npz"))
    refs = [npz[k] for k in sorted(npz.files) if k.startswith("out")]
    weights = unpack_fixture("weights_only", str(tmp_path))
    config = _renamed_config(
        tmp_path, {"masking_4": "mask", "simple_rnn_2": "encoder", "gru_3": "decoder"}
    )
    model = pylstm.load(weights, config=config)
    check_all(model(npz["x"]), refs, "paired by order")
    # one name matching is not enough to pair by name: the others are paired by order too
    config = _renamed_config(tmp_path, {"simple_rnn_2": "encoder"})
    check_all(pylstm.load(weights, config=config)(npz["x"]), refs, "partly renamed")


def test_weights_only_h5_with_a_different_layer_count_is_refused(tmp_path):
    weights = unpack_fixture("weights_only", str(tmp_path))
    with open(os.path.join(FIXTURES, "weights_only.json")) as fh:
        config = json.load(fh)
    layers = config["config"]["layers"]
    extra = json.loads(json.dumps(layers[-1]))
    extra["config"]["name"] = "another_gru"
    layers[-1]["config"]["return_sequences"] = True
    layers.append(extra)
    with pytest.raises(pylstm.FormatError, match="cannot be paired in order: 3 layers against 2"):
        pylstm.load(weights, config=config)


# -- Keras 2 CuDNNLSTM / CuDNNGRU ----------------------------------------------------------------

torch = pytest.importorskip("torch")


def _torch_rnn(cell, I, H, bidirectional, seed):
    module = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(
        I, H, batch_first=True, bidirectional=bidirectional
    )
    rng = np.random.default_rng(seed)
    k = 3.0 / np.sqrt(H)  # 3x PyTorch's init: saturating gates
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.from_numpy(rng.uniform(-k, k, size=tuple(p.shape)).astype(np.float32)))
    return module.eval()


def _cudnn_weights(module, sfx):
    """Keras 2 CuDNN arrays of one direction: kernel [I, G*H], recurrent_kernel [H, G*H] and
    bias [2*G*H] (input biases, then recurrent), gates in Keras order (LSTM i,f,c,o = torch's;
    GRU z,r,h = torch's blocks z, r, n)."""
    sd = {k: v.detach().numpy() for k, v in module.named_parameters()}
    G = 4 if isinstance(module, torch.nn.LSTM) else 3

    def keras_order(a):
        if G == 4:
            return a
        r, z, n = np.split(a, 3)
        return np.concatenate([z, r, n])

    kernel = keras_order(sd["weight_ih" + sfx]).T
    recurrent = keras_order(sd["weight_hh" + sfx]).T
    bias = np.concatenate([keras_order(sd["bias_ih" + sfx]), keras_order(sd["bias_hh" + sfx])])
    return [kernel, recurrent, bias]


def _cudnn_config(cls, name, units, **options):
    config = {
        "name": name,
        "trainable": True,
        "dtype": "float32",
        "return_sequences": False,
        "return_state": False,
        "go_backwards": False,
        "stateful": False,
        "units": units,
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "recurrent_initializer": {"class_name": "Orthogonal", "config": {"gain": 1.0}},
        "bias_initializer": {"class_name": "Zeros", "config": {}},
        "kernel_regularizer": None,
        "recurrent_regularizer": None,
        "bias_regularizer": None,
        "activity_regularizer": None,
        "kernel_constraint": None,
        "recurrent_constraint": None,
        "bias_constraint": None,
    }
    if cls == "CuDNNLSTM":
        config["unit_forget_bias"] = True
    config.update(options)
    return {"class_name": cls, "config": config}


def _write_keras2_h5(path, T, I, layer, layer_weights):
    """A whole-model .h5 as tf.keras 2 writes it: Sequential [InputLayer, layer]; weights under
    model_weights/<layer>/<weight name> with layer_names / weight_names attributes."""
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "layers": [
                {
                    "class_name": "InputLayer",
                    "config": {
                        "batch_input_shape": [None, T, I],
                        "dtype": "float32",
                        "sparse": False,
                        "ragged": False,
                        "name": "input_1",
                    },
                },
                layer,
            ],
        },
    }
    name = layer["config"]["name"]
    with h5py.File(path, "w") as f:
        f.attrs["backend"] = "tensorflow"
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["model_config"] = json.dumps(config)
        g = f.create_group("model_weights")
        g.attrs["backend"] = "tensorflow"
        g.attrs["keras_version"] = "2.15.0"
        g.attrs["layer_names"] = np.array([b"input_1", name.encode()], dtype=object)
        f["model_weights"].create_group("input_1").attrs["weight_names"] = np.array([], "S1")
        lg = g.create_group(name)
        lg.attrs["weight_names"] = np.array([w.encode() for w, _ in layer_weights], dtype=object)
        for wname, arr in layer_weights:
            lg.create_dataset(wname, data=np.asarray(arr, np.float32))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("return_state", [False, True])
def test_cudnn_layer_against_torch(tmp_path, cell, return_state):
    T, I, H = 9, 5, 8
    module = _torch_rnn(cell, I, H, False, seed=21)
    cls = "CuDNNLSTM" if cell == "lstm" else "CuDNNGRU"
    scope = "cu_dnnlstm" if cell == "lstm" else "cu_dnngru"
    arrays = _cudnn_weights(module, "_l0")
    names = [f"{scope}/kernel:0", f"{scope}/recurrent_kernel:0", f"{scope}/bias:0"]
    layer = _cudnn_config(cls, scope, H, return_sequences=True, return_state=return_state)
    path = str(tmp_path / f"{cls}.h5")
    _write_keras2_h5(path, T, I, layer, list(zip(names, arrays)))
    x = np.random.default_rng(22).normal(size=(4, T, I)).astype(np.float32) * 2
    with torch.no_grad():
        y_ref, state = module(torch.from_numpy(x))
    got = pylstm.load(path)(x)
    if not return_state:
        assert_close(got, y_ref.numpy(), atol=ATOL, what=cls)  # unit-scale h
        return
    states = [state[0][0], state[1][0]] if cell == "lstm" else [state[0]]
    refs = [y_ref.numpy()] + [s.numpy() for s in states]
    check_all(got, refs, cls)


def test_bidirectional_cudnn_gru_against_torch(tmp_path):
    T, I, H = 7, 4, 6
    module = _torch_rnn("gru", I, H, True, seed=23)
    weights = []
    for d, sfx in (("forward", "_l0"), ("backward", "_l0_reverse")):
        arrays = _cudnn_weights(module, sfx)
        scope = f"bidirectional/{d}_cu_dnngru"
        for part, arr in zip(("kernel", "recurrent_kernel", "bias"), arrays):
            weights.append((f"{scope}/{part}:0", arr))
    inner = _cudnn_config("CuDNNGRU", "cu_dnngru", H, return_sequences=True)
    layer = {
        "class_name": "Bidirectional",
        "config": {
            "name": "bidirectional",
            "trainable": True,
            "layer": inner,
            "merge_mode": "concat",
        },
    }
    path = str(tmp_path / "bi.h5")
    _write_keras2_h5(path, T, I, layer, weights)
    x = np.random.default_rng(24).normal(size=(3, T, I)).astype(np.float32) * 2
    with torch.no_grad():
        y_ref = module(torch.from_numpy(x))[0].numpy()
    assert_close(pylstm.load(path)(x), y_ref, atol=ATOL, what="Bidirectional(CuDNNGRU)")


def test_cudnn_bias_of_the_wrong_size_is_a_format_error(tmp_path):
    module = _torch_rnn("lstm", 3, 4, False, seed=25)
    kernel, recurrent, bias = _cudnn_weights(module, "_l0")
    names = ["cu_dnnlstm/kernel:0", "cu_dnnlstm/recurrent_kernel:0", "cu_dnnlstm/bias:0"]
    path = str(tmp_path / "bad.h5")
    layer = _cudnn_config("CuDNNLSTM", "cu_dnnlstm", 4)
    _write_keras2_h5(path, 5, 3, layer, list(zip(names, [kernel, recurrent, bias[:16]])))
    with pytest.raises(pylstm.FormatError, match=r"bias has shape \(16,\), expected \(32,\)"):
        pylstm.load(path)
