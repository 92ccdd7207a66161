"""Timing loop, table and JSON record of ``pylstm bench``."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import pylstm

from .configs import BenchConfig
from .peers import make_peers, peer_versions


def machine_description() -> dict:
    """CPU model, core count, caches, OS and the instruction set pylstm uses."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    caches = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    for entry in sorted(os.listdir(base)) if os.path.isdir(base) else []:

        def read(name, entry=entry):
            with open(f"{base}/{entry}/{name}") as fh:
                return fh.read().strip()

        try:
            caches[f"L{read('level')}{read('type')[0].lower()}"] = read("size")
        except OSError:
            continue
    info = pylstm.info()
    return {
        "cpu": cpu,
        "cpus": info["cpus"],
        "caches": caches,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "simd": info["simd"],
    }


def _time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(peers: list, budget_s: float, min_rounds: int = 5, max_rounds: int = 200) -> dict:
    """Median seconds per call of each peer.

    Calls are interleaved in rounds (the order rotates each round) so that machine noise hits
    every engine alike. Within a round each engine runs a short burst whose first call is not
    timed: thread pools (ONNX Runtime's, OpenMP's, pylstm's) keep spinning for a moment after a
    call, and that untimed call absorbs the previous engine's spinning.
    """
    for p in peers:  # warm up: first calls pay for allocation, caches, page faults
        for _ in range(2):
            p.run()
    per_call = {p.name: min(_time_once(p.run) for _ in range(2)) for p in peers}
    burst = {name: int(min(20, max(2, 0.003 / max(t, 1e-9)))) for name, t in per_call.items()}
    round_s = sum(per_call[p.name] * (burst[p.name] + 1) for p in peers)
    rounds = int(min(max_rounds, max(min_rounds, budget_s / max(round_s, 1e-9))))
    samples = {p.name: [] for p in peers}
    for r in range(rounds):
        for k in range(len(peers)):
            p = peers[(r + k) % len(peers)]
            p.run()
            samples[p.name].extend(_time_once(p.run) for _ in range(burst[p.name]))
    return {name: statistics.median(v) for name, v in samples.items()}


def _format_row(cols, widths):
    return "  ".join(
        str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cols, widths))
    )


def run_benchmarks(
    configs: list,
    *,
    threads: int,
    budget_s: float = 1.0,
    json_path: str | None = None,
    command: str = "",
    out=sys.stdout,
) -> dict:
    """Run every configuration and print a table of times (ms, medians) and speed-ups.

    Parameters
    ----------
    configs : list of BenchConfig
    threads : int
        Threads for every engine (pylstm, torch.set_num_threads, ONNX Runtime intra-op).
    budget_s : float
        Rough time spent measuring each configuration.
    json_path : str, optional
        Where to write the JSON record (machine, versions, command, results).

    Returns
    -------
    dict
        The record written to ``json_path``.
    """
    pylstm.set_num_threads(threads)
    record = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": command,
        "machine": machine_description(),
        "versions": peer_versions(),
        "threads": threads,
        "device": "cpu",
        "results": [],
    }
    header = [
        "config",
        "pylstm ms",
        "torch ms",
        "ort ms",
        "x torch",
        "x ort",
        "GFLOP/s",
        "max|diff|",
    ]
    widths = [44, 10, 10, 10, 8, 8, 8, 9]
    print(
        f"pylstm {record['versions']['pylstm']} on {record['machine']['cpu']} "
        f"({record['machine']['simd']}), {threads} thread(s); medians of interleaved calls",
        file=out,
    )
    print(_format_row(header, widths), file=out)
    for cfg in configs:
        peers = make_peers(cfg, threads)
        outputs = {p.name: p.run() for p in peers}
        diff = max(float(np.max(np.abs(outputs["pylstm"] - o))) for o in outputs.values())
        times = measure(peers, budget_s)
        row = {"config": cfg.as_dict(), "name": cfg.name, "max_abs_diff": diff}
        row.update({f"{name}_ms": t * 1e3 for name, t in times.items()})
        for peer in ("torch", "onnxruntime"):
            if peer in times:
                row[f"speedup_vs_{peer}"] = times[peer] / times["pylstm"]
        row["pylstm_gflops"] = cfg.flops() / times["pylstm"] / 1e9
        record["results"].append(row)

        def fmt(key, spec, row=row):
            return format(row[key], spec) if key in row else "-"

        print(
            _format_row(
                [
                    cfg.name,
                    fmt("pylstm_ms", ".3f"),
                    fmt("torch_ms", ".3f"),
                    fmt("onnxruntime_ms", ".3f"),
                    fmt("speedup_vs_torch", ".2f"),
                    fmt("speedup_vs_onnxruntime", ".2f"),
                    fmt("pylstm_gflops", ".1f"),
                    f"{diff:.1e}",
                ],
                widths,
            ),
            file=out,
            flush=True,
        )
    if json_path:
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, "w") as fh:
            json.dump(record, fh, indent=2)
        print(f"wrote {json_path}", file=out)
    return record


def list_configs(configs: list, out=sys.stdout) -> None:
    for cfg in configs:
        print(cfg.name, file=out)


__all__ = ["BenchConfig", "list_configs", "machine_description", "measure", "run_benchmarks"]
