"""Files written by the oldest Keras 3 (3.0.5, tests/fixtures/keras30/, written by
tools/make_keras30_fixtures.py with the outputs Keras 3.0.5 computed) load in pylstm and give
those outputs, under any Keras or none (pylstm reads files with h5py only).

Keras 3.0 to 3.3 give the output of a layer called on a list of tensors (``Add``,
``Concatenate``, ``Attention``) no mask, where Keras 3.4 and later propagate one: pylstm follows
the version that wrote the file (``functional_merge_masks``), and ``keras_version=`` overrides it.
Where Keras is installed, it loads the same files and must agree where its versions agree.

Tolerance: 3e-5 absolute for unit-scale outputs, relative to each row's largest value above 1
(the Dense outputs), as tests/test_keras_common.assert_outputs.
"""

import gzip
import os
import shutil
import warnings

import numpy as np
import pytest

import pylstm

pytest.importorskip("h5py")

ATOL = 3e-5
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "keras30")
CASES = [
    (name, fmt)
    for name in ("sequential_masked", "functional_merge_masks", "bidirectional_conv")
    for fmt in ("keras", "h5")
    if os.path.exists(os.path.join(FIXTURES, f"{name}.{fmt}.gz"))
]


def unpack(name, fmt, folder):
    path = os.path.join(str(folder), f"{name}.{fmt}")
    packed = os.path.join(FIXTURES, f"{name}.{fmt}.gz")
    with gzip.open(packed, "rb") as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return path


def stored(name):
    data = np.load(os.path.join(FIXTURES, name + ".npz"))
    xs = [data[f"x{k}"] for k in range(sum(k.startswith("x") for k in data.files))]
    ys = [data[f"y{k}"] for k in range(sum(k.startswith("y") for k in data.files))]
    return str(data["keras_version"]), xs, ys


def close(got, expected, what):
    got = got if isinstance(got, (list, tuple)) else [got]
    assert len(got) == len(expected), f"{what}: {len(got)} outputs, expected {len(expected)}"
    for k, (g, e) in enumerate(zip(got, expected)):
        g = np.asarray(g, np.float64)
        assert g.shape == e.shape, f"{what} output {k}: shape {g.shape} != {e.shape}"
        bound = ATOL * np.maximum(1.0, np.abs(e).max(axis=-1, keepdims=True))
        err = np.abs(g - e)
        assert np.all(err <= bound), f"{what} output {k}: max error {err.max():.3g}"


def test_fixtures_are_there():
    assert len(CASES) == 5, CASES  # two models as .keras and .h5, Bidirectional as .keras


@pytest.mark.parametrize(("name", "fmt"), CASES)
def test_keras30_file_gives_keras30_outputs(name, fmt, tmp_path):
    version, xs, ys = stored(name)
    assert version == "3.0.5"
    model = pylstm.load(unpack(name, fmt, tmp_path))
    close(model(xs[0] if len(xs) == 1 else xs), ys, f"{name}.{fmt}")


def test_keras_version_option_gives_later_mask_propagation(tmp_path):
    """Read as Keras 3.4+ would run it, the merged outputs carry the Embedding's mask: the
    recurrent layers after them skip the padded steps, and the outputs change."""
    _, xs, ys = stored("functional_merge_masks")
    path = unpack("functional_merge_masks", "keras", tmp_path)
    later = pylstm.load(path, keras_version="3.4")(xs[0])
    padded = (xs[0] == 0).any(axis=1)  # rows with padding
    for got, ref in zip(later[:2], ys[:2]):  # after Add, after Concatenate(axis=1)
        assert np.allclose(got[~padded], ref[~padded], atol=ATOL)
        assert not np.allclose(got[padded], ref[padded], atol=1e-3)
    # Attention: the file records its masks as a list ([None, None]), which every Keras passes
    # as it is: no mask there under any version
    close(later[2], ys[2:], "attention branch")


@pytest.mark.parametrize(("name", "fmt"), CASES)
def test_installed_keras_reads_keras30_files_as_pylstm(name, fmt, tmp_path):
    """The installed Keras (3.0.5 or the newest) loads the file; pylstm told that version
    agrees with it."""
    pytest.importorskip("torch")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    _, xs, _ = stored(name)
    path = unpack(name, fmt, tmp_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.saving.load_model(path, compile=False)
    except ValueError as exc:  # Keras 3.15: mask ops in an .h5; 3.0: its own Bidirectional
        pytest.skip(f"Keras {keras.__version__} cannot load {name}.{fmt}: {str(exc)[:80]}")
    x = xs[0] if len(xs) == 1 else xs
    out = model(x)
    out = out if isinstance(out, (list, tuple)) else [out]
    expected = [np.asarray(keras.ops.convert_to_numpy(o), np.float64) for o in out]
    got = pylstm.load(path, keras_version=keras.__version__)(x)
    close(got, expected, f"{name}.{fmt} under Keras {keras.__version__}")
