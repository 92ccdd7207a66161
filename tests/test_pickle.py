"""Every model and stream pickles (pickle, cloudpickle, copy.deepcopy) as its canonical weights
and options, and the copy gives bit-identical outputs (np.array_equal: the receiving side packs
the same float32 weights the same way, so no tolerance applies).

What a pickle may hold is checked opcode by opcode: classes (pylstm's, numpy's, builtins) and
the few reconstructor functions of pickle, numpy and :func:`pylstm.runtime.pickling.restore`; never a
function or lambda of a model. Its size stays within 1.1x the float32 weights' bytes.
"""

from __future__ import annotations

import copy
import io
import os
import pickle

import numpy as np
import pytest

import pylstm
from pylstm.runtime import pickling

cloudpickle = pytest.importorskip("cloudpickle")

PRECISIONS = ["fp32", "bf16", "int8"]
# The functions a pylstm pickle may name (everything else it names must be a class).
ALLOWED_FUNCTIONS = {
    ("pylstm.runtime.pickling", "restore"),
    ("copyreg", "_reconstructor"),
    ("copyreg", "__newobj__"),
    ("copyreg", "__newobj_ex__"),
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"),
    ("builtins", "getattr"),
}


def named_globals(data: bytes) -> set:
    """(module, name) of every global a pickle refers to (recorded while loading it)."""
    found = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            found.add((module, name))
            return super().find_class(module, name)

    Recorder(io.BytesIO(data)).load()
    return found


def check_no_code(data: bytes) -> None:
    import importlib

    for module, name in named_globals(data):
        obj = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
        if not isinstance(obj, type):
            assert (module, name) in ALLOWED_FUNCTIONS, f"the pickle names {module}.{name}"
        assert module.split(".")[0] in ("pylstm", "numpy", "builtins", "copyreg", "_codecs")


def weight_bytes(model, *, count=False) -> int:
    """Bytes of the float32 canonical weights of every engine reachable from ``model`` (with
    ``count``: the number of weight arrays)."""
    engines = []
    if isinstance(model, pylstm.TorchModel):
        engines = [model.engine]
    elif isinstance(model, pylstm.KerasModel):
        engines = [e for op in model.ops.values() for e in getattr(op, "engines", [])]
    elif isinstance(model, pylstm.OnnxModel):
        engines = [n.engine for n in model.recurrent_nodes]
    total = 0
    for engine in engines:
        for layer in engine.unpack():
            for d in layer.directions:
                for k in ("w", "r", "bias_w", "bias_r", "peephole", "proj"):
                    a = getattr(d, k)
                    if a is not None:
                        total += 1 if count else a.nbytes
    return total


# Pickle's framing of one array (class, shape, dtype), and of a whole model's options.
PER_ARRAY_BYTES = 200
FIXED_BYTES = 1024


def size_bound(model, other_bytes=0, other_arrays=0) -> float:
    """The most bytes a pickle of ``model`` may take: 1.1x the float32 weights (plus
    ``other_bytes`` of non-recurrent weights), and a fixed framing per array and per model,
    which only matters for the tiny models of these tests."""
    arrays = weight_bytes(model, count=True) + other_arrays
    return 1.1 * (weight_bytes(model) + other_bytes) + PER_ARRAY_BYTES * arrays + FIXED_BYTES


def roundtrips(obj):
    """``obj`` through pickle, cloudpickle and deepcopy."""
    data = pickle.dumps(obj)
    check_no_code(data)
    return {
        "pickle": pickle.loads(data),
        "cloudpickle": cloudpickle.loads(cloudpickle.dumps(obj)),
        "deepcopy": copy.deepcopy(obj),
    }


def assert_same(a, b, what=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k], what)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y, what)
    else:
        assert np.array_equal(np.asarray(a), np.asarray(b)), what


