"""The C API (pylstm/capi.pxd, pylstm/include/pylstm_capi.h), used as an extension uses it: a
Cython extension (``cimport pylstm.capi``) and a plain C extension (the header and the capsule,
pthreads) are built at test time (tests/capi_ext/) and run models and streams without the GIL
from several threads.

Tolerance: 0 (bit-identical). The C API hands the same buffers, strides, mask and states to the
same engine as the Python API does, and the engine's arithmetic does not depend on the calling
thread; any difference would be a bug of the boundary, not rounding.
"""

from __future__ import annotations

import gc
import gzip
import os
import re
import shutil
import sys
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "capi_ext"))
from helpers import make_module

import build as capi_build
import pylstm

THREADS = 4
README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def readme_example() -> str:
    """The ```cython block of README.md's "From Cython and C" section (lstm_demo.pyx)."""
    with open(README, encoding="utf-8") as f:
        section = f.read().split("## From Cython and C", 1)[1]
    return re.search(r"^```cython\n(.*?)^```", section, re.S | re.M).group(1)


@pytest.fixture(scope="module")
def ext(tmp_path_factory):
    """{name: module}: the Cython and the C test extensions and README's example, built once
    (one setuptools run) for this module."""
    why = capi_build.missing_tools()
    if why:
        pytest.skip(f"cannot build the C API test extensions: {why}")
    return capi_build.build(
        tmp_path_factory.mktemp("capi_ext"), extra_pyx={"lstm_demo": readme_example()}
    )


@pytest.fixture(scope="module")
def demo(ext):
    return ext["capi_demo"]


@pytest.fixture(scope="module")
def cdemo(ext):
    return ext["capi_cdemo"]


def torch_model(cell, seed=0, input_size=6, hidden_size=9, **kwargs):
    module = make_module(cell, input_size, hidden_size, rng=np.random.default_rng(seed), **kwargs)
    return pylstm.from_torch(module)


def sequence(model, T, B, seed=1):
    """Random input [T, B, I] ([B, T, I] for batch-first models), float32, saturating gates."""
    rng = np.random.default_rng(seed)
    shape = (B, T, model.input_size) if model.batch_first else (T, B, model.input_size)
    return (rng.standard_normal(shape) * 2).astype(np.float32)


def time_major(a, batch_first):
    return a.transpose(1, 0, 2) if batch_first else a


# -- the package: files and capsule -------------------------------------------------------------


def test_headers_and_capsule_are_shipped():
    include = pylstm.get_include()
    assert os.path.isfile(os.path.join(include, "pylstm_capi.h"))
    assert os.path.isfile(os.path.join(os.path.dirname(pylstm.__file__), "capi.pxd"))
    capsule = pylstm._core._C_API
    assert type(capsule).__name__ == "PyCapsule"
    assert "pylstm._core._C_API" in repr(capsule)


def test_readme_example(ext):
    """README's lstm_demo.pyx builds and gives what the Python API gives."""
    lstm_demo = ext["lstm_demo"]
    model = torch_model("lstm", num_layers=2)
    x = sequence(model, 6, 3)
    y = np.empty((6, 3, model.hidden_size), np.float32)
    lstm_demo.forward(model, x, y)
    np.testing.assert_array_equal(y, model(x)[0])
    stream = model.stream(3)
    lstm_demo.step_each(model.stream(3), x, y)
    np.testing.assert_array_equal(y, np.stack([stream.step(x[t]) for t in range(6)]))
    with pytest.raises(RuntimeError, match="pylstm error 1: stream_step: expected steps >= 0"):
        lstm_demo.step_each(model.stream(2), x, y)


# -- models ---------------------------------------------------------------------------------

FORWARD_CASES = {
    "lstm-2layers-hx": ("lstm", {"num_layers": 2}, False, True),
    "gru-bidir-batchfirst-lengths": (
        "gru",
        {"bidirectional": True, "batch_first": True},
        True,
        True,
    ),
    "lstm-proj-batchfirst-lengths": (
        "lstm",
        {"proj_size": 4, "num_layers": 2, "batch_first": True},
        True,
        False,
    ),
    "rnn-relu-bidir": ("rnn_relu", {"bidirectional": True, "scale": 1.0}, False, False),
}


