"""numpy's BLAS runs on one thread while a graph runs (runtime/system.py, single_threaded_blas):
BLAS worker threads left spinning after a MatMul head took the cores from the engine's team
(measured: an ONNX model 2.5x slower on 2 cores). The limit is counted across nested and
concurrent runs and puts back the caller's setting afterwards."""

import threading

import numpy as np
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

import pylstm
from pylstm.runtime import system


def blas_libs() -> list:
    libs = threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers
    if not libs:
        pytest.skip("numpy has no BLAS that threadpoolctl can control here")
    return libs


def blas_threads() -> list:
    return [lib.num_threads for lib in blas_libs()]


@pytest.fixture
def two_blas_threads():
    """The process-wide BLAS setting at two threads for the test, then put back."""
    libs = blas_libs()
    saved = [lib.num_threads for lib in libs]
    for lib in libs:
        system.single_threaded_blas._set(lib, 2)
    yield
    for lib, n in zip(libs, saved):
        system.single_threaded_blas._set(lib, n)


def test_nested_and_concurrent_uses_restore_the_setting(two_blas_threads):
    before = blas_threads()
    inside = []
    entered, release = threading.Event(), threading.Event()

    def other():
        with system.single_threaded_blas:
            entered.set()
            release.wait(10)

    t = threading.Thread(target=other)
    t.start()
    entered.wait(10)
    with system.single_threaded_blas, system.single_threaded_blas:
        inside.append(blas_threads())
    inside.append(blas_threads())  # the other thread still runs: still one thread
    release.set()
    t.join()
    assert inside == [[1] * len(before)] * 2
    assert blas_threads() == before


def test_graph_runs_under_the_limit_and_leave_blas_as_it_was(monkeypatch, two_blas_threads):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from pylstm.runtime.ops import common

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 3])],
        [w],
    )
    model = onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    seen = []
    matmul = common.OPS["MatMul"]
    monkeypatch.setitem(
        common.OPS,
        "MatMul",
        lambda node, *args: (seen.append(blas_threads()), matmul(node, *args))[1],
    )
    before = blas_threads()
    ours = pylstm.from_onnx(model.SerializeToString())
    x = rng.normal(size=(5, 4)).astype(np.float32)
    (y,) = ours.run(None, {"X": x})
    np.testing.assert_allclose(y, x @ numpy_helper.to_array(w), atol=1e-5)  # float32 GEMM
    assert seen and all(s == [1] * len(before) for s in seen)
    assert blas_threads() == before
