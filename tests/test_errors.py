"""Bad inputs raise the errors README "Errors" lists, with messages that name the problem.

README "Errors": wrong shape, size, length or value -> ValueError naming the argument, what was expected and
what came; wrong type or dtype -> TypeError; unsupported layer -> NotImplementedError naming it;
asking for a device this build cannot provide -> pylstm.DeviceError (a RuntimeError) saying why.
After every error the model must still work (no corrupted state).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers import make_module

import pylstm

I, H, L, B, T = 4, 6, 2, 3, 5


@pytest.fixture(scope="module")
def lstm():
    return pylstm.from_torch(make_module("lstm", I, H, num_layers=L, rng=np.random.default_rng(1)))


@pytest.fixture(scope="module")
def gru():
    return pylstm.from_torch(make_module("gru", I, H, num_layers=L, rng=np.random.default_rng(2)))


@pytest.fixture(scope="module")
def lstm_batch_first():
    return pylstm.from_torch(
        make_module("lstm", I, H, num_layers=L, batch_first=True, rng=np.random.default_rng(3))
    )


def x3(shape=(T, B, I), dtype=np.float32):
    return np.random.default_rng(0).normal(size=shape).astype(dtype)


def state(shape=(L, B, H)):
    return np.random.default_rng(1).uniform(-1, 1, size=shape).astype(np.float32)


# -- x ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(T, B, I + 1), (T, B, I - 1), (T, B, 1), (T, I + 3)])
def test_wrong_input_feature_size(lstm, shape):
    """Wrong number of input features: ValueError naming x, the expected size and the shape."""
    with pytest.raises(ValueError, match=rf"(?s)x.*{I}.*{shape[-1]}"):
        lstm(x3(shape))
    lstm(x3())  # the model still works


def test_wrong_feature_size_batch_first(lstm_batch_first):
    """The same check for a batch_first model; the message quotes the shape as given."""
    with pytest.raises(ValueError, match=r"(?s)x.*4.*\(3, 5, 7\)"):
        lstm_batch_first(x3((B, T, 7)))


@pytest.mark.parametrize("shape", [(I,), (1, T, B, I), (1, 1, T, B, I)])
def test_wrong_ndim(lstm, shape):
    """1-D, 4-D and 5-D inputs: ValueError naming x, saying 3-D/2-D is expected, quoting the
    shape."""
    with pytest.raises(ValueError, match=r"(?s)x.*3-D.*" + re_shape(shape)):
        lstm(x3(shape))


def test_scalar_input(lstm):
    """A 0-D input is a ValueError (not a crash)."""
    with pytest.raises(ValueError, match=r"x"):
        lstm(np.float32(1.0))


def re_shape(shape):
    return r"\(" + r", ".join(str(s) for s in shape) + (r",\)" if len(shape) == 1 else r"\)")


@pytest.mark.parametrize("shape", [(0, B, I), (0, I)])
def test_zero_steps(lstm, shape):
    """T=0 (batched or unbatched): ValueError naming the sequence length."""
    with pytest.raises(ValueError, match=r"(?s)x.*(length|steps).*" + re_shape(shape)):
        lstm(np.zeros(shape, np.float32))


def test_zero_steps_batch_first(lstm_batch_first):
    with pytest.raises(ValueError, match=r"(?s)x.*(length|steps)"):
        lstm_batch_first(np.zeros((B, 0, I), np.float32))


@pytest.mark.parametrize(
    "dtype",
    [
        np.int8,
        np.int32,
        np.int64,
        np.uint8,
        np.bool_,
        np.complex64,
        np.complex128,
        object,
        "U3",
        "S3",
    ],
    ids=lambda d: np.dtype(d).name,
)
def test_non_float_dtypes(lstm, dtype):
    """Integer, bool, complex, string and object arrays: TypeError naming x and the dtype."""
    x = np.zeros((T, B, I), dtype=dtype)
    with pytest.raises(TypeError, match=r"(?s)x.*" + re.escape(str(np.dtype(dtype)))):
        lstm(x)


@pytest.mark.parametrize(
    "value",
    ["hello", None, [[["a"] * I] * B] * T, {"x": 1}],
    ids=["str", "None", "str-list", "dict"],
)
def test_non_array_inputs(lstm, value):
    """Strings, None, lists of strings and other objects: TypeError naming x."""
    with pytest.raises(TypeError, match="x"):
        lstm(value)


def test_ragged_list(lstm):
    """A ragged nested list: TypeError naming x (not a numpy internals crash)."""
    ragged = [[[1.0] * I] * B, [[1.0] * I] * (B - 1)]
    with pytest.raises(TypeError, match="x"):
        lstm(ragged)


def test_nested_float_lists_work(lstm):
    """Plain nested lists of floats are array-likes and accepted."""
    y, _ = lstm(x3().tolist())
    assert y.shape == (T, B, H)


# -- hx -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "which,shape",
    [
        ("h_0", (L, B + 1, H)),  # batch
        ("h_0", (L + 1, B, H)),  # layers
        ("h_0", (L, B, H + 1)),  # hidden
        ("h_0", (B, H)),  # 2-D for batched input
        ("c_0", (L, B - 1, H)),
        ("c_0", (1, B, H)),
        ("c_0", (L, B, H - 1)),
    ],
)
def test_lstm_hx_wrong_shape(lstm, which, shape):
    """Wrong h_0 / c_0 shapes: ValueError naming h_0 or c_0, the expected shape and the one
    that came."""
    h0, c0 = state(), state()
    if which == "h_0":
        h0 = state(shape)
    else:
        c0 = state(shape)
    with pytest.raises(ValueError, match=rf"(?s){which}.*{re_shape((L, B, H))}.*{re_shape(shape)}"):
        lstm(x3(), (h0, c0))


@pytest.mark.parametrize("shape", [(L, B + 2, H), (L - 1, B, H), (L, B, H - 2), (L, H)])
def test_gru_hx_wrong_shape(gru, shape):
    """Wrong GRU h_0 shapes: ValueError naming h_0 and both shapes."""
    with pytest.raises(ValueError, match=rf"(?s)h_0.*{re_shape((L, B, H))}.*{re_shape(shape)}"):
        gru(x3(), state(shape))


def test_unbatched_hx_must_be_2d(gru):
    """For unbatched 2-D input, h_0 is [layers, H]; a 3-D h_0 is a ValueError."""
    with pytest.raises(ValueError, match=rf"(?s)h_0.*{re_shape((L, H))}"):
        gru(x3((T, I)), state((L, 1, H)))


@pytest.mark.parametrize("hx", ["array", "list1", "tuple3"])
def test_lstm_hx_not_a_pair(lstm, hx):
    """LSTM hx must be the pair (h_0, c_0): one array or a tuple of another length is a
    TypeError that says so."""
    value = {"array": state(), "list1": (state(),), "tuple3": (state(), state(), state())}[hx]
    with pytest.raises(TypeError, match=r"(?s)hx.*LSTM.*tuple"):
        lstm(x3(), value)


def test_gru_hx_given_as_tuple(gru):
    """GRU hx is one array: a tuple is a TypeError naming GRU."""
    with pytest.raises(TypeError, match=r"(?s)hx.*GRU.*tuple"):
        gru(x3(), (state(), state()))


def test_rnn_hx_given_as_tuple():
    model = pylstm.from_torch(make_module("rnn_tanh", I, H, rng=np.random.default_rng(4)))
    with pytest.raises(TypeError, match=r"(?s)hx.*RNN.*tuple"):
        model(x3(), (state((1, B, H)), state((1, B, H))))


def test_hx_integer_dtype(gru):
    """An integer h_0 is a TypeError naming h_0."""
    with pytest.raises(TypeError, match="h_0"):
        gru(x3(), np.zeros((L, B, H), np.int64))


# -- lengths ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lengths", [[T, T], [T] * (B + 1), [[T] * B], T], ids=["too-few", "too-many", "2-D", "scalar"]
)
def test_lengths_wrong_count(gru, lengths):
    """lengths must hold one int per sequence: ValueError naming lengths and the count."""
    with pytest.raises(ValueError, match=rf"(?s)lengths.*{B}"):
        gru(x3(), lengths=lengths)


@pytest.mark.parametrize(
    "lengths", [[0, T, T], [T, T + 1, 1], [-1, 2, 2]], ids=["zero", "over-T", "negative"]
)
def test_lengths_out_of_range(gru, lengths):
    """Each length must be in 1..T: ValueError naming lengths and T."""
    with pytest.raises(ValueError, match=rf"(?s)lengths.*{T}"):
        gru(x3(), lengths=lengths)


@pytest.mark.parametrize(
    "lengths",
    [[1.0, 2.0, 3.0], np.array([1.5, 2, 3]), np.array([2, 2, 2], np.float32), [True] * B, "abc"],
    ids=["float-list", "float-array", "float32", "bool", "str"],
)
def test_lengths_not_integers(gru, lengths):
    """Non-integer lengths: TypeError naming lengths."""
    with pytest.raises(TypeError, match="lengths"):
        gru(x3(), lengths=lengths)


def test_lengths_with_unbatched_input(gru):
    """lengths with 2-D (unbatched) input: ValueError naming lengths."""
    with pytest.raises(ValueError, match="lengths"):
        gru(x3((T, I)), lengths=[T])


# -- runtime ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -1])
def test_set_num_threads_below_one(n):
    """set_num_threads(n < 1): ValueError naming num_threads; the setting is unchanged."""
    before = pylstm.get_num_threads()
    with pytest.raises(ValueError, match="num_threads"):
        pylstm.set_num_threads(n)
    assert pylstm.get_num_threads() == before


@pytest.mark.parametrize("n", [1.5, 2.0, "2", None, True], ids=repr)
def test_set_num_threads_not_an_int(n):
    """set_num_threads with a float, string, None or bool: TypeError; setting unchanged."""
    before = pylstm.get_num_threads()
    with pytest.raises(TypeError, match="num_threads"):
        pylstm.set_num_threads(n)
    assert pylstm.get_num_threads() == before


def test_info_keys():
    """pylstm.info() has at least version, simd, num_threads, cuda_compiled, cuda_devices."""
    info = pylstm.info()
    assert info["version"] == pylstm.__version__
    assert isinstance(info["version"], str) and info["version"]
    assert info["simd"] in pylstm._core.supported_isas()
    assert isinstance(info["num_threads"], int) and info["num_threads"] == pylstm.get_num_threads()
    assert isinstance(info["cuda_compiled"], bool)
    assert isinstance(info["cuda_devices"], list)
    assert all(isinstance(name, str) for name in info["cuda_devices"])
    if not info["cuda_compiled"]:
        assert info["cuda_devices"] == []


def test_info_simd_follows_env(monkeypatch):
    """info()['simd'] reports PYLSTM_SIMD when set to an available instruction set."""
    for isa in pylstm._core.supported_isas():
        monkeypatch.setenv("PYLSTM_SIMD", isa)
        assert pylstm.info()["simd"] == isa


def test_unknown_simd_env(monkeypatch):
    """An instruction set this CPU/build lacks in PYLSTM_SIMD: building a model is a
    DeviceError naming the variable and listing the available ones."""
    monkeypatch.setenv("PYLSTM_SIMD", "sse9000")
    module = make_module("gru", I, H, rng=np.random.default_rng(5))
    with pytest.raises(pylstm.DeviceError, match=r"(?s)PYLSTM_SIMD.*generic"):
        pylstm.from_torch(module)


# -- from_torch ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "factory,name",
    [
        (lambda: torch.nn.Linear(3, 4), "Linear"),
        (lambda: torch.nn.Sequential(torch.nn.LSTM(3, 4)), "Sequential"),
        (
            lambda: torch.nn.Transformer(
                d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=8
            ),
            "Transformer",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_from_torch_non_rnn_module(factory, name):
    """from_torch with anything but LSTM/GRU/RNN: NotImplementedError naming the class."""
    with pytest.raises(NotImplementedError, match=rf"\b{name}\b"):
        pylstm.from_torch(factory())


def test_from_torch_not_a_module():
    with pytest.raises((NotImplementedError, TypeError), match="str"):
        pylstm.from_torch("lstm")


@pytest.mark.parametrize("param", ["weight_ih_l0", "weight_hh_l1", "bias_hh_l1", "weight_hr_l1"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_from_torch_nonfinite_weights(param, bad):
    """NaN or infinite weights are rejected at build time with a ValueError that says NaN or
    infinity (never a silent NaN output)."""
    module = make_module(
        "lstm",
        I,
        H,
        num_layers=2,
        proj_size=3 if "hr" in param else 0,
        rng=np.random.default_rng(6),
    )
    with torch.no_grad():
        getattr(module, param).view(-1)[1] = float(bad)
    with pytest.raises(ValueError, match=r"(?i)nan|inf"):
        pylstm.from_torch(module)


# -- devices ------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "CUDA"])
def test_cuda_where_it_cannot_work(device):
    """device='cuda' where CUDA cannot work -- a build without the CUDA backend, or no usable GPU:
    pylstm.DeviceError (a RuntimeError) whose message says which."""
    if pylstm.info()["cuda_devices"]:
        pytest.skip("a CUDA device is available here (tests/test_cuda_*.py cover it)")
    assert issubclass(pylstm.DeviceError, RuntimeError)
    module = make_module("lstm", I, H, rng=np.random.default_rng(7))
    why = "built without" if not pylstm.info()["cuda_compiled"] else "(driver|device)"
    with pytest.raises(pylstm.DeviceError, match=rf"(?si){device}.*{why}"):
        pylstm.from_torch(module, device=device)
    layer = pylstm.Layer("gru", [pylstm.Direction(w=np.ones((3 * H, I)), r=np.ones((3 * H, H)))])
    with pytest.raises(RuntimeError, match="CUDA"):
        pylstm.from_arrays([layer], device=device)


@pytest.mark.parametrize("device", ["tpu", "gpu", "", "cpu:1x"])
def test_unknown_device(device):
    """An unknown device name: ValueError naming device and quoting it."""
    module = make_module("lstm", I, H, rng=np.random.default_rng(8))
    with pytest.raises(ValueError, match=r"device"):
        pylstm.from_torch(module, device=device)


def test_device_not_a_string():
    module = make_module("lstm", I, H, rng=np.random.default_rng(9))
    with pytest.raises(TypeError, match="device"):
        pylstm.from_torch(module, device=0)


# -- from_arrays --------------------------------------------------------------------------------

RNG = np.random.default_rng(10)
W = RNG.normal(size=(4 * H, I))
R = RNG.normal(size=(4 * H, H))
BIAS = RNG.normal(size=4 * H)


def lstm_layer(**overrides):
    kwargs = {"w": W, "r": R}
    layer_kwargs = {k: overrides.pop(k) for k in ("gate_order", "clip") if k in overrides}
    kwargs.update(overrides)
    return pylstm.Layer("lstm", [pylstm.Direction(**kwargs)], **layer_kwargs)


@pytest.mark.parametrize(
    "overrides,pattern",
    [
        ({"r": R[:, :4]}, r"r.*\(24, 6\).*\(24, 4\)"),
        ({"r": R[:20]}, r"r.*\(24, 6\).*\(20, 6\)"),
        ({"w": W[:22]}, r"w.*4\*hidden_size.*\(22, 4\)"),
        ({"bias_w": BIAS[:23], "bias_r": BIAS}, r"bias_w.*\(24,\).*\(23,\)"),
        ({"bias_w": BIAS, "bias_r": BIAS[:3]}, r"bias_r.*\(24,\).*\(3,\)"),
        ({"bias_w": BIAS}, r"bias_w.*bias_r"),
        ({"peephole": np.ones((3, 5))}, r"peephole.*\(18,\).*\(15,\)"),
        ({"r": R[:, :2], "proj": np.ones((2, 5))}, r"proj.*\(2, 6\).*\(2, 5\)"),
    ],
    ids=["r-cols", "r-rows", "w-rows", "bias_w", "bias_r", "one-bias", "peephole", "proj"],
)
def test_from_arrays_mismatched_shapes(overrides, pattern):
    """Arrays whose shapes disagree: ValueError naming the array and quoting the expected and
    the actual shape."""
    with pytest.raises(ValueError, match=r"(?s)" + pattern):
        pylstm.from_arrays([lstm_layer(**overrides)])


def test_from_arrays_layers_do_not_stack():
    """A second layer whose input size is not the first layer's output: ValueError naming both
    sizes."""
    with pytest.raises(ValueError, match=rf"(?s)layers\[1\].*{I}.*{H}"):
        pylstm.from_arrays([lstm_layer(), lstm_layer()])


def test_from_arrays_wrong_cell_for_weights():
    """GRU with LSTM-sized (4*H-row) weights that are not a multiple of 3 rows: ValueError."""
    with pytest.raises(ValueError, match=r"(?s)w.*3\*hidden_size"):
        pylstm.from_arrays([pylstm.Layer("gru", [pylstm.Direction(w=W[:22], r=R[:22])])])


@pytest.mark.parametrize("name", ["bogus", "softmax", "swishy", ""])
def test_unknown_activation_name(name):
    """Unknown activation names: ValueError quoting the name and listing the known ones."""
    with pytest.raises(ValueError, match=rf"(?s)activation.*'{name}'.*sigmoid"):
        pylstm.from_arrays([lstm_layer(activations=("sigmoid", name, "tanh"))])
    with pytest.raises(ValueError, match=rf"'{name}'"):
        pylstm.Activation(name)


def test_wrong_number_of_activations():
    with pytest.raises(ValueError, match=r"(?s)LSTM.*3 activations.*2"):
        pylstm.from_arrays([lstm_layer(activations=("sigmoid", "tanh"))])


def test_bad_activation_type():
    with pytest.raises(TypeError, match="activation"):
        pylstm.from_arrays([lstm_layer(activations=("sigmoid", 3, "tanh"))])


@pytest.mark.parametrize("order", ["ifgx", "ifg", "iifo"])
def test_bad_gate_order(order):
    """gate_order that is not a permutation of the cell's gates: ValueError quoting it."""
    with pytest.raises(ValueError, match=rf"gate_order '{order}'"):
        lstm_layer(gate_order=order)


