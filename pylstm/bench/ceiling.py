"""Two measured ceilings for pylstm's GFLOP/s, in the same process and with the same thread
count as the rest of the run:

* the GEMM ceiling: what a large fp32 matrix product reaches with numpy's BLAS and with PyTorch
  (what a library reaches on work that suits it best);
* the FMA peak: independent fp32 multiply-adds in pylstm's own instruction set on every thread at
  once (``_core.fma_peak_gflops``): what the cores can do at all, so a row's share of it says how
  much any engine could still gain there, on whatever CPU the record comes from.

Grid and precision rows report pylstm's GFLOP/s as a fraction of each."""

from __future__ import annotations

import contextlib
import os
import time

import numpy as np

from .. import _core
from ..runtime.system import simd_level

#: (M, K, N) of the products timed: C[M, N] = A[M, K] @ B[K, N], fp32.
LARGE_SHAPES = ((2048, 2048, 2048), (4096, 1024, 4096))
QUICK_SHAPES = ((1024, 1024, 1024),)


def _numpy_thread_limit(threads: int):
    """A context limiting numpy's BLAS to ``threads`` and the thread count numpy then uses: an
    int with threadpoolctl, else ``None`` (the BLAS default, usually every CPU)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext(), None
    return threadpool_limits(limits=threads, user_api="blas"), threads


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _best_gflops(matmul, shape: tuple, repeats: int) -> float:
    """Best GFLOP/s of ``repeats`` timed calls of ``matmul()`` (after one untimed call) for a
    product of ``shape`` = (M, K, N): 2·M·K·N flops per call."""
    matmul()
    best = min(_seconds(matmul) for _ in range(repeats))
    m, k, n = shape
    return 2.0 * m * k * n / best / 1e9


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_gemm_ceiling(threads: int, *, quick: bool = False, repeats: int = 3) -> dict:
    """Best fp32 GEMM throughput of numpy and of torch (``torch.set_num_threads(threads)``).

    Parameters
    ----------
    threads : int
    quick : bool
        Time one 1024^3 product instead of 2048^3 and 4096x1024x4096 (a lower, rougher ceiling).
    repeats : int
        Timed calls per library and shape; the fastest counts.

    Returns
    -------
    dict
        ``gemm_ceiling_gflops`` (the max over libraries and shapes) and ``gemm``: ``shapes``
        (list of [M, K, N]), ``numpy_gflops``, ``torch_gflops`` (absent without torch),
        ``numpy_threads`` (None: the BLAS default, without threadpoolctl; numpy then counts
        towards the ceiling only when ``threads`` is every CPU this process may use).
    """
    shapes = QUICK_SHAPES if quick else LARGE_SHAPES
    rng = np.random.default_rng(0)
    detail = {"shapes": [list(s) for s in shapes], "numpy_gflops": 0.0}
    try:
        import torch
    except ImportError:
        torch = None
    operands = []
    for m, k, n in shapes:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        operands.append(((m, k, n), a, b, np.empty((m, n), np.float32)))
    limit, detail["numpy_threads"] = _numpy_thread_limit(threads)
    with limit:
        for shape, a, b, c in operands:
            gflops = _best_gflops(lambda a=a, b=b, c=c: np.matmul(a, b, out=c), shape, repeats)
            detail["numpy_gflops"] = max(detail["numpy_gflops"], gflops)
    if torch is not None:
        torch.set_num_threads(threads)
        detail["torch_gflops"] = 0.0
        for shape, a, b, c in operands:
            ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
            gflops = _best_gflops(
                lambda ta=ta, tb=tb, tc=tc: torch.matmul(ta, tb, out=tc), shape, repeats
            )
            detail["torch_gflops"] = max(detail["torch_gflops"], gflops)
    numpy_counts = detail["numpy_threads"] is not None or threads == _usable_cpus()
    if not numpy_counts:
        detail["numpy_note"] = f"not in the ceiling: numpy's BLAS threads not limited to {threads}"
    candidates = [detail.get("torch_gflops", 0.0)] + [detail["numpy_gflops"]] * numpy_counts
    ceiling = max(candidates)
    return {"gemm_ceiling_gflops": ceiling, "gemm": detail}


def measure_fma_peak(threads: int) -> dict:
    """The fp32 multiply-add peak of ``threads`` threads at once with the kernels pylstm uses now.

    Returns
    -------
    dict
        ``fma_peak_gflops`` and ``fma_peak``: ``isa`` (the instruction set), ``threads``.
    """
    isa = simd_level()
    return {
        "fma_peak_gflops": _core.fma_peak_gflops(isa, threads),
        "fma_peak": {"isa": isa, "threads": threads},
    }