def saturating_layer(cell, I, H, rng, *, directions=1, **options):
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    k = 3.0 / np.sqrt(H)
    extra = options.pop("direction", {})
    dirs = []
    for j in range(directions):
        dirs.append(
            pylstm.Direction(
                w=rng.uniform(-k, k, (G * H, I)),
                r=rng.uniform(-k, k, (G * H, H)),
                bias_w=rng.uniform(-k, k, G * H),
                bias_r=rng.uniform(-k, k, G * H),
                reverse=j == 1,
                **extra,
            )
        )
    return pylstm.Layer(cell, dirs, **options)


# -- PyTorch-style models ------------------------------------------------------------------------
torch = pytest.importorskip("torch")


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize(
    "cell, options",
    [
        ("LSTM", {"num_layers": 2, "bidirectional": True}),
        ("LSTM", {"proj_size": 3, "batch_first": True}),
        ("GRU", {"num_layers": 2}),
        ("RNN", {"nonlinearity": "relu", "bidirectional": True}),
    ],
)
def test_torch_models(cell, options, precision):
    torch.manual_seed(0)
    module = getattr(torch.nn, cell)(6, 9, **options).eval()
    model = pylstm.from_torch(module, precision=precision)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 7, 6)).astype(np.float32) * 2
    lengths = [7, 3, 5, 1]
    if not model.batch_first:
        x = x.transpose(1, 0, 2).copy()
    expected = model(x, lengths=lengths)
    data = pickle.dumps(model)
    assert len(data) <= size_bound(model), (len(data), weight_bytes(model))
    for how, copied in roundtrips(model).items():
        assert copied.engine.precision == precision
        assert copied.engine.backend == model.engine.backend
        assert_same(copied(x, lengths=lengths), expected, how)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_pickle_size_of_a_real_model(precision):
    """A 2-layer LSTM with H=256 (3.2 MB of float32 weights): the pickle is within 1.1x of
    them, for every precision (bf16 and int8 models carry their float32 canonical weights)."""
    rng = np.random.default_rng(17)
    layers = [saturating_layer("lstm", 64, 256, rng), saturating_layer("lstm", 256, 256, rng)]
    model = pylstm.from_arrays(layers, precision=precision)
    data = pickle.dumps(model)
    assert weight_bytes(model) <= len(data) <= 1.1 * weight_bytes(model)
    x = rng.normal(size=(5, 2, 64)).astype(np.float32)
    assert_same(pickle.loads(data)(x), model(x))


def test_from_arrays_every_option():
    rng = np.random.default_rng(2)
    H = 5
    peephole_lstm = saturating_layer(
        "lstm",
        4,
        H,
        rng,
        directions=2,
        clip=2.5,
        direction={
            "peephole": rng.normal(size=(3, H)),
            "activations": [("hardsigmoid", 0.2, 0.5), "softsign", ("scaledtanh", 1.5, 0.7)],
        },
    )
    models = [
        [peephole_lstm],
        [saturating_layer("gru", 4, H, rng, linear_before_reset=False)],
        [saturating_layer("lstm", 4, H, rng, input_forget=True, masked_output="hold")],
    ]
    x = rng.normal(size=(6, 3, 4)).astype(np.float32)
    for layers in models:
        for precision in PRECISIONS:
            model = pylstm.from_arrays(layers, precision=precision)
            expected = model(x, lengths=[6, 2, 4])
            for how, copied in roundtrips(model).items():
                assert_same(copied(x, lengths=[6, 2, 4]), expected, f"{precision} {how}")


def test_loaded_file_pickles_without_its_file(tmp_path):
    torch.manual_seed(3)
    module = torch.nn.GRU(3, 4, num_layers=2)
    path = tmp_path / "gru.pt"
    torch.save(module.state_dict(), path)
    model = pylstm.load(path)
    data = pickle.dumps(model)
    path.unlink()
    copied = pickle.loads(data)
    x = np.random.default_rng(4).normal(size=(5, 2, 3)).astype(np.float32)
    assert_same(copied(x), model(x))


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_torch_stream_carries_its_state(cell):
    torch.manual_seed(5)
    model = pylstm.from_torch(getattr(torch.nn, cell)(3, 6, num_layers=2))
    rng = np.random.default_rng(6)
    x = rng.normal(size=(9, 2, 3)).astype(np.float32)
    stream = model.stream(2)
    stream.step(x[:4])
    copies = roundtrips(stream)
    expected_state = stream.state
    expected = stream.step(x[4:])
    for how, copied in copies.items():
        assert_same(copied.state, expected_state, how)
        assert_same(copied.step(x[4:]), expected, how)
        assert_same(copied.state, stream.state, how)