@pytest.mark.parametrize("case", list(FORWARD_CASES))
def test_forward_equals_model_call(demo, case):
    cell, kwargs, with_lengths, with_hx = FORWARD_CASES[case]
    model = torch_model(cell, **kwargs)
    T, B = 7, 5
    x = sequence(model, T, B)
    rng = np.random.default_rng(2)
    lengths = np.array([7, 1, 4, 7, 3], np.int64) if with_lengths else None
    h_shape, c_shape = model._state_shapes(B)
    lstm = model.cell == "lstm"
    h0 = rng.standard_normal(h_shape).astype(np.float32) if with_hx else None
    c0 = rng.standard_normal(c_shape).astype(np.float32) if with_hx and lstm else None
    hx = None if not with_hx else ((h0, c0) if lstm else h0)
    ref_y, ref_state = model(x, hx, lengths=lengths)
    ref_h, ref_c = ref_state if lstm else (ref_state, None)

    handle = demo.Model(model)
    sizes = handle.sizes
    assert sizes["input_size"] == model.input_size
    assert sizes["output_size"] == ref_y.shape[-1]
    assert sizes["h_size"] * B == ref_h.size
    assert sizes["c_size"] * B == (ref_c.size if lstm else 0)
    assert sizes["gil_free"] == 1

    y = np.full_like(ref_y, np.nan)  # the caller's layout: batch-first models give [B, T, O]
    h_n = np.full(ref_h.size, np.nan, np.float32)
    c_n = np.full(ref_c.size, np.nan, np.float32) if lstm else None
    handle.forward(
        time_major(x, model.batch_first),
        time_major(y, model.batch_first),
        lengths,
        None if h0 is None else h0.ravel(),
        None if c0 is None else c0.ravel(),
        h_n,
        c_n,
    )
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(h_n.reshape(ref_h.shape), ref_h)
    if lstm:
        np.testing.assert_array_equal(c_n.reshape(ref_c.shape), ref_c)


def test_forward_strided_input_and_output(demo):
    """x a view with gaps between rows, y written into a larger buffer: strides honoured."""
    model = torch_model("lstm")
    big = sequence(model, 9, 8)
    x = big[1:8:2, ::3]  # [4, 3, I], strides (2*8*I, 3*I)
    ref, _ = model(np.ascontiguousarray(x))
    out = np.full((4, 3, 2 * model.hidden_size), np.nan, np.float32)
    demo.Model(model).forward(x, out[:, :, : model.hidden_size])
    np.testing.assert_array_equal(out[:, :, : model.hidden_size], ref)
    assert np.isnan(out[:, :, model.hidden_size :]).all()  # nothing written past the rows


def test_forward_from_python_threads_without_gil(demo):
    """One handle, THREADS Python threads each running forwards inside `with nogil`."""
    model = torch_model("lstm", num_layers=2, hidden_size=32)
    x = sequence(model, 20, 3)
    ref, _ = model(x)
    handle = demo.Model(model)
    outs = [np.empty_like(ref) for _ in range(THREADS)]
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda y: handle.forward(x, y, repeat=25), outs))
    for y in outs:
        np.testing.assert_array_equal(y, ref)


def test_forward_from_pthreads_in_c(cdemo):
    """The C extension: THREADS pthreads share one model (a handle each), the GIL released."""
    model = torch_model("gru", num_layers=2)
    T, B = 11, 4
    xs = [sequence(model, T, B, seed=k) for k in range(THREADS)]
    ys = [np.full((T, B, model.hidden_size), np.nan, np.float32) for _ in range(THREADS)]
    codes = cdemo.run([model] * THREADS, xs, ys, T, B, model.input_size, model.hidden_size, False)
    assert codes == [(0, "")] * THREADS
    for x, y in zip(xs, ys):
        np.testing.assert_array_equal(y, model(x)[0])


# -- streams --------------------------------------------------------------------------------