def test_unknown_cell():
    with pytest.raises(ValueError, match=r"(?s)cell.*'conv'"):
        pylstm.Layer("conv", [pylstm.Direction(w=W, r=R)])


def test_complex_weights():
    """Complex weights: TypeError naming the array and the dtype."""
    with pytest.raises(TypeError, match=r"(?s)w.*complex"):
        lstm_layer(w=W.astype(np.complex128))


@pytest.mark.parametrize("field", ["w", "r", "bias_w", "proj"])
def test_from_arrays_nonfinite_weights(field):
    """NaN/inf in any array: ValueError naming the array and saying NaN or infinity."""
    arrays = {"w": W.copy(), "r": R.copy(), "bias_w": BIAS.copy(), "bias_r": BIAS.copy()}
    if field == "proj":
        arrays["r"] = R[:, :3].copy()
        arrays["proj"] = np.ones((3, H))
    arrays[field].reshape(-1)[2] = np.nan
    with pytest.raises(ValueError, match=rf"(?s){field}.*NaN"):
        lstm_layer(**arrays)


def test_from_arrays_not_layers():
    with pytest.raises(TypeError, match=r"layers\[0\]"):
        pylstm.from_arrays(["lstm"])
    with pytest.raises(ValueError, match="layer"):
        pylstm.from_arrays([])
