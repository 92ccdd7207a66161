"""Per-step overhead of the C API: one-step stream calls of an LSTM (H=64, I=64, B=1) through
``pylstm_stream_step`` (a Cython loop without the GIL), through ``stream.step`` from Python, and
the engine's own step (the same C++ call timed in C++, ``_core._engine_step_seconds``).

Usage: python bench/capi_overhead.py [--steps N] [--rounds R] [--hidden H]
Builds the test extension (tests/capi_ext) in a temporary folder first (needs Cython and a C
compiler). Rounds alternate the three ways; each figure is the median over rounds of the
seconds per step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "capi_ext"))
import build as capi_build
import pylstm
from pylstm.bench.machine import cpu_model


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20000, help="one-step calls per round")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--hidden", type=int, default=64)
    args = ap.parse_args(argv)
    why = capi_build.missing_tools()
    if why:
        sys.exit(f"cannot build the C API extension: {why}")
    with tempfile.TemporaryDirectory() as tmp:
        demo = capi_build.build(tmp)["capi_demo"]

    H = I = args.hidden
    rng = np.random.default_rng(0)
    k = 1 / np.sqrt(H)
    d = pylstm.Direction(
        w=rng.uniform(-k, k, (4 * H, I)).astype(np.float32),
        r=rng.uniform(-k, k, (4 * H, H)).astype(np.float32),
        bias_w=rng.uniform(-k, k, 4 * H).astype(np.float32),
        bias_r=rng.uniform(-k, k, 4 * H).astype(np.float32),
    )
    model = pylstm.from_arrays([pylstm.Layer("lstm", [d])])
    x = rng.standard_normal((1, 1, I)).astype(np.float32)
    y = np.empty((1, 1, H), np.float32)
    n = args.steps

    py_stream, c_stream, e_stream = model.stream(1), model.stream(1), model.stream(1)
    handle = demo.Stream(c_stream)
    step, x2 = py_stream.step, x[0]

    def via_python():
        t = time.perf_counter()
        for _ in range(n):
            step(x2)
        return (time.perf_counter() - t) / n

    def via_capi():
        t = time.perf_counter()
        handle.step_same(x, y, n)
        return (time.perf_counter() - t) / n

    def engine():
        return pylstm._core._engine_step_seconds(e_stream, x2, n)

    ways = {
        "engine (C++ loop)": engine,
        "C API (Cython, nogil)": via_capi,
        "stream.step (Python)": via_python,
    }
    for f in ways.values():  # warm-up
        f()
    times = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, f in ways.items():
            times[name].append(f())
    med = {name: statistics.median(v) for name, v in times.items()}
    base = med["engine (C++ loop)"]
    print(
        f"LSTM H={H} I={I} B=1, one step per call, {n} calls x {args.rounds} rounds, "
        f"{pylstm.info()['simd']}, {pylstm.get_num_threads()} threads; CPU: {cpu_model()}"
    )
    print(f"{'way':24s} {'us/step':>8s} {'above engine':>13s}")
    for name, v in med.items():
        print(f"{name:24s} {v * 1e6:8.3f} {(v - base) * 1e6:+12.3f}")


if __name__ == "__main__":
    main()
