"""Output arrays: aligned to cache lines, and the memory of large ones reused between calls.

A fresh output of tens of megabytes is new memory from the operating system on every call
(glibc maps allocations above its mmap threshold, at most 32 MiB, and unmaps them when freed),
and every page of it is faulted in and zeroed by the kernel where the engine first writes it:
measured on 2 vCPUs (AMD EPYC, KVM), LSTM B=256 H=512 T=100 took 282 ms with a fresh 52 MB
output and 225 ms writing into memory already mapped. So the buffers behind large outputs are
kept here (at most :data:`KEEP` of them) and handed out again once no array uses them: a loop
``y = model(x)`` alternates between two buffers. At most ``KEEP`` buffers of at most
``MAX_KEPT_BYTES`` each stay allocated after their arrays are gone (ONNX Runtime's arena keeps
its memory too); :func:`pylstm.runtime.system.release_freed_memory` drops them.
"""

from __future__ import annotations

import math
import os
import sys
import threading

import numpy as np

# Outputs start on a cache line. Threads write the columns of a row side by side; where a row
# starts off a line boundary (numpy's allocations start 16 bytes into one), two threads share
# the line at their boundary and it bounces between their cores at every step: measured, a 2-thread
# LSTM with H=64 at B=64 took 40% longer.
_CACHE_LINE_FLOATS = 16

#: Outputs smaller than this are plain numpy arrays: they are written by one thread, or by a
#: team for a step or two, so a line shared at a boundary costs less than aligning them
#: (~1 us of a single-step call).
SMALL_BYTES = 4 << 10
#: Outputs of at least this many bytes come from reused buffers (smaller ones are served
#: quickly by the C library, from memory it keeps).
REUSE_BYTES = 4 << 20
#: Buffers kept for reuse, and the largest one kept.
KEEP = 2
MAX_KEPT_BYTES = 256 << 20

_lock = threading.Lock()
_buffers: list = []  # 1-D float32 arrays; free when nothing but this list refers to them


def _after_fork_in_child() -> None:
    """A forked child has only the forking thread: a lock another thread held at the fork would
    stay held forever, so the child starts with a new one (the buffers are its own copies)."""
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _aligned(buf: np.ndarray, n: int) -> np.ndarray:
    skip = (-buf.ctypes.data % (4 * _CACHE_LINE_FLOATS)) // 4
    return buf[skip : skip + n]


def _free(i: int) -> bool:
    # References: the list and getrefcount's argument. An output array (or any view of it, or
    # its .base held by the caller) adds one.
    return sys.getrefcount(_buffers[i]) == 2


def _reused(n: int) -> np.ndarray | None:
    """A free kept buffer of n to 2n floats (plus alignment), or a new one kept in place of the
    smallest free one; None when there is no room to keep one (the caller allocates)."""
    need = n + _CACHE_LINE_FLOATS
    with _lock:
        for i in range(len(_buffers)):
            if _free(i) and need <= _buffers[i].size <= 2 * need:
                return _aligned(_buffers[i], n)
        buf = np.empty(need, np.float32)
        if len(_buffers) >= KEEP:
            free = [i for i in range(len(_buffers)) if _free(i)]
            if not free:
                return _aligned(buf, n)  # every kept buffer is in use: this one is not kept
            del _buffers[min(free, key=lambda i: _buffers[i].size)]
        _buffers.append(buf)
        return _aligned(buf, n)


def drop_free_buffers() -> None:
    """Forget the kept buffers no array uses (their memory goes back to the C library)."""
    with _lock:
        _buffers[:] = [_buffers[i] for i in range(len(_buffers)) if not _free(i)]


def empty_output(shape) -> np.ndarray:
    """An uninitialised float32 array of ``shape`` whose data starts on a 64-byte boundary
    (from :data:`SMALL_BYTES` up); large ones in reused memory (see the module's docstring)."""
    n = math.prod(shape)
    if 4 * n < SMALL_BYTES:
        return np.empty(shape, np.float32)
    if REUSE_BYTES <= 4 * n <= MAX_KEPT_BYTES:
        return _reused(n).reshape(shape)
    return _aligned(np.empty(n + _CACHE_LINE_FLOATS, np.float32), n).reshape(shape)
