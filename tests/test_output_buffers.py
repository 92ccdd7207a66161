"""Large outputs in reused memory (pylstm/runtime/output_buffers.py): a buffer is handed out
again only once no array uses it, so an output the caller still holds is never overwritten."""

import os
import signal

import numpy as np
import pytest

import pylstm
from pylstm.convert.builder import Direction, Layer
from pylstm.runtime import output_buffers
from pylstm.runtime.output_buffers import REUSE_BYTES, empty_output
from pylstm.runtime.system import release_freed_memory


@pytest.fixture(autouse=True)
def no_kept_buffers(monkeypatch):
    """Each test starts with no kept buffers (earlier tests' outputs may still be alive)."""
    monkeypatch.setattr(output_buffers, "_buffers", [])


def test_a_free_buffer_is_reused_and_a_held_one_is_not():
    n = REUSE_BYTES // 4 + 1000
    a = empty_output((n,))
    a_data = a.ctypes.data
    b = empty_output((n,))  # a is alive: other memory
    assert b.ctypes.data != a_data
    a[:] = 1.0
    b[:] = 2.0
    c = empty_output((n,))  # a and b alive: a third buffer, not kept
    assert c.ctypes.data not in (a_data, b.ctypes.data)
    assert (a == 1.0).all() and (b == 2.0).all()
    del a
    d = empty_output((n,))  # a's buffer is free again
    assert d.ctypes.data == a_data
    assert (b == 2.0).all()
    for arr in (b, d):
        assert arr.ctypes.data % 64 == 0  # cache-line aligned


def test_a_view_or_base_held_by_the_caller_keeps_its_buffer():
    n = REUSE_BYTES // 4 + 10
    a = empty_output((2, n // 2))
    row = a[1]  # a view of a's buffer
    base = a.base
    addr = a.ctypes.data
    del a
    assert empty_output((n,)).ctypes.data != addr  # the view still uses it
    del row
    assert empty_output((n,)).ctypes.data != addr  # the caller still holds the base
    del base
    assert empty_output((n // 2 * 2,)).ctypes.data == addr


def test_release_freed_memory_drops_free_buffers():
    n = REUSE_BYTES // 4 + 10
    held = empty_output((n,))
    empty_output((n,))  # freed at once
    release_freed_memory()
    kept = output_buffers._buffers
    assert len(kept) == 1 and np.shares_memory(kept[0], held)


def test_consecutive_large_outputs_of_a_model_stay_correct():
    """Outputs of 4+ MB, one held while the next calls run: each equals a fresh float64 oracle
    of its own input (the engine's result is checked in the parity tests; here only that reuse
    never hands out memory an output still uses)."""
    rng = np.random.default_rng(5)
    H = I = 64
    d = Direction(w=rng.uniform(-0.5, 0.5, (4 * H, I)), r=rng.uniform(-0.5, 0.5, (4 * H, H)))
    model = pylstm.from_arrays([Layer("lstm", [d])])
    T, B = 64, 256  # y: 64 * 256 * 64 floats = 4 MiB
    xs = [rng.standard_normal((T, B, I)).astype(np.float32) * 3 for _ in range(4)]
    held, _ = model(xs[0])
    expected0 = held.copy()
    outs = []
    for x in xs[1:]:
        y, _ = model(x)
        outs.append((x, y))
    np.testing.assert_array_equal(held, expected0)  # untouched by the later calls
    for x, y in outs:
        y_again, _ = model(x)  # bit-identical on a second run, whatever buffer it got
        np.testing.assert_array_equal(y, y_again)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_another_thread_holds_the_lock_still_allocates():
    """Forked workers (gunicorn, multiprocessing's fork): the child gets a new lock."""
    n = REUSE_BYTES // 4 + 10
    with output_buffers._lock:  # as if another thread were handing out a buffer at the fork
        pid = os.fork()
        if pid == 0:  # the child: must not wait for a lock nobody will release
            try:
                signal.alarm(20)  # a hang ends the child (and fails the test), not the run
                empty_output((n,))
            finally:
                os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
