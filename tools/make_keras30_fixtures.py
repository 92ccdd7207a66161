"""Writes tests/fixtures/keras30/: small models saved by Keras 3.0.5 (``.keras`` and ``.h5``,
gzipped) with
the inputs and the outputs Keras 3.0.5 computed for them (``<name>.npz``), so that
tests/test_keras_versions.py checks that pylstm reads files written by the oldest Keras 3 the
same under any Keras (or none). Run it in an environment with keras==3.0.5 and torch:

    python -m venv /tmp/k30 && /tmp/k30/bin/pip install keras==3.0.5 "torch>=2.13,<2.14" h5py
    KERAS_BACKEND=torch /tmp/k30/bin/python tools/make_keras30_fixtures.py

The models cover what Keras 3.0 does differently from later Keras 3: a merge layer's output
carries no mask (3.4 ORs its inputs' masks), ``Attention`` records the masks of its inputs as a
list; and what every Keras 3 shares (masks from ``Masking`` and ``Embedding``, Keras 3's
``hard_sigmoid``, both GRU variants, ``go_backwards``, ``Bidirectional``, ``Conv1D``). Keras 3.0
cannot write ``Bidirectional`` into an ``.h5`` (a weight name twice), so that model is a
``.keras`` only.
"""

from __future__ import annotations

import gzip
import os
import shutil
import warnings

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np

L = keras.layers
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "keras30")


def saturate(model, rng):
    """Weights uniform(-1, 1) * 3 / sqrt(fan_in): gates far outside their linear range."""
    for layer in model.layers:
        layer.set_weights(
            [
                (rng.uniform(-1, 1, w.shape) * 3.0 / np.sqrt(max(w.shape[:1] or (1,)))).astype(
                    w.dtype
                )
                for w in layer.get_weights()
            ]
        )


def sequential_masked(rng):
    model = keras.Sequential(
        [
            keras.Input((None, 4)),
            L.Masking(0.0),
            L.LSTM(5, return_sequences=True, recurrent_activation="hard_sigmoid"),
            L.GRU(4, return_sequences=True, go_backwards=True, reset_after=False),
            L.SimpleRNN(3, return_sequences=True),
            L.TimeDistributed(L.Dense(3, activation="softmax")),
            L.GRU(3),
        ]
    )
    saturate(model, rng)
    x = (rng.normal(size=(5, 8, 4)) * 2).astype(np.float32)
    x[1, 3:] = 0.0
    x[2, 1::2] = 0.0
    x[3] = 0.0
    return model, [x], ("keras", "h5")


def functional_merge_masks(rng):
    """Embedding masks into Add / Concatenate(axis=1) / Attention: Keras 3.0 gives their outputs
    no mask, so the recurrent layers after them run over every step."""
    ids_in = keras.Input((7,), dtype="int32")
    e = L.Embedding(12, 4, mask_zero=True)(ids_in)
    a = L.LSTM(4, return_sequences=True)(e)
    b = L.SimpleRNN(4, return_sequences=True)(e)
    s = L.Add()([a, b])
    t = L.Concatenate(axis=1)([s, a])
    att = L.Attention(use_scale=True)([s, t])  # Keras 3.0 fails on masked Attention inputs
    model = keras.Model(ids_in, [L.LSTM(3)(s), L.GRU(3)(t), L.GRU(2)(att)])
    saturate(model, rng)
    ids = rng.integers(1, 12, size=(5, 7)).astype(np.int32)
    ids[1, 1:] = 0
    ids[2, 4:] = 0
    ids[3] = 0
    return model, [ids], ("keras", "h5")


def bidirectional_conv(rng):
    inp = keras.Input((9, 3))
    h = L.Conv1D(6, 3, padding="causal", activation="relu")(inp)
    h = L.Bidirectional(L.LSTM(4, return_sequences=True), merge_mode="concat")(h)
    h = L.Bidirectional(L.GRU(3), merge_mode="ave")(h)
    model = keras.Model(inp, L.Dense(2)(h))
    saturate(model, rng)
    return model, [rng.normal(size=(4, 9, 3)).astype(np.float32)], ("keras",)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(30)
    for make in (sequential_masked, functional_merge_masks, bidirectional_conv):
        name = make.__name__
        model, inputs, formats = make(rng)
        outs = model(inputs[0] if len(inputs) == 1 else inputs)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        arrays = {f"x{k}": v for k, v in enumerate(inputs)}
        arrays.update(
            {f"y{k}": np.asarray(keras.ops.convert_to_numpy(o)) for k, o in enumerate(outs)}
        )
        np.savez(
            os.path.join(OUT, name + ".npz"), keras_version=np.array(keras.__version__), **arrays
        )
        for fmt in formats:
            path = os.path.join(OUT, f"{name}.{fmt}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # .h5 is legacy in Keras 3
                model.save(path)
            with open(path, "rb") as src, gzip.GzipFile(path + ".gz", "wb", mtime=0) as dst:
                shutil.copyfileobj(src, dst)  # committed gzipped, as tests/fixtures/keras
            os.remove(path)
        print(name, keras.__version__, formats, [o.shape for o in outs])


if __name__ == "__main__":
    main()
