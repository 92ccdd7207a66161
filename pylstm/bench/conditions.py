"""``pylstm bench --sections service shared neighbours scaling``: speed in the conditions of a
service rather than in warm bursts (DESIGN.md, "Speed that holds in a service").

* **service** (:mod:`.service`): calls arriving after idle gaps (2 ms, 20 ms), each engine alone
  in its own child process (three rounds of processes, engines alternating, samples pooled);
  median and p99 per call.
* **shared** (:mod:`.service`): pylstm, ONNX Runtime and PyTorch taking turns in one process,
  back to back, against each engine alone in its own process, back to back.
* **neighbours** (:mod:`.neighbours`): every engine while another process keeps one core busy,
  against the same engines on a quiet machine.
* **scaling** (:mod:`.neighbours`): one thread against all CPUs, per engine.

Every entry carries ``speedup_vs_<peer>`` (peer time / pylstm time, > 1: pylstm faster) in the
section's condition, so that the tables, the summary and ``--plot`` show it like the grid.

The child processes (:mod:`.conditions_child`) run one at a time; models and inputs reach them
as files written here: the PyTorch state dict (``.pt``), its ONNX export and the input
(``.npy``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

import pylstm

from .configs import StreamConfig
from .machine import load_average
from .peers import make_input, require_torch_module

#: The sections of this module, in the order they run.
CONDITION_SECTIONS = ("service", "shared", "neighbours", "scaling")
#: Idle gaps (ms) before each call in the service section.
SERVICE_GAPS_MS = (2, 20)
#: Timed calls per engine, point and gap (service) or per point (shared): at least, at most.
MIN_CALLS = 30
#: ... at least this many when the budget is below QUICK_BUDGET_S (``--quick``: a few calls).
QUICK_MIN_CALLS = 10
QUICK_BUDGET_S = 0.5
MAX_CALLS = 1000
#: Rounds of the engines' processes alone (service section and the shared section's
#: reference); 1 with --quick.
ALONE_ROUNDS = 3
#: Seconds a child may take before it is stopped.
CHILD_TIMEOUT_S = 600


def write_point_files(configs: list, folder: str, seed: int = 0) -> list:
    """For each configuration: the torch module's state dict, its ONNX export (TorchScript
    exporter) and the input, written to ``folder``. A :class:`BenchConfig`: input ``x``
    ``[T, B, I]``, ONNX input ``x``, output ``y``. A :class:`StreamConfig` (one step per call):
    an input pool ``[POOL_STEPS, B, I]`` and the one-step export with the states as inputs and
    outputs (:func:`.streaming.step_export`).

    Returns
    -------
    list of dict
        Per configuration ``{"config": dict, "pt": path, "onnx": path, "x": path}``, and
        ``"stream": True`` for a StreamConfig.
    """
    import torch

    from .streaming import POOL_STEPS, step_export

    points = []
    for i, cfg in enumerate(configs):
        module = require_torch_module(cfg, seed)
        stream = isinstance(cfg, StreamConfig)
        if stream:
            rng = np.random.default_rng(seed)
            x = rng.standard_normal((POOL_STEPS, cfg.batch, cfg.input_size), dtype=np.float32)
            export = step_export(module, x)
        else:
            x = make_input(cfg, seed)
            export = (module, (torch.from_numpy(x),), ["x"], ["y"])
        paths = {k: os.path.join(folder, f"point{i}.{k}") for k in ("pt", "onnx", "npy")}
        torch.save(module.state_dict(), paths["pt"])
        np.save(paths["npy"], x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exported, args, inputs, outputs = export
            torch.onnx.export(
                exported,
                args,
                paths["onnx"],
                input_names=inputs,
                output_names=outputs,
                dynamo=False,
            )
        point = {"config": cfg.as_dict(), "pt": paths["pt"], "onnx": paths["onnx"]}
        points.append({**point, "x": paths["npy"], **({"stream": True} if stream else {})})
    return points


def child_env() -> dict:
    """The environment for a child that imports this very pylstm (installed or in a source tree
    with its built extension): the folder holding the package first on ``PYTHONPATH``."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(pylstm.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    return env