def test_model_and_stream_pickled_together_share_one_model():
    model = pylstm.from_arrays([saturating_layer("lstm", 3, 4, np.random.default_rng(7))])
    stream = model.stream(1)
    m2, s2 = pickle.loads(pickle.dumps((model, stream)))
    assert s2._model is m2


def test_models_pickle_after_calls_from_threads():
    from concurrent.futures import ThreadPoolExecutor

    model = pylstm.from_arrays([saturating_layer("gru", 3, 8, np.random.default_rng(8))])
    x = np.random.default_rng(9).normal(size=(5, 4, 3)).astype(np.float32)
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: pickle.loads(pickle.dumps(model))(x)[0], range(8)))
    for y in outs:
        assert_same(y, model(x)[0])


# -- devices and versions ------------------------------------------------------------------------
def test_cuda_model_without_a_device_is_a_device_error():
    model = pylstm.from_arrays([saturating_layer("lstm", 3, 4, np.random.default_rng(10))])
    _, (kind, version, state) = model.engine.__reduce__()
    if pylstm.info()["cuda_devices"]:
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(pylstm.DeviceError, match="pickled on cuda:0"):
        pickling.restore(kind, version, {**state, "device": "cuda:0"})


@pytest.mark.skipif(not pylstm.info()["cuda_devices"], reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_models(precision):
    torch.manual_seed(11)
    model = pylstm.from_torch(
        torch.nn.LSTM(5, 16, num_layers=2), device="cuda", precision=precision
    )
    x = np.random.default_rng(12).normal(size=(8, 3, 5)).astype(np.float32)
    expected = model(x)
    stream = model.stream(3)
    stream.step(x[:3])
    for how, copied in roundtrips(model).items():
        assert copied.device == "cuda:0"
        assert_same(copied(x), expected, how)
    copies = roundtrips(stream)
    expected_rest = stream.step(x[3:])
    for how, copied in copies.items():
        assert_same(copied.step(x[3:]), expected_rest, how)


def test_other_pickle_format_is_refused():
    with pytest.raises(ValueError, match="pickle format is 99"):
        pickling.restore("TorchModel", 99, {})
    with pytest.raises(ValueError, match="unknown kind"):
        pickling.restore("os.system", pickling.PICKLE_FORMAT, {})


# -- ONNX ---------------------------------------------------------------------------------------
def _onnx_model():
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(13)
    I, H, O = 4, 6, 3
    k = 3.0 / np.sqrt(H)
    inits = [
        numpy_helper.from_array(rng.uniform(-k, k, (1, 4 * H, I)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.uniform(-k, k, (1, 4 * H, H)).astype(np.float32), "R"),
        numpy_helper.from_array(rng.uniform(-k, k, (1, 8 * H)).astype(np.float32), "B"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
        numpy_helper.from_array(rng.normal(size=(H, O)).astype(np.float32), "head"),
    ]
    nodes = [
        helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Y_h", "Y_c"], hidden_size=H),
        helper.make_node("Squeeze", ["Y", "axes"], ["Ys"]),
        helper.make_node("MatMul", ["Ys", "head"], ["P"]),
        helper.make_node("Tanh", ["P"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "lstm_head",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["t", "b", I])],
        [
            helper.make_tensor_value_info("out", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, None),
        ],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    return proto


@pytest.mark.parametrize("precision", PRECISIONS)
def test_onnx_model_and_stream(precision):
    proto = _onnx_model()
    model = pylstm.from_onnx(proto.SerializeToString(), precision=precision)
    x = np.random.default_rng(14).normal(size=(8, 2, 4)).astype(np.float32)
    expected = model.run(None, {"X": x})
    data = pickle.dumps(model)
    assert len(data) <= size_bound(model, 6 * 3 * 4, 2)
    stream = model.stream(2)
    stream.step(x[:3])
    for how, copied in roundtrips(model).items():
        assert_same(copied.run(None, {"X": x}), expected, how)
        assert copied.device == "cpu"
    copies = roundtrips(stream)
    expected_rest = stream.step(x[3:])
    for how, copied in copies.items():
        assert_same(copied.step(x[3:]), expected_rest, how)


# -- Keras --------------------------------------------------------------------------------------
def _keras():
    from test_keras_common import import_keras, saturate

    return import_keras(), saturate


def test_keras_models_and_streams():
    keras, saturate = _keras()
    L = keras.layers
    rng = np.random.default_rng(15)
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            L.Embedding(20, 5, mask_zero=True),
            L.Bidirectional(L.GRU(6, return_sequences=True)),
            L.LSTM(7, return_sequences=True, recurrent_activation="hard_sigmoid"),
            L.TimeDistributed(L.Dense(4, activation="softmax")),
            L.Dense(3, activation="hard_sigmoid"),
        ]
    )
    ids = rng.integers(1, 20, size=(3, 9))
    ids[1, 6:] = 0
    model(ids)
    saturate(model.layers, rng)
    for precision in PRECISIONS:
        ours = pylstm.from_keras(model, precision=precision)
        expected = ours(ids)
        data = pickle.dumps(ours)
        table_and_dense = (20 * 5 + 7 * 4 + 4 + 4 * 3 + 3) * 4
        # and each layer's Keras config (a few hundred bytes of options, kept as Keras wrote it)
        configs = len(pickle.dumps(ours.spec))
        assert len(data) <= size_bound(ours, table_and_dense, 5) + configs
        for how, copied in roundtrips(ours).items():
            assert_same(copied(ids), expected, f"{precision} {how}")

    streaming = keras.Sequential(
        [keras.Input((None, 3)), L.Masking(), L.LSTM(5, return_sequences=True, stateful=False)]
    )
    x = rng.normal(size=(2, 8, 3)).astype(np.float32)
    streaming(x)
    saturate(streaming.layers, rng)
    ours = pylstm.from_keras(streaming)
    stream = ours.stream(2)
    stream.step(x[:, :5])
    copies = roundtrips(stream)
    expected = stream.step(x[:, 5:])
    for how, copied in copies.items():
        assert_same(copied.step(x[:, 5:]), expected, how)


def test_keras_stateful_state_travels():
    keras, saturate = _keras()
    L = keras.layers
    rng = np.random.default_rng(16)
    layer = L.GRU(4, return_sequences=True, stateful=True)
    x = rng.normal(size=(2, 5, 3)).astype(np.float32)
    layer(x)
    saturate([layer], rng)
    ours = pylstm.from_keras(layer)
    ours(x)  # the state now holds the first call's
    copied = pickle.loads(pickle.dumps(ours))
    assert_same(copied(x), ours(x))


@pytest.mark.parametrize(
    "name", ["bidirectional_embedding", "functional_states", "hard_sigmoid_v3", "stateful"]
)
def test_keras_files(name, tmp_path):
    """Models read from tf.keras 2 / Keras 3 files (no Keras needed) pickle like live ones."""
    pytest.importorskip("h5py")
    from test_keras_common import unpack_fixture

    path = unpack_fixture(name, str(tmp_path))
    model = pylstm.load(path)
    x = np.load(f"{os.path.dirname(__file__)}/fixtures/keras/{name}.npz")["x"]
    os.remove(path)  # the model needs its file no more
    copies = roundtrips(model)  # before any call: a stateful model's state is part of it
    expected = model(x)
    for how, copied in copies.items():
        assert_same(copied(x), expected, how)
    if model.stateful:  # the state after a call travels too
        again = pickle.loads(pickle.dumps(model))
        assert_same(again(x), model(x))