def test_stream_steps_equal_python_stream(demo):
    model = torch_model("lstm", num_layers=2, proj_size=4)
    B, T = 3, 12
    x = sequence(model, T, B)
    py_stream, c_stream = model.stream(B), model.stream(B)
    handle = demo.Stream(c_stream)
    assert handle.sizes["batch_size"] == B and handle.sizes["gil_free"] == 1

    ref = np.stack([py_stream.step(x[t]) for t in range(T)])
    y = np.full_like(ref, np.nan)
    handle.step_each(x[:5], y[:5])  # one step per call
    handle.step(x[5:], y[5:])  # a chunk of 7 steps in one call
    np.testing.assert_array_equal(y[:5], ref[:5])
    # a chunk runs its input projection as one GEMM over 7*B rows: equal within rounding
    np.testing.assert_allclose(y[5:], ref[5:], rtol=0, atol=1e-6)

    # the state: read through the C API = the stream's state from Python
    hs, cs = handle.sizes["h_size"] * B, handle.sizes["c_size"] * B
    h, c = np.empty(hs, np.float32), np.empty(cs, np.float32)
    assert handle.get_state(h, c) == (0, "")
    h_ref, c_ref = c_stream.state
    np.testing.assert_array_equal(h, h_ref.ravel())
    np.testing.assert_array_equal(c, c_ref.ravel())

    # written state: a fresh stream given py_stream's state continues as py_stream does
    py_h, py_c = py_stream.state
    other = demo.Stream(model.stream(B))
    assert other.set_state(py_h.ravel(), py_c.ravel()) == (0, "")
    nxt = sequence(model, 3, B, seed=9)
    y2 = np.empty((3, B, 4), np.float32)
    other.step_each(nxt, y2)
    np.testing.assert_array_equal(y2, np.stack([py_stream.step(nxt[t]) for t in range(3)]))

    # c omitted: zeroed; reset: back to zeros, as a fresh stream
    assert other.set_state(py_h.ravel()) == (0, "")
    assert other.get_state(h, c) == (0, "")
    assert not c.any() and np.array_equal(h, py_h.ravel())
    other.reset()
    other.step_each(nxt, y2)
    fresh = model.stream(B)
    np.testing.assert_array_equal(y2, np.stack([fresh.step(nxt[t]) for t in range(3)]))


def test_stream_batch_first_model(demo):
    """A batch-first model's stream: the caller states its layout with strides."""
    model = torch_model("gru", batch_first=True)
    x = sequence(model, 6, 2)  # [B, T, I]
    ref = model.stream(2).step(x)
    y = np.empty_like(ref)
    demo.Stream(model.stream(2)).step(x.transpose(1, 0, 2), y.transpose(1, 0, 2))
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-6)  # one call each: same GEMM rows
    np.testing.assert_array_equal(y, ref)


def test_streams_from_pthreads_in_c(cdemo):
    """THREADS pthreads, one stream each, stepping one step at a time."""
    model = torch_model("lstm", num_layers=2)
    T, B = 9, 2
    xs = [sequence(model, T, B, seed=k) for k in range(THREADS)]
    ys = [np.empty((T, B, model.hidden_size), np.float32) for _ in range(THREADS)]
    streams = [model.stream(B) for _ in range(THREADS)]
    codes = cdemo.run(streams, xs, ys, T, B, model.input_size, model.hidden_size, True)
    assert codes == [(0, "")] * THREADS
    for x, y in zip(xs, ys):
        ref = model.stream(B)
        np.testing.assert_array_equal(y, np.stack([ref.step(x[t]) for t in range(T)]))


def test_streams_from_python_threads_without_gil(demo):
    model = torch_model("rnn_tanh", hidden_size=16)
    T, B = 30, 1
    xs = [sequence(model, T, B, seed=k) for k in range(THREADS)]
    handles = [demo.Stream(model.stream(B)) for _ in range(THREADS)]
    ys = [np.empty((T, B, 16), np.float32) for _ in range(THREADS)]
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda k: handles[k].step_each(xs[k], ys[k]), range(THREADS)))
    for x, y in zip(xs, ys):
        ref = model.stream(B)
        np.testing.assert_array_equal(y, np.stack([ref.step(x[t]) for t in range(T)]))


def test_stream_batcher_streams(demo):
    """StreamBatcher streams: each call takes the GIL inside and waits for its batch; outputs
    equal model.stream(1) alone (the batcher's own guarantee, here through the C API)."""
    model = torch_model("lstm", hidden_size=12)
    T = 8
    xs = [sequence(model, T, 1, seed=k) for k in range(THREADS)]
    with pylstm.StreamBatcher(model, max_delay_ms=2.0) as batcher:
        streams = [batcher.open() for _ in range(THREADS)]
        handles = [demo.Stream(s) for s in streams]
        assert handles[0].sizes["gil_free"] == 0 and handles[0].sizes["batch_size"] == 1
        ys = [np.empty((T, 1, 12), np.float32) for _ in range(THREADS)]
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda k: handles[k].step_each(xs[k], ys[k]), range(THREADS)))
        h = np.empty(handles[0].sizes["h_size"], np.float32)
        c = np.empty(handles[0].sizes["c_size"], np.float32)
        assert handles[0].get_state(h, c) == (0, "")
        state = streams[0].state
        np.testing.assert_array_equal(h, state.arrays[0].ravel())
        np.testing.assert_array_equal(c, state.arrays[1].ravel())
        code, message = handles[0].set_state(h, c)
        assert code == demo.CODES["UNSUPPORTED"] and "initial_state" in message
        handles[1].reset()
        handles.clear()  # released before the batcher closes
    for x, y in zip(xs, ys):
        ref = model.stream(1)
        # the batcher runs k streams as one [1, k, I] call: equal within rounding
        np.testing.assert_allclose(
            y, np.stack([ref.step(x[t]) for t in range(T)]), rtol=0, atol=1e-6
        )


