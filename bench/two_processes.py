"""Several processes using pylstm on one machine: does each get its share, and does any stall?

Usage: python bench/two_processes.py [--processes 2] [--seconds 5] [--batch 8] [--hidden 256]
                                     [--steps 100] [--out FILE.json]

Times back-to-back calls of an LSTM (one layer, I = H) for ``--seconds``: first one process
alone on all CPUs, then alone on one thread, then ``--processes`` processes at once (default
threads each, pinning as configured: off unless PYLSTM_PIN_THREADS=1). Prints each run's calls,
median, p99 and slowest call in ms, and the processes' total calls against the lone process's
(``share``: 1.0 means together they did as much as one process alone). About 20 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = """
import sys, time
import numpy as np
import pylstm
from pylstm.convert.builder import Direction, Layer
seconds, B, H, T = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
k = 1 / np.sqrt(H)
d = Direction(w=rng.uniform(-k, k, (4 * H, H)), r=rng.uniform(-k, k, (4 * H, H)),
              bias_w=rng.uniform(-k, k, 4 * H), bias_r=rng.uniform(-k, k, 4 * H))
model = pylstm.from_arrays([Layer("lstm", [d])])
x = rng.standard_normal((T, B, H)).astype(np.float32)
for _ in range(10):
    model(x)
times, end = [], time.perf_counter() + seconds
while time.perf_counter() < end:
    t = time.perf_counter()
    model(x)
    times.append(time.perf_counter() - t)
ms = np.array(times) * 1e3
print(len(ms), np.median(ms), np.percentile(ms, 99), ms.max())
"""


def run(n: int, args, env_extra=None) -> list:
    """Start ``n`` children at once; their (calls, median, p99, max) in ms."""
    env = dict(os.environ, **(env_extra or {}))
    argv = [sys.executable, "-c", CHILD, str(args.seconds), str(args.batch), str(args.hidden)]
    argv.append(str(args.steps))
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=args.seconds * 10 + 120)
        if p.returncode != 0:
            raise SystemExit(f"a child failed (exit {p.returncode})")
        calls, med, p99, slowest = stdout.split()
        out.append({"calls": int(calls), "median_ms": float(med), "p99_ms": float(p99),
                    "max_ms": float(slowest)})  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    from pylstm.bench.machine import cpu_model

    record = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "config": vars(args),
        "alone": run(1, args)[0],
        "alone_one_thread": run(1, args, {"PYLSTM_NUM_THREADS": "1"})[0],
        "together": run(args.processes, args),
    }
    record["share"] = sum(p["calls"] for p in record["together"]) / record["alone"]["calls"]
    for name in ("alone", "alone_one_thread"):
        print(f"{name:18s}", record[name])
    for i, p in enumerate(record["together"]):
        print(f"process {i}/{args.processes:<8d}", p)
    print(f"share: the {args.processes} processes together did {record['share']:.2f}x the "
          "calls of one process alone")  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