def run_child(spec: dict, folder: str, tag: str) -> dict:
    """Run :mod:`.conditions_child` on ``spec`` in a fresh Python process and return its
    result; RuntimeError with the end of its stderr when it fails."""
    spec = {**spec, "folder": folder, "tag": tag}
    path = os.path.join(folder, f"spec-{tag}.json")
    with open(path, "w") as fh:
        json.dump(spec, fh)
    proc = subprocess.run(
        [sys.executable, "-m", "pylstm.bench.conditions_child", path],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=folder,
        timeout=CHILD_TIMEOUT_S,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {tag} failed:\n{proc.stderr[-2000:]}")
    with open(os.path.join(folder, f"result-{tag}.json")) as fh:
        return json.load(fh)


def measure_alone(spec: dict, engines: list, folder: str, rounds: int):
    """Each engine alone in its own process, one process at a time, in ``rounds`` rounds of
    ``1 / rounds`` of the budget and calls each (the engines' order reversed every other
    round): the host's speed drifts over seconds, and one long process per engine would
    charge the drift to whichever engine ran then.

    Returns ``({engine: [per point {gap_ms (str): [seconds, ...]}]}, pylstm's kernel or
    None)``: each engine's samples of all rounds together."""
    part = {
        **spec,
        "budget_s": spec["budget_s"] / rounds,
        "min_calls": max(1, -(-spec["min_calls"] // rounds)),
        "max_calls": max(1, spec["max_calls"] // rounds),
    }
    alone, backend = {}, None
    for r in range(rounds):
        for name in engines if r % 2 == 0 else engines[::-1]:
            result = run_child({**part, "engines": [name]}, folder, f"{name}-{r}")
            backend = result.get("backend") or backend
            points = [p[name] for p in result["points"]]
            if name not in alone:
                alone[name] = points
                continue
            for mine, more in zip(alone[name], points):
                for gap, samples in more.items():
                    mine[gap].extend(samples)
    return alone, backend


def sections_measuring(cfg, sections) -> list:
    """Those of ``sections`` (condition sections) that measure ``cfg``: all of them for a whole
    sequence, only ``service`` for a streaming point (one step per call)."""
    return [s for s in sections if s == "service" or not isinstance(cfg, StreamConfig)]


def available_engines() -> list:
    """pylstm, then ONNX Runtime and PyTorch where installed."""
    out = ["pylstm"]
    for name in ("onnxruntime", "torch"):
        try:
            __import__(name)
            out.append(name)
        except ImportError:
            continue
    return out


def output_agreement(folder: str, engines: list, n_points: int) -> list:
    """Per point: the largest |difference| of any engine's first output from pylstm's (the
    files the children wrote), or None where pylstm's is missing."""
    out = []
    for i in range(n_points):
        ref_path = os.path.join(folder, f"out-pylstm-{i}.npy")
        if not os.path.exists(ref_path):
            out.append(None)
            continue
        ref = np.load(ref_path)
        worst = 0.0
        for name in engines:
            path = os.path.join(folder, f"out-{name}-{i}.npy")
            if os.path.exists(path):
                worst = max(worst, float(np.max(np.abs(np.load(path) - ref))))
        out.append(worst)
    return out


@contextlib.contextmanager
def busy_core(settle_s: float = 0.2):
    """A child process spinning in a tight loop (one core busy) for the ``with`` block."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(settle_s)  # started and spinning
        yield proc
    finally:
        proc.kill()
        proc.wait()


def run_condition_sections(
    record: dict,
    configs: list,
    sections,
    *,
    threads: int,
    budget_s: float,
    out=sys.stdout,
) -> None:
    """Measure the named ``sections`` (of :data:`CONDITION_SECTIONS`) on ``configs``, print a
    table per section and append the entries to ``record["results"]``; ``record["machine"]``
    gets ``pylstm_backend`` (the kernel the engine chose) when a child reports it."""
    from .neighbours import measure_neighbours_point, measure_scaling_point
    from .report import Table
    from .service import service_entries, shared_entries

    sections = [s for s in CONDITION_SECTIONS if s in set(sections)]
    if not configs or not sections:
        return
    streams = [
        c for c in configs if isinstance(c, StreamConfig) and sections_measuring(c, sections)
    ]
    configs = [c for c in configs if not isinstance(c, StreamConfig)]
    if not configs and not streams:
        return

    def emit(kind, entries):  # entries: any iterable; each row printed as it comes
        table = None
        for entry in entries:
            if table is None:
                table = Table(kind, out)
                table.start()
            record["results"].append(entry)
            table.row(entry)
        if table is not None:
            table.finish()

    engines = available_engines()
    common = {"threads": threads, "budget_s": budget_s}
    with tempfile.TemporaryDirectory(prefix="pylstm-bench-") as folder:
        all_points = write_point_files(configs + streams, folder)
        points = all_points[: len(configs)]
        if "service" in sections or "shared" in sections:
            fewest = MIN_CALLS if budget_s >= QUICK_BUDGET_S else QUICK_MIN_CALLS
            spec = {**common, "min_calls": fewest, "max_calls": MAX_CALLS}
            spec.update(points=all_points, shared=False)
            # back to back (0): the reference of both sections
            gaps = [0, *SERVICE_GAPS_MS] if "service" in sections else [0]
            rounds = ALONE_ROUNDS if budget_s >= QUICK_BUDGET_S else 1
            alone, backend = measure_alone({**spec, "gaps_ms": gaps}, engines, folder, rounds)
            if backend:
                record["machine"]["pylstm_backend"] = backend
            diffs = output_agreement(folder, engines, len(all_points))
            backend = record["machine"].get("pylstm_backend")
            if "service" in sections:
                rows = service_entries(configs + streams, alone, SERVICE_GAPS_MS, diffs, backend)
                emit("service", rows)
            if "shared" in sections and len(engines) > 1:
                spec.update(points=points, engines=engines, shared=True)
                together = run_child(spec, folder, "all")
                emit("shared", shared_entries(configs, alone, together["points"], backend))
        in_process = [(c, p, engines) for c, p in zip(configs, points)]
        try:
            if "neighbours" in sections:
                emit("neighbours", (measure_neighbours_point(*a, **common) for a in in_process))
            if "scaling" in sections:
                cpus = pylstm.info()["cpus"]
                emit(
                    "scaling",
                    (e for a in in_process for e in measure_scaling_point(*a, cpus, **common)),
                )
        finally:
            load = load_average()
            if load:
                note = f"load average (1, 5, 15 min) after the {', '.join(sections)} sections: "
                record["notes"].append(note + ", ".join(f"{x:.2f}" for x in load))
            pylstm.set_num_threads(threads)
            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(threads)
