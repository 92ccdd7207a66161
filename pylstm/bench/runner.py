"""``pylstm bench``: the run from the ceilings (GEMM, FMA peak) to the summary, and the JSON
record it writes.

Record layout (JSON)::

    date, command, device, threads, machine{...}, versions{...},
    gemm_ceiling_gflops, gemm{shapes, numpy_gflops, torch_gflops, numpy_threads},
    fma_peak_gflops, fma_peak{isa, threads},
    results: [ {kind: "grid" | "precision" | "stream" | "batcher" | "service" | "shared"
                | "neighbours" | "scaling", name, config{...}, times, ratios, ...} ],
    notes: [str], summary{grid|precision|stream: {points, faster_than_<peer>, ...}}

Grid and precision entries hold ``<engine>_ms``; stream entries ``<engine>_us``; every entry
``speedup_vs_<peer>`` = peer time / pylstm time (> 1: pylstm faster).
"""

from __future__ import annotations

import datetime
import os
import sys
import time

import numpy as np

import pylstm

from .ceiling import measure_fma_peak, measure_gemm_ceiling
from .configs import PRECISIONS, BenchConfig
from .machine import engine_versions, machine_description
from .peers import (
    PylstmPeer,
    make_input,
    make_peers,
    make_reference_peers,
    require_torch_module,
)
from .report import Table, header_lines, summarize, summary_lines, write_record
from .streaming import measure_stream
from .timing import measure


def results_dir() -> str:
    """Where ``pylstm bench`` writes its records unless told otherwise: ``pylstm/bench`` in the
    user's data folder, ``$XDG_DATA_HOME`` (an absolute path) or else ``~/.local/share``."""
    base = os.environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(base):  # unset, empty or relative: the XDG default
        base = os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "pylstm", "bench")


def default_record_path(device: str = "cpu", folder: str | None = None) -> str:
    """``<folder>/<device>-<YYYYmmdd-HHMMSS>.json``; ``folder`` defaults to :func:`results_dir`."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join(folder or results_dir(), f"{device}-{stamp}.json")


def _timed_entry(kind: str, cfg: BenchConfig, pylstm_s: float, timings, ceilings) -> dict:
    """The fields grid and precision entries share: times (ms), ratios, throughput; with
    ``ceilings`` ({field: GFLOP/s}, e.g. ``ceiling_fraction``, ``peak_fraction``), the throughput's
    fraction of each."""
    entry = {"kind": kind, "name": cfg.name, "config": cfg.as_dict(), "pylstm_ms": pylstm_s * 1e3}
    for peer in ("onnxruntime", "torch"):
        if peer in timings.median_s:
            entry[f"{peer}_ms"] = timings.median_s[peer] * 1e3
            entry[f"speedup_vs_{peer}"] = timings.median_s[peer] / pylstm_s
    entry["pylstm_gflops"] = cfg.flops() / pylstm_s / 1e9
    for field, gflops in (ceilings or {}).items():
        if gflops:
            entry[field] = entry["pylstm_gflops"] / gflops
    entry["rounds"] = timings.rounds
    return entry


def measure_grid_point(cfg: BenchConfig, *, threads: int, budget_s: float, ceilings=None) -> dict:
    """Time pylstm, ONNX Runtime and PyTorch on one whole-sequence point.

    Returns
    -------
    dict
        A result entry of kind ``"grid"``: ``<engine>_ms``, ``speedup_vs_<peer>``,
        ``pylstm_gflops``, ``ceiling_fraction`` and ``peak_fraction`` (with ``ceilings``),
        ``max_abs_diff`` (largest |pylstm - peer| output difference), ``rounds``, ``samples``.
    """
    peers = make_peers(cfg, threads)
    outputs = {p.name: p.run() for p in peers}  # also the first, warming call of each
    diff = max(float(np.max(np.abs(outputs["pylstm"] - y))) for y in outputs.values())
    timings = measure(peers, budget_s)
    entry = _timed_entry("grid", cfg, timings.median_s["pylstm"], timings, ceilings)
    entry.update(max_abs_diff=diff, samples=timings.samples)
    return entry


def measure_precision_point(
    cfg: BenchConfig, *, threads: int, budget_s: float, ceilings=None, skipped=None
) -> list:
    """Time pylstm at each of :data:`PRECISIONS` against ONNX Runtime and PyTorch at fp32.

    A precision ``pylstm.from_torch`` does not accept (TypeError for the keyword, or
    NotImplementedError) is left out and its reason put in ``skipped`` ({precision: message}).
    Without any reduced precision, nothing is measured (the fp32 point is in the grid).

    Returns
    -------
    list of dict
        One entry of kind ``"precision"`` per precision measured, each with ``precision`` and
        ``max_abs_diff_vs_torch_fp32``.
    """
    skipped = {} if skipped is None else skipped
    module = require_torch_module(cfg)
    x = make_input(cfg)
    engines = []
    for precision in PRECISIONS:
        if precision in skipped:
            continue
        try:
            engines.append(PylstmPeer(cfg, module, x, precision=precision))
        except (TypeError, NotImplementedError) as exc:
            skipped[precision] = f"{type(exc).__name__}: {exc}"
    if len(engines) < 2:
        return []
    refs = make_reference_peers(cfg, module, x, threads)
    outputs = {e.name: e.run() for e in [*engines, *refs]}
    timings = measure([*engines, *refs], budget_s)
    entries = []
    for e in engines:
        entry = _timed_entry("precision", cfg, timings.median_s[e.name], timings, ceilings)
        entry["precision"] = e.precision
        diff = np.max(np.abs(outputs[e.name] - outputs["torch"]))
        entry["max_abs_diff_vs_torch_fp32"] = float(diff)
        entry["samples"] = timings.samples
        entries.append(entry)
    return entries


def new_record(threads: int, command: str) -> dict:
    """The record's header fields: date, command, machine, versions, threads."""
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": command,
        "device": "cpu",
        "threads": threads,
        "machine": machine_description(),
        "versions": engine_versions(),
        "results": [],
        "notes": [],
    }