# -- lifetime -------------------------------------------------------------------------------


def test_handles_keep_their_objects_alive(demo):
    model = torch_model("gru")
    x = sequence(model, 4, 2)
    ref, _ = model(x)
    stream = model.stream(2)
    model_ref, stream_ref = weakref.ref(model), weakref.ref(stream)
    m, s = demo.Model(model), demo.Stream(stream)
    del model, stream
    gc.collect()
    assert model_ref() is not None and stream_ref() is not None
    y = np.empty_like(ref)
    m.forward(x, y)
    np.testing.assert_array_equal(y, ref)
    s.step(x, y)
    del m, s  # release: the references go
    gc.collect()
    assert model_ref() is None and stream_ref() is None


# -- errors ---------------------------------------------------------------------------------


def test_error_codes_and_messages(demo):
    codes = demo.CODES
    model = torch_model("lstm")
    m = demo.Model(model)
    I, O = model.input_size, model.hidden_size
    x, y = np.zeros(3 * 2 * I, np.float32), np.zeros(3 * 2 * O, np.float32)

    assert m.forward_raw(3, 2, x, y) == (0, "")
    code, msg = m.forward_raw(0, 2, x, y)
    assert code == codes["VALUE"] and "steps and batch must be >= 1" in msg
    code, msg = m.forward_raw(3, 2, None, y)
    assert code == codes["VALUE"] and "x or y is NULL" in msg
    code, msg = m.forward_raw(3, 2, x, y, np.array([3, 4], np.int64))
    assert code == codes["VALUE"] and "lengths[1] = 4" in msg and "between 1 and steps (3)" in msg
    assert demo.last_error() == msg  # kept until the next failure on this thread

    seen = []
    t = threading.Thread(target=lambda: seen.append(demo.last_error()))
    t.start()
    t.join()
    assert seen == [""]  # thread-local: another thread has no message

    s = demo.Stream(model.stream(2))
    code, msg = s.step_raw(1, 3, x, y)
    assert code == codes["VALUE"] and "batch = 2" in msg and "batch 3" in msg
    code, msg = s.step_raw(-1, 2, x, y)
    assert code == codes["VALUE"] and "steps -1" in msg
    assert s.step_raw(0, 2, None, None) == (0, "")  # no steps: nothing read or written
    h_ok = np.zeros(2 * O, np.float32)
    code, msg = s.get_state(np.zeros(2 * O + 1, np.float32), h_ok)
    assert code == codes["VALUE"] and f"h must hold {2 * O} floats" in msg
    code, msg = s.set_state(h_ok, np.zeros(3, np.float32))
    assert code == codes["VALUE"] and f"c must hold {2 * O} floats" in msg

    code, msg = demo.open_model_code(object())
    assert code == codes["TYPE"] and "expected a pylstm model" in msg
    code, msg = demo.open_stream_code(model)
    assert code == codes["TYPE"] and "expected a pylstm stream" in msg
    with pytest.raises(demo.CapiError) as err:
        demo.Model("not a model")
    assert err.value.code == codes["TYPE"]


def test_models_with_numpy_layers_are_refused(demo, tmp_path):
    """A Keras model (numpy layers around the engine) gives PYLSTM_ERR_UNSUPPORTED at open."""
    pytest.importorskip("h5py")
    src = os.path.join(os.path.dirname(__file__), "fixtures", "keras", "stateful.h5.gz")
    path = tmp_path / "stateful.h5"
    with gzip.open(src, "rb") as f, open(path, "wb") as out:
        shutil.copyfileobj(f, out)
    model = pylstm.load(path)
    code, msg = demo.open_model_code(model)
    assert code == demo.CODES["UNSUPPORTED"] and "KerasModel" in msg and "GIL" in msg
    code, msg = demo.open_stream_code(model.stream(1))
    assert code == demo.CODES["UNSUPPORTED"] and "KerasStream" in msg
