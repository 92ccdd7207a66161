"""Errors of the Keras reader and face: unsupported layers and options name the layer class,
corrupt or truncated files name the file and the layer or weight, bad inputs raise TypeError /
ValueError naming the argument."""

import numpy as np
import pytest
from test_keras_common import import_keras, masked_input, saturate, token_ids

import pylstm

keras = import_keras()
h5py = pytest.importorskip("h5py")
L = keras.layers


def small_model(rng):
    model = keras.Sequential([keras.Input((None, 3)), L.Masking(), L.LSTM(4), L.Dense(2)])
    saturate(model.layers, rng)
    return model


@pytest.mark.parametrize("suffix", ["live", ".keras", ".h5"])
def test_unsupported_layer_is_named(tmp_path, suffix):
    model = keras.Sequential(
        [keras.Input((8, 3)), L.Cropping1D(1, name="my_crop"), L.LSTM(4), L.Dense(2)]
    )
    if suffix != "live":
        path = tmp_path / f"m{suffix}"
        model.save(path)
    with pytest.raises(pylstm.UnsupportedError, match=r"Cropping1D.*my_crop") as info:
        pylstm.from_keras(model) if suffix == "live" else pylstm.load(path)
    assert isinstance(info.value, NotImplementedError)


def test_unsupported_options_and_objects():
    rng = np.random.default_rng(51)
    x = masked_input(2, 4, 3, rng)
    layer = L.LSTM(3, activation="softmax")
    layer(x)
    with pytest.raises(pylstm.UnsupportedError, match="softmax"):
        pylstm.from_keras(layer)
    wrapped = L.TimeDistributed(L.Conv1D(2, 1))
    model = keras.Sequential([keras.Input((4, 3, 3)), wrapped])
    with pytest.raises(pylstm.UnsupportedError, match=r"TimeDistributed\(Conv1D\)"):
        pylstm.from_keras(model)
    with pytest.raises(pylstm.UnsupportedError, match="Dense"):
        pylstm.from_keras(L.Dense(3))  # a bare non-recurrent layer
    with pytest.raises(pylstm.UnsupportedError, match="object"):
        pylstm.from_keras(object())
    a, b = keras.Input((4, 3)), keras.Input((4, 3))
    two = keras.Model([a, b], L.LSTM(2)(L.Add()([a, b])))
    xs = [masked_input(2, 4, 3, rng), masked_input(2, 4, 3, rng)]
    got = pylstm.from_keras(two)(xs)  # merge layers now run (tests/test_keras_around.py)
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(two(xs)), atol=3e-5)  # unit scale
    inner = keras.Sequential([keras.Input((4, 3)), L.LSTM(2)])
    outer = keras.Sequential([keras.Input((4, 3)), inner])
    with pytest.raises(pylstm.UnsupportedError, match="nested model"):
        pylstm.from_keras(outer)


def test_bad_inputs():
    rng = np.random.default_rng(52)
    model = pylstm.from_keras(small_model(rng))
    with pytest.raises(TypeError, match="float"):
        model(np.zeros((2, 4, 3), np.int32))
    with pytest.raises(ValueError, match="features"):
        model(np.zeros((2, 4, 5), np.float32))
    with pytest.raises(ValueError, match="3-D"):
        model(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="mask"):
        model(np.zeros((2, 4, 3), np.float32), mask=np.ones((2, 5), bool))
    inp = keras.Input((None,), dtype="int32")
    emb = keras.Model(inp, L.GRU(3)(L.Embedding(10, 4, mask_zero=True)(inp)))
    ids_model = pylstm.from_keras(emb)
    assert ids_model.takes_token_ids
    with pytest.raises(TypeError, match="token ids"):
        ids_model(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="token id 10"):
        ids_model(np.full((2, 4), 10, np.int64))
    ids_model(token_ids(5, 4, 10, rng))  # fine


def test_missing_truncated_and_corrupt_files(tmp_path):
    rng = np.random.default_rng(53)
    model = small_model(rng)
    with pytest.raises(FileNotFoundError):
        pylstm.load(tmp_path / "absent.keras")
    for suffix in (".keras", ".h5"):
        path = tmp_path / f"m{suffix}"
        model.save(path)
        data = path.read_bytes()
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(pylstm.FormatError, match=f"cut{suffix}"):
            pylstm.load(cut)
    # a weight of the wrong shape: the message names the file, the layer and the weight
    path = tmp_path / "m.h5"
    lstm = model.layers[1].name
    with h5py.File(path, "r+") as f:
        group = f["model_weights/" + lstm]
        names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
        name = next(n for n in names if "recurrent" in n)
        del group[name]
        group.create_dataset(name, data=np.zeros((3, 16), np.float32))
    with pytest.raises(pylstm.FormatError, match=rf"m\.h5.*{lstm}.*recurrent_kernel.*\(3, 16\)"):
        pylstm.load(path)


def test_weights_files_and_options(tmp_path):
    rng = np.random.default_rng(54)
    model = small_model(rng)
    weights = tmp_path / "m.weights.h5"
    model.save_weights(weights)
    (tmp_path / "m.json").write_text(model.to_json())
    with pytest.raises(ValueError, match="config="):
        pylstm.load(weights)
    x = masked_input(3, 5, 3, rng)
    got = pylstm.load(weights, config=tmp_path / "m.json")(x)
    np.testing.assert_allclose(got, model(x).detach().numpy(), atol=3e-5, rtol=0)  # unit scale
    with h5py.File(weights, "r+") as f:
        del f["layers/lstm"]
    with pytest.raises(pylstm.FormatError, match=r"m\.weights\.h5.*LSTM.*'layers/lstm'"):
        pylstm.load(weights, config=tmp_path / "m.json")
    model.save(tmp_path / "m.keras")
    with pytest.raises(TypeError, match="config"):
        pylstm.load(tmp_path / "m.keras", config=tmp_path / "m.json")
    with pytest.raises(TypeError, match="prefix"):
        pylstm.load(tmp_path / "m.keras", prefix="x")
    with pytest.raises(ValueError, match="keras_version"):
        pylstm.load(tmp_path / "m.keras", keras_version="new")
