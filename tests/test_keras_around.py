"""The Keras layers around recurrent ones (pylstm/runtime/ops/keras_around.py) against Keras 3 on
the torch backend: convolution, pooling, normalization, shape, merge and attention layers, in
live models and saved ``.keras`` / ``.h5`` files, on fresh random data; streams refuse layers
that read other time steps."""

import zlib

import numpy as np
import pytest
from test_keras_common import ATOL, assert_outputs, import_keras, right_padded_mask, to_list

import pylstm

keras = import_keras()
L = keras.layers


def randomize(model, rng):
    """Fresh random weights for every layer; variances (BatchNormalization) positive."""
    for layer in model.layers:
        weights = layer.get_weights()
        new = []
        for w, v in zip(weights, layer.weights):
            if "variance" in v.path:
                new.append(rng.uniform(0.3, 2.0, w.shape).astype(w.dtype))
            else:
                fan = max(w.shape[0], 1) if w.ndim > 1 else 1
                new.append((rng.uniform(-1, 1, w.shape) * 2 / np.sqrt(fan)).astype(w.dtype))
        layer.set_weights(new)


def check(model, x, tmp_path=None, atol=ATOL, what=""):
    """pylstm's live model (and, with tmp_path, the .keras and .h5 files) against Keras."""
    expected = model(x)
    assert_outputs(pylstm.from_keras(model)(x), expected, atol=atol, what=f"{what} live")
    if tmp_path is not None:
        for suffix in (".keras", ".h5"):
            path = str(tmp_path / f"m{suffix}")
            model.save(path)
            got = pylstm.load(path)(x)
            assert_outputs(got, expected, atol=atol, what=f"{what} {suffix}")


def seq_model(layers, steps, features):
    return keras.Sequential([keras.Input((steps, features)), *layers])


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@pytest.mark.parametrize(("strides", "dilation"), [(1, 1), (2, 1), (1, 2), (3, 1)])
@pytest.mark.parametrize("kernel", [1, 3, 4])
def test_conv1d(padding, strides, dilation, kernel):
    if padding == "causal" and strides > 1:
        pytest.skip("Keras refuses causal padding with strides")
    rng = rng_for("conv", padding, strides, dilation, kernel)
    model = seq_model(
        [
            L.Conv1D(
                6,
                kernel,
                strides=strides,
                dilation_rate=dilation,
                padding=padding,
                activation="tanh",
            )
        ],
        11,
        4,
    )
    randomize(model, rng)
    x = rng.normal(size=(3, 11, 4)).astype(np.float32)
    reference = conv1d_reference(model.layers[0], x, strides, dilation, padding)
    if not np.allclose(to_list(model(x))[0], reference, atol=ATOL):
        # Keras 3.0's torch backend pads 'same' wrongly where the padding would be negative
        # (kernel 1, stride 3 over 11 steps); later Keras agree with TensorFlow's definition.
        assert_outputs(pylstm.from_keras(model)(x), reference)  # 3e-5: tanh, unit scale
        pytest.skip(
            f"Keras {keras.__version__} computes Conv1D(padding={padding!r}, kernel {kernel}, "
            f"strides {strides}) differently from TensorFlow's definition (fixed in later "
            "Keras); pylstm checked against numpy instead"
        )
    check(model, x)  # 3e-5: tanh, unit scale


