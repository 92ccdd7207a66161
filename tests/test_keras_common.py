"""Shared helpers for the Keras tests (no tests here): Keras 3 on the torch backend, random
weights that saturate gates, masked batches with very different lengths, comparisons.

Tolerance: ATOL = 3e-5 absolute for unit-scale outputs (fp32, a different summation order than
Keras); unbounded outputs (Dense, relu) are compared relative to the largest value in their row.
"""

from __future__ import annotations

import gzip
import os
import shutil

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

ATOL = 3e-5  # fp32, unit-scale outputs: different summation order than Keras
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "keras")


def import_keras():
    """Keras 3 (skips the test when it is not installed)."""
    return pytest.importorskip("keras")


def skip_without_activations(*names):
    """Skip the test when this Keras lacks one of the activations (``hard_tanh``, ``celu``,
    ``log_sigmoid``, ``tanh_shrink`` and others arrived after Keras 3.0)."""
    activations = import_keras().activations
    for name in names:
        if name and not hasattr(activations, name):
            pytest.skip(
                f"Keras {import_keras().__version__} has no activation {name!r} (added later)"
            )


def build_or_skip(build, feature):
    """``build()``, skipping the test where this Keras cannot build ``feature`` (Keras 3.0:
    ``Bidirectional`` with ``return_state=True`` or an ``initial_state`` raises TypeError)."""
    try:
        return build()
    except TypeError as exc:
        pytest.skip(
            f"Keras {import_keras().__version__} cannot build {feature} ({exc.__class__.__name__})"
        )


def save_h5(model, path) -> bool:
    """``model.save(path)`` as a legacy ``.h5``; False where this Keras cannot write the model
    (Keras 3.0 writes the weights of ``Bidirectional`` and ``StackedRNNCells`` under one name
    twice: h5py's "name already exists"), so that the test checks the other files only."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras 3 calls .h5 legacy
            model.save(path)
    except ValueError as exc:
        if "already exists" not in str(exc):
            raise
        return False
    return True


def saturate(layers, rng, scale=3.0):
    """Set every weight to uniform(-1, 1) * scale / sqrt(fan_in): most gate inputs land far
    outside the linear range of sigmoid, tanh and hard_sigmoid."""
    for layer in layers:
        weights = layer.get_weights()
        layer.set_weights(
            [
                (rng.uniform(-1, 1, w.shape) * scale / np.sqrt(max(w.shape[0], 1))).astype(w.dtype)
                for w in weights
            ]
        )


def lengths_for(batch, steps):
    """Very different lengths: full, 1, about half, 0 (nothing valid), T-1, then random."""
    base = [steps, 1, steps // 2, 0, steps - 1]
    rng = np.random.default_rng(batch * 100 + steps)
    return (base + list(rng.integers(0, steps + 1, size=max(0, batch - 5))))[:batch]


def right_padded_mask(batch, steps):
    """``[B, T]`` bool mask of right-padded sequences with :func:`lengths_for` lengths."""
    lengths = np.asarray(lengths_for(batch, steps))
    return np.arange(steps)[None, :] < lengths[:, None]


def holey_mask(batch, steps, rng):
    """``[B, T]`` masks with holes anywhere (what ``Masking`` can produce)."""
    mask = rng.uniform(size=(batch, steps)) > 0.35
    mask[0] = True
    if batch > 1:
        mask[1] = False
    return mask


def masked_input(batch, steps, features, rng, mask=None):
    """Floats ``[B, T, F]`` (normal * 2) with zero rows where ``mask`` is False."""
    x = (rng.normal(size=(batch, steps, features)) * 2).astype(np.float32)
    if mask is not None:
        x[~mask] = 0.0
    return x


def token_ids(batch, steps, vocab, rng):
    """Integer ids ``[B, T]`` in ``1..vocab-1``, right-padded with 0 to :func:`lengths_for`."""
    ids = rng.integers(1, vocab, size=(batch, steps)).astype(np.int32)
    ids[~right_padded_mask(batch, steps)] = 0
    return ids


def to_list(out):
    """A Keras or pylstm result as a list of float32 numpy arrays."""
    keras = import_keras()
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(keras.ops.convert_to_numpy(o), np.float32) for o in outs]


def assert_outputs(got, expected, *, atol=ATOL, what=""):
    """Same structure (a list when Keras returned one) and values within ``atol``, scaled by
    the largest magnitude of each row for unbounded outputs."""
    if isinstance(expected, (list, tuple)):
        assert isinstance(got, list), f"{what}: expected a list of {len(expected)} outputs"
        assert len(got) == len(expected), f"{what}: {len(got)} outputs, expected {len(expected)}"
    else:
        assert not isinstance(got, list), f"{what}: expected one array, got a list"
    for k, (g, e) in enumerate(zip(to_list(got), to_list(expected))):
        assert g.shape == e.shape, f"{what} output {k}: shape {g.shape} != {e.shape}"
        bound = atol * np.maximum(1.0, np.abs(e).max(axis=-1, keepdims=True))
        err = np.abs(g.astype(np.float64) - e)
        assert np.all(err <= bound), (
            f"{what} output {k}: max error {err.max():.3g} at "
            f"{np.unravel_index(np.argmax(err - bound), err.shape)}"
        )


def unpack_fixture(name, folder):
    """A committed tf.keras 2 fixture, gunzipped into ``folder``; returns the file's path."""
    os.makedirs(folder, exist_ok=True)
    for suffix in (".h5", ".keras"):
        packed = os.path.join(FIXTURES, name + suffix + ".gz")
        if os.path.exists(packed):
            path = os.path.join(folder, name + suffix)
            with gzip.open(packed, "rb") as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)
            return path
    raise FileNotFoundError(name)