def run_benchmarks(
    configs: list,
    *,
    threads: int,
    budget_s: float = 1.0,
    stream_configs: list = (),
    precision_configs: list = (),
    batcher_configs: list = (),
    condition_configs: list = (),
    condition_sections=(),
    quick_ceiling: bool = False,
    json_path: str | None = None,
    command: str = "",
    out=sys.stdout,
) -> dict:
    """Measure the GEMM ceiling and the FMA peak, then every point, printing each table row as it
    is measured.

    Parameters
    ----------
    configs : list of BenchConfig
        Whole-sequence grid points.
    threads : int
        Threads for every engine (pylstm, torch.set_num_threads, ONNX Runtime intra-op, numpy's
        BLAS where threadpoolctl is installed).
    budget_s : float
        Seconds of timing per point, roughly; slow points take at least 3 rounds.
    stream_configs : list of StreamConfig
    precision_configs : list of BenchConfig
        Points timed with pylstm at every precision in :data:`PRECISIONS`.
    batcher_configs : list of pylstm.bench.batcher.BatcherConfig
        Many-stream points (``--sections batcher``): StreamBatcher against per-stream
        ``stream.step`` and ONNX Runtime, ``budget_s`` seconds of load per method.
    condition_configs : list of BenchConfig
    condition_sections : sequence of str
        Service-condition sections to measure on ``condition_configs`` (any of ``service``,
        ``shared``, ``neighbours``, ``scaling``; :mod:`pylstm.bench.conditions`).
    quick_ceiling : bool
        Measure the ceiling on a small GEMM (fast, lower).
    json_path : str, optional
        Where to write the record.

    Returns
    -------
    dict
        The record (see the module docstring).
    """
    pylstm.set_num_threads(threads)
    record = new_record(threads, command)
    record.update(measure_gemm_ceiling(threads, quick=quick_ceiling))
    record.update(measure_fma_peak(threads))
    ceilings = {
        "ceiling_fraction": record["gemm_ceiling_gflops"],
        "peak_fraction": record["fma_peak_gflops"],
    }
    # OpenBLAS's threads keep spinning (sched_yield loops) for a while after a GEMM; let them go
    # to sleep so that they do not steal cycles from the first engines measured.
    time.sleep(0.5)
    for line in header_lines(record):
        print(line, file=out, flush=True)

    def section(kind, items, measure_one):
        if not items:
            return
        table = Table(kind, out)
        started = False
        for item in items:
            entries = measure_one(item)
            if entries and not started:
                table.start()
                started = True
            for entry in entries:
                record["results"].append(entry)
                table.row(entry)
        if started:
            table.finish()

    common = {"threads": threads, "budget_s": budget_s}
    section("grid", configs, lambda c: [measure_grid_point(c, ceilings=ceilings, **common)])
    skipped = {}
    section(
        "precision",
        precision_configs,
        lambda c: measure_precision_point(c, ceilings=ceilings, skipped=skipped, **common),
    )
    notes = [
        f"{precision} rows skipped: pylstm.from_torch(module, precision={precision!r}) "
        f"is not available ({reason})"
        for precision, reason in skipped.items()
    ]
    record["notes"].extend(notes)
    if notes:
        print("\n" + "\n".join(f"note: {n}" for n in notes), file=out)
    section("stream", stream_configs, lambda c: [measure_stream(c, **common)])
    if batcher_configs:
        from .batcher import run_batcher_section

        run_batcher_section(record, batcher_configs, budget_s=budget_s, out=out)
    if condition_configs and condition_sections:
        from .conditions import run_condition_sections

        run_condition_sections(record, condition_configs, condition_sections, **common, out=out)
    record["summary"] = summarize(record["results"])
    print("", file=out)
    for line in summary_lines(record["summary"]):
        print(line, file=out)
    if json_path:
        write_record(record, json_path)
        print(f"wrote {json_path}", file=out)
    return record


def list_configs(configs: list, out=sys.stdout) -> None:
    for cfg in configs:
        print(cfg.name, file=out)


__all__ = [
    "BenchConfig",
    "default_record_path",
    "list_configs",
    "machine_description",
    "measure",
    "measure_grid_point",
    "measure_precision_point",
    "results_dir",
    "run_benchmarks",
]