def conv1d_reference(layer, x, strides, dilation, padding):
    """Conv1D + tanh in numpy, padded as TensorFlow defines 'same' and 'causal'."""
    kernel, bias = layer.get_weights()
    steps, size = x.shape[1], kernel.shape[0]
    span = (size - 1) * dilation + 1
    if padding == "same":
        out = -(-steps // strides)
        total = max((out - 1) * strides + span - steps, 0)
        pads = (total // 2, total - total // 2)
    else:
        pads = (span - 1, 0) if padding == "causal" else (0, 0)
    xp = np.pad(x, ((0, 0), pads, (0, 0)))
    out = (xp.shape[1] - span) // strides + 1
    y = np.stack(
        [
            sum(xp[:, t * strides + j * dilation] @ kernel[j] for j in range(size))
            for t in range(out)
        ],
        axis=1,
    )
    return np.tanh(y + bias).astype(np.float32)


def test_conv1d_groups_no_bias_linear(tmp_path):
    rng = rng_for("groups")
    model = seq_model([L.Conv1D(6, 3, groups=2, use_bias=False, padding="same")], 9, 4)
    randomize(model, rng)
    x = rng.normal(size=(2, 9, 4)).astype(np.float32)
    check(model, x, tmp_path)  # 3e-5 relative to each row's largest value (linear output)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize(("size", "strides"), [(2, None), (3, 1), (3, 2), (4, 3)])
@pytest.mark.parametrize("kind", ["MaxPooling1D", "AveragePooling1D"])
def test_pooling(kind, size, strides, padding):
    rng = rng_for("pool", kind, size, strides, padding)
    model = seq_model([getattr(L, kind)(size, strides=strides, padding=padding)], 10, 3)
    x = rng.normal(size=(2, 10, 3)).astype(np.float32)
    stride = strides or size
    total = max((-(-10 // stride) - 1) * stride + size - 10, 0)
    if kind == "AveragePooling1D" and padding == "same" and total % 2:
        # Uneven 'same' padding: Keras' TensorFlow and JAX backends average the steps inside
        # the sequence; its torch backend repeats the edge step instead. pylstm follows the
        # former: checked against a direct average of the valid steps.
        left = total // 2
        starts = np.arange(-(-10 // stride)) * stride - left
        want = np.stack([x[:, max(s, 0) : min(s + size, 10)].mean(axis=1) for s in starts], axis=1)
        got = pylstm.from_keras(model)(x)
        np.testing.assert_allclose(got, want, atol=1e-6)  # fp32 means of a few unit values
        return
    check(model, x)  # 3e-5: inputs of unit scale


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("kind", ["GlobalMaxPooling1D", "GlobalAveragePooling1D"])
def test_global_pooling(kind, keepdims):
    rng = rng_for("global", kind, keepdims)
    model = seq_model([L.LSTM(5, return_sequences=True), getattr(L, kind)(keepdims=keepdims)], 8, 3)
    randomize(model, rng)
    x = rng.normal(size=(4, 8, 3)).astype(np.float32)
    check(model, x)  # 3e-5: LSTM outputs, unit scale


def test_global_average_pooling_with_mask(tmp_path):
    """Keras averages over the valid steps of an Embedding(mask_zero=True) sequence."""
    rng = rng_for("gap mask")
    ids = rng.integers(1, 20, size=(5, 9)).astype(np.int32)
    ids[~right_padded_mask(5, 9)] = 0
    ids[3] = rng.integers(1, 20, size=9)  # (no sequence without any valid step: 0/0 in Keras)
    inp = keras.Input((9,), dtype="int32")
    h = L.Embedding(20, 4, mask_zero=True)(inp)
    h = L.LSTM(6, return_sequences=True)(h)
    out = L.GlobalAveragePooling1D()(h)
    model = keras.Model(inp, L.Dense(2)(out))
    randomize(model, rng)
    check(model, ids, tmp_path)  # 3e-5 relative (Dense output)


@pytest.mark.parametrize("layer", ["Conv1D", "GlobalMaxPooling1D", "MaxPooling1D", "Flatten"])
def test_masked_input_to_a_layer_without_masking_drops_the_mask(layer, tmp_path):
    """Keras drops the mask (with a warning) where a layer does not support masking: the LSTM
    after it sees every step."""
    rng = rng_for("drop mask", layer)
    make = {
        "Conv1D": lambda: [L.Conv1D(4, 3, padding="same"), L.LSTM(3)],
        "GlobalMaxPooling1D": lambda: [L.LSTM(3, return_sequences=True), L.GlobalMaxPooling1D()],
        "MaxPooling1D": lambda: [L.MaxPooling1D(2), L.GRU(3)],
        "Flatten": lambda: [L.LSTM(3, return_sequences=True), L.Flatten(), L.Dense(2)],
    }[layer]
    model = seq_model([L.Masking(), *make()], 8, 3)
    randomize(model, rng)
    x = rng.normal(size=(4, 8, 3)).astype(np.float32)
    x[~right_padded_mask(4, 8)] = 0.0
    with pytest.warns(UserWarning, match=layer):
        got = pylstm.from_keras(model)(x)
    assert_outputs(got, model(x))  # 3e-5 relative


# (BatchNormalization axis, LayerNormalization axis); Keras' torch backend normalizes over
# trailing axes only, so LayerNormalization's are -1 and [1, 2].
@pytest.mark.parametrize(("bn_axis", "axis"), [(-1, -1), (1, [1, 2])])
@pytest.mark.parametrize("center_scale", [(True, True), (False, True), (True, False)])
def test_normalization(bn_axis, axis, center_scale, tmp_path):
    center, scale = center_scale
    rng = rng_for("norm", str(axis), center_scale)
    model = seq_model(
        [
            L.BatchNormalization(axis=bn_axis, center=center, scale=scale, epsilon=1e-2),
            L.LSTM(5, return_sequences=True),
            L.LayerNormalization(axis=axis, center=center, scale=scale, epsilon=1e-4),
        ],
        7,
        4,
    )
    randomize(model, rng)
    x = (rng.normal(size=(3, 7, 4)) * 2).astype(np.float32)
    check(model, x, tmp_path)  # 3e-5 relative: normalized outputs of a few units


def test_shape_layers(tmp_path):
    rng = rng_for("shape")
    model = seq_model(
        [
            L.Permute((2, 1)),
            L.Permute((2, 1)),
            L.GRU(4),
            L.RepeatVector(5),
            L.LSTM(3, return_sequences=True),
            L.Reshape((3, 5)),
            L.Flatten(),
            L.Dense(2),
        ],
        6,
        3,
    )
    randomize(model, rng)
    x = rng.normal(size=(2, 6, 3)).astype(np.float32)
    check(model, x, tmp_path)  # 3e-5 relative (Dense output)


@pytest.mark.parametrize(
    "merge", ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"]
)
def test_merge_layers(merge, tmp_path):
    rng = rng_for("merge", merge)
    inp = keras.Input((8, 3))
    a = L.LSTM(4, return_sequences=True)(inp)
    b = L.GRU(4, return_sequences=True)(inp)
    m = getattr(L, merge)()([a, b])
    model = keras.Model(inp, L.LSTM(3)(m))
    randomize(model, rng)
    x = rng.normal(size=(3, 8, 3)).astype(np.float32)
    check(model, x, tmp_path)  # 3e-5: LSTM output, unit scale


def test_merge_masks_and_concatenate_time(tmp_path):
    """Keras 3 records the merge masks as operations (LogicalOr, ExpandDims, ZerosLike, the
    Concatenate operation); the .h5 drops their module, so they are told from layers there."""
    rng = rng_for("merge mask")
    inp = keras.Input((7,), dtype="int32")
    e = L.Embedding(12, 4, mask_zero=True)(inp)
    a = L.LSTM(4, return_sequences=True)(e)
    b = L.SimpleRNN(4, return_sequences=True)(e)
    s = L.Add()([a, b])
    t = L.Concatenate(axis=1)([s, a])
    model = keras.Model(inp, [L.LSTM(3)(s), L.GRU(3)(t)])
    randomize(model, rng)
    ids = rng.integers(1, 12, size=(5, 7)).astype(np.int32)
    ids[~right_padded_mask(5, 7)] = 0
    check(model, ids, tmp_path)  # 3e-5: recurrent outputs, unit scale


@pytest.mark.parametrize(("axes", "normalize"), [(2, False), (2, True), ((1, 1), False)])
def test_dot(axes, normalize):
    rng = rng_for("dot", str(axes), normalize)
    inp = keras.Input((6, 3))
    a = L.LSTM(4, return_sequences=True)(inp)
    b = L.GRU(4, return_sequences=True)(inp)
    model = keras.Model(inp, L.Dot(axes=axes, normalize=normalize)([a, b]))
    randomize(model, rng)
    x = rng.normal(size=(2, 6, 3)).astype(np.float32)
    check(model, x)  # 3e-5 relative: sums of products of unit-scale outputs


def test_dot_vectors():
    rng = rng_for("dot vec")
    inp = keras.Input((6, 3))
    model = keras.Model(inp, L.Dot(axes=1)([L.LSTM(4)(inp), L.GRU(4)(inp)]))
    randomize(model, rng)
    check(model, rng.normal(size=(3, 6, 3)).astype(np.float32))  # 3e-5, unit scale


@pytest.mark.parametrize("key", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    ("cls", "options"),
    [
        ("Attention", {}),
        ("Attention", {"use_scale": True}),
        ("Attention", {"score_mode": "concat"}),
        ("Attention", {"score_mode": "concat", "use_scale": True}),
        ("AdditiveAttention", {}),
        ("AdditiveAttention", {"use_scale": True}),
    ],
)
def test_attention(cls, options, causal, key, tmp_path):
    rng = rng_for("attention", cls, str(options), causal, key)
    enc_in = keras.Input((7, 3))
    dec_in = keras.Input((5, 3))
    enc = L.LSTM(4, return_sequences=True)(enc_in)
    dec = L.GRU(4, return_sequences=True)(dec_in)
    inputs = [dec, enc, L.Dense(4)(enc)] if key else [dec, enc]
    att = getattr(L, cls)(**options)
    ctx = att(inputs, use_causal_mask=causal) if causal else att(inputs)
    model = keras.Model([enc_in, dec_in], L.Concatenate()([dec, ctx]))
    randomize(model, rng)
    x = [
        rng.normal(size=(2, 7, 3)).astype(np.float32),
        rng.normal(size=(2, 5, 3)).astype(np.float32),
    ]
    expected = model(x)
    assert_outputs(pylstm.from_keras(model)(x), expected)  # 3e-5: unit-scale values
    if options.get("use_scale") and not causal and not key:
        path = str(tmp_path / "att.keras")
        model.save(path)
        assert_outputs(pylstm.load(path)(x), expected)  # 3e-5


def test_attention_with_masks():
    """Masked value steps get no weight; masked query steps output zeros (Keras 3)."""
    rng = rng_for("attention masks")
    q_in = keras.Input((6,), dtype="int32")
    v_in = keras.Input((8,), dtype="int32")
    q = L.Embedding(10, 4, mask_zero=True)(q_in)
    v = L.LSTM(4, return_sequences=True)(L.Embedding(10, 4, mask_zero=True)(v_in))
    model = keras.Model([q_in, v_in], L.Attention(use_scale=True)([q, v]))
    randomize(model, rng)
    qi = rng.integers(1, 10, size=(5, 6)).astype(np.int32)
    vi = rng.integers(1, 10, size=(5, 8)).astype(np.int32)
    qi[~right_padded_mask(5, 6)] = 0
    vi[:, 5:] = 0
    vi[2, 1:] = 0
    try:
        expected = model([qi, vi])
    except RuntimeError:  # Keras 3.0 broadcasts the masks wrongly
        pytest.skip(
            f"Keras {keras.__version__} fails on Attention with masked inputs "
            "(a RuntimeError in its own call)"
        )
    assert_outputs(pylstm.from_keras(model)([qi, vi]), expected)  # 3e-5, unit scale


def test_identity_layers_at_inference(tmp_path):
    rng = rng_for("identity")
    model = seq_model(
        [
            L.SpatialDropout1D(0.3),
            L.GaussianNoise(0.5),
            L.LSTM(4, return_sequences=True),
            L.GaussianDropout(0.2),
            L.AlphaDropout(0.2),
            L.LSTM(3),
        ],
        6,
        3,
    )
    randomize(model, rng)
    check(model, rng.normal(size=(2, 6, 3)).astype(np.float32), tmp_path)  # 3e-5


def conv_lstm_forecaster(steps=24, features=3):
    """A Keras Conv1D-LSTM forecaster as people ship them."""
    return seq_model(
        [
            L.Conv1D(16, 3, padding="causal", activation="relu"),
            L.MaxPooling1D(2),
            L.BatchNormalization(),
            L.LSTM(12),
            L.Dropout(0.2),
            L.Dense(8, activation="relu"),
            L.Dense(1),
        ],
        steps,
        features,
    )


def test_conv_lstm_forecaster_saved_and_loaded(tmp_path):
    rng = rng_for("forecaster")
    model = conv_lstm_forecaster()
    randomize(model, rng)
    x = (rng.normal(size=(6, 24, 3)) * 2).astype(np.float32)
    check(model, x, tmp_path)  # 3e-5 relative: regression outputs of a few units
    weights = str(tmp_path / "f.weights.h5")
    model.save_weights(weights)
    got = pylstm.load(weights, config=model.to_json())(x)
    assert_outputs(got, model(x))  # 3e-5 relative


def test_streams_refuse_layers_that_mix_time_steps():
    model = pylstm.from_keras(conv_lstm_forecaster())
    with pytest.raises(pylstm.UnsupportedError, match="Conv1D"):
        model.stream(2)


def test_pointwise_layers_stream():
    """A kernel-1 Conv1D, normalization and identity layers read one step: chunks add up."""
    rng = rng_for("stream")
    model = seq_model(
        [
            L.Conv1D(5, 1, activation="tanh"),
            L.LayerNormalization(),
            L.GaussianNoise(0.1),
            L.LSTM(4, return_sequences=True),
            L.BatchNormalization(),
        ],
        None,
        3,
    )
    randomize(model, rng)
    x = rng.normal(size=(2, 9, 3)).astype(np.float32)
    ours = pylstm.from_keras(model)
    stream = ours.stream(2)
    chunks = np.concatenate([stream.step(x[:, :4]), stream.step(x[:, 4:])], axis=1)
    assert_outputs(chunks, model(x))  # 3e-5 relative


def test_merge_masks_follow_the_keras_version():
    """Keras 3 ORs the inputs' masks (None if one has none); tf.keras 2 ANDs those present."""
    from pylstm.runtime.ops.keras_around import Concatenate, Merge

    a = np.array([[True, True, False, False]])
    b = np.array([[True, False, True, False]])
    x = np.zeros((1, 4, 2), np.float32)
    _, (m3,) = Merge("add", "Add", 3).run_call([x, x], [a, b], {})
    _, (m2,) = Merge("add", "Add", 2).run_call([x, x], [a, b], {})
    np.testing.assert_array_equal(m3, a | b)
    np.testing.assert_array_equal(m2, a & b)
    assert Merge("add", "Add", 3).run_call([x, x], [a, None], {})[1][0] is None
    np.testing.assert_array_equal(Merge("add", "Add", 2).run_call([x, x], [a, None], {})[1][0], a)
    _, (c3,) = Concatenate("c", -1, 3).run_call([x, x], [a, b], {})
    _, (c2,) = Concatenate("c", -1, 2).run_call([x, x], [a, b], {})
    np.testing.assert_array_equal(c3, a | b)
    np.testing.assert_array_equal(c2, a & b)
