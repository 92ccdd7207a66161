"""The committed tf.keras 2 fixtures (tests/fixtures/make_tf_keras_fixtures.py, TensorFlow not
needed here): pylstm.load returns what tf.keras 2 returned, hard_sigmoid is tf.keras 2's
``clip(0.2x + 0.5)``, and the chunked fixture really has chunked attributes."""

import os

import numpy as np
import pytest
from test_keras_common import ATOL, FIXTURES, unpack_fixture

import pylstm

h5py = pytest.importorskip("h5py")

NAMES = sorted(f[:-4] for f in os.listdir(FIXTURES) if f.endswith(".npz"))


def expected(npz, prefix="out"):
    return [npz[f"{prefix}{i}"] for i in range(sum(k.startswith(prefix) for k in npz.files))]


def check(got, refs, what):
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(refs), what
    for k, (g, r) in enumerate(zip(got, refs)):
        assert g.shape == r.shape, f"{what} output {k}"
        # 3e-5 absolute for unit-scale outputs, relative to the row's largest value otherwise
        bound = ATOL * np.maximum(1.0, np.abs(r).max(axis=-1, keepdims=True))
        assert np.all(np.abs(g - r) <= bound), f"{what} output {k}: {np.abs(g - r).max()}"


def load(name, tmp_path, **options):
    json_path = os.path.join(FIXTURES, name + ".json")
    if os.path.exists(json_path):
        options.setdefault("config", json_path)
    return pylstm.load(unpack_fixture(name, str(tmp_path)), **options)


def test_fixtures_present():
    assert {
        "lstm_hard_sigmoid",
        "gru_reset_before",
        "bidirectional_embedding",
        "functional_states",
        "stateful",
        "weights_only",
        "hard_sigmoid_v3",
        "chunked",
    } <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_fixture_matches_tf_keras(name, tmp_path):
    npz = np.load(os.path.join(FIXTURES, name + ".npz"))
    model = load(name, tmp_path)
    check(model(npz["x"]), expected(npz), name)
    if "x2" in npz.files:  # stateful: the second call starts from the first call's state
        check(model(npz["x2"]), expected(npz, "second"), name + " second call")
        model.reset_states()
        check(model(npz["x"]), expected(npz), name + " after reset_states")


@pytest.mark.parametrize("name", ["lstm_hard_sigmoid", "hard_sigmoid_v3", "weights_only"])
def test_hard_sigmoid_follows_the_file_version(name, tmp_path):
    """Read as Keras 3 (hard_sigmoid = clip(x/6 + 0.5)) the same weights give other results:
    the version in the file is what makes them right."""
    npz = np.load(os.path.join(FIXTURES, name + ".npz"))
    wrong = load(name, tmp_path, keras_version="3")(npz["x"])
    wrong = wrong if isinstance(wrong, list) else [wrong]
    assert max(np.abs(w - r).max() for w, r in zip(wrong, expected(npz))) > 1e-2


def test_chunked_fixture_has_chunked_attributes(tmp_path):
    path = unpack_fixture("chunked", str(tmp_path))
    with h5py.File(path, "r") as f:
        group = f["model_weights"]
        assert "layer_names" not in group.attrs and "layer_names1" in group.attrs
        chunked = [name for name in group if "weight_names0" in group[name].attrs]
        assert len(chunked) == 1 and len(chunked[0]) == 6000
