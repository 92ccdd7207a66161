"""A process forked at any moment gets a working engine: idle, after calls at 2 threads, while
another thread is mid-call; through os.fork, the default ProcessPoolExecutor and multiprocessing
with each start method (fork, spawn, forkserver).

The model is called in the parent first (so the parent's worker threads exist and have run), and
each call is large enough to run on a team of 2 threads. Every child is waited for with a
timeout, so a hang fails the test instead of hanging the run. Outputs in the children must equal
the parent's exactly (same engine, same machine, same team split).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import pylstm

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")

TIMEOUT_S = 120  # generous: the machine may be shared; a hang waits forever


def make_model():
    """An LSTM big enough that a call runs on a team of threads (H=128, B=16)."""
    rng = np.random.default_rng(0)
    I, H = 32, 128
    k = 3.0 / np.sqrt(H)
    d = pylstm.Direction(
        w=rng.uniform(-k, k, (4 * H, I)),
        r=rng.uniform(-k, k, (4 * H, H)),
        bias_w=rng.uniform(-k, k, 4 * H),
        bias_r=rng.uniform(-k, k, 4 * H),
    )
    return pylstm.from_arrays([pylstm.Layer("lstm", [d]), pylstm.Layer("lstm", [d_like(d, H)])])


def d_like(d, H):
    """A second layer's direction (input size H) from the first's weights."""
    return pylstm.Direction(w=d.r.copy(), r=d.r[::-1].copy(), bias_w=d.bias_w, bias_r=d.bias_r)


def make_input(seed=1):
    return np.random.default_rng(seed).normal(size=(24, 16, 32)).astype(np.float32)


MODEL = None  # set in the parent before forking; inherited by forked children


def run_model(model=None, seed=1, threads=2):
    """In a child: the model's output (module-level so that spawn can import it)."""
    pylstm.set_num_threads(threads)
    model = model if model is not None else MODEL
    return model(make_input(seed))[0]


@pytest.fixture(scope="module")
def model():
    global MODEL
    pylstm.set_num_threads(2)
    MODEL = make_model()
    for _ in range(3):  # the parent's pool has run teams before any fork
        MODEL(make_input())
    yield MODEL
    MODEL = None


def wait_child(pid: int, timeout: float = TIMEOUT_S) -> int:
    """Exit status of child ``pid``; kills it and fails when it runs past ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"forked child {pid} hung (killed after {timeout} s)")


def fork_and_check(expected, *, before_call=None) -> int:
    """Fork; the child runs the model at 2 threads (twice, and at 1 thread) and exits 0 when the
    outputs equal ``expected``. Returns the child's exit code."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            if before_call is not None:
                before_call()
            ok = all(np.array_equal(run_model(threads=n), expected) for n in (2, 2, 1, 2))
            code = 0 if ok else 3
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    return wait_child(pid)


def test_os_fork_after_calls(model):
    expected = model(make_input())[0]
    assert pylstm.get_num_threads() == 2
    assert fork_and_check(expected) == 0
    # the parent's own pool is untouched
    np.testing.assert_array_equal(model(make_input())[0], expected)


def test_os_fork_twice_deep(model):
    """A child forks a grandchild after calling the model itself."""
    expected = model(make_input())[0]
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ok = np.array_equal(run_model(), expected)
            code = 0 if ok and fork_and_check(expected) == 0 else 3
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    assert wait_child(pid) == 0


def test_fork_while_another_thread_is_mid_call(model):
    expected = model(make_input())[0]
    stop = threading.Event()
    calls = [0]

    def hammer():
        x = make_input()
        while not stop.is_set():
            model(x)
            calls[0] += 1

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        while calls[0] < 2:
            time.sleep(0.001)
        codes = [fork_and_check(expected) for _ in range(6)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert codes == [0] * 6
    np.testing.assert_array_equal(model(make_input())[0], expected)


def test_set_num_threads_in_a_forked_child(model):
    expected = model(make_input())[0]

    def change():
        pylstm.set_num_threads(3)
        assert pylstm.get_num_threads() == 3

    assert fork_and_check(expected, before_call=change) == 0


def test_process_pool_executor_default(model):
    expected = model(make_input())[0]
    with ProcessPoolExecutor(2) as pool:
        inherited = [pool.submit(run_model) for _ in range(2)]  # MODEL inherited (fork)
        shipped = [pool.submit(run_model, model) for _ in range(2)]  # pickled to the worker
        for f in inherited + shipped:
            np.testing.assert_array_equal(f.result(timeout=TIMEOUT_S), expected)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_start_methods(model, method):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"{method} is not available on {sys.platform}")
    expected = model(make_input())[0]
    ctx = multiprocessing.get_context(method)
    pool = ctx.Pool(2)
    try:
        result = pool.starmap_async(run_model, [(model, 1, 2), (model, 1, 1), (model, 1, 2)])
        outs = result.get(timeout=TIMEOUT_S)
    except multiprocessing.TimeoutError:
        pytest.fail(f"multiprocessing ({method}) hung")
    finally:
        pool.terminate()
        pool.join()
    for y in outs:
        np.testing.assert_array_equal(y, expected)
