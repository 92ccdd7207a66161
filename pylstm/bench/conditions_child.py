"""The child process of the service and shared sections: ``python -m pylstm.bench.conditions_child
SPEC.json``.

A child holds only the engines its spec names, so an engine measured alone never shares its
process with another engine's thread pool: the pylstm child imports neither torch nor ONNX
Runtime (it reads the PyTorch state dict with ``pylstm.load``); the ONNX Runtime and torch
children import their engine and pylstm's package (this module lives there), whose thread pool
never starts in them since they make no pylstm call. The parent (:mod:`pylstm.bench.conditions`) writes the
models and inputs to files, runs one child at a time and reads back the raw times.

Spec (JSON): ``engines`` (names), ``threads``, ``budget_s``, ``min_calls``, ``max_calls``,
``gaps_ms`` (idle gaps before each call; 0 = back to back), ``shared`` (true: the engines take
turns, one call each, back to back), ``points`` (per point: ``config``, ``pt``, ``onnx``, ``x``
file paths; ``stream``: one step per call, the state carried, over the input pool ``x``),
``folder`` (where to write). Result: ``<folder>/result-<tag>.json`` with
``backend`` (pylstm's kernel) and per point ``{engine: {gap_ms: [seconds, ...]}}`` or, shared,
``{engine: [seconds, ...]}``; each engine's first output goes to ``out-<engine>-<point>.npy``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np

#: Untimed calls before timing: at least this many, and at least WARM_S seconds of them.
WARM_CALLS = 3
WARM_S = 0.05
#: Timing of one engine, point and gap stops after CAP_BUDGETS x budget_s seconds (at least
#: CAP_MIN_S), once it has FEWEST_CALLS calls: on a loaded machine calls can take 100 times longer
#: than on a quiet one, and the run must still end.
CAP_BUDGETS = 3
CAP_MIN_S = 0.25
FEWEST_CALLS = 5


def _pylstm_engine(point: dict, threads: int):
    import pylstm

    pylstm.set_num_threads(threads)
    model = pylstm.load(point["pt"])  # time-major, as the torch module
    x = np.load(point["x"])
    if point.get("stream"):
        from .streaming import PylstmStream

        return PylstmStream(model, x).run, model.engine.backend
    return (lambda: model(x)[0]), model.engine.backend


def _onnxruntime_engine(point: dict, threads: int):
    from .peers import open_ort_session

    session = open_ort_session(point["onnx"], threads)
    x = np.load(point["x"])
    if point.get("stream"):
        from .streaming import OnnxRuntimeStream

        return OnnxRuntimeStream(session, x).run, None
    feeds = {"x": x}
    return (lambda: session.run(["y"], feeds)[0]), None


def _torch_engine(point: dict, threads: int):
    import torch

    from .peers import make_torch_module

    torch.set_num_threads(threads)
    module = make_torch_module(_Config(point["config"]))
    module.load_state_dict(torch.load(point["pt"], weights_only=True))
    x = np.load(point["x"])
    if point.get("stream"):
        from .streaming import TorchStream

        return TorchStream(module, x).run, None
    xt = torch.from_numpy(x)

    def run():
        with torch.inference_mode():
            return module(xt)[0].numpy()

    return run, None


ENGINES = {"pylstm": _pylstm_engine, "onnxruntime": _onnxruntime_engine, "torch": _torch_engine}


class _Config:
    """Attribute access to a BenchConfig's dict (all :func:`make_torch_module` reads)."""

    def __init__(self, fields: dict):
        self.__dict__.update(fields)


def warm(run) -> float:
    """Untimed calls (``WARM_CALLS``, at least ``WARM_S`` seconds); the median call in seconds."""
    times = []
    until = time.perf_counter() + WARM_S
    while len(times) < WARM_CALLS or time.perf_counter() < until:
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def calls_for(spec: dict, seconds_per_call: float) -> int:
    """Calls that fill ``budget_s``, clipped to [``min_calls``, ``max_calls``]."""
    n = int(spec["budget_s"] / max(seconds_per_call, 1e-6))
    return max(spec["min_calls"], min(spec["max_calls"], n))


def cap_s(spec: dict) -> float:
    return max(CAP_MIN_S, CAP_BUDGETS * spec["budget_s"])


def timed_calls(run, calls: int, gap_s: float, cap_s: float = float("inf")) -> list:
    """Seconds of each of ``calls`` calls, each after ``gap_s`` seconds of sleep (0: none);
    fewer (at least :data:`FEWEST_CALLS`) when they take more than ``cap_s`` seconds in all."""
    perf, sleep, out = time.perf_counter, time.sleep, []
    deadline = perf() + cap_s
    for _ in range(calls):
        if len(out) >= FEWEST_CALLS and perf() > deadline:
            break
        if gap_s:
            sleep(gap_s)
        start = perf()
        run()
        out.append(perf() - start)
    return out


def pair_cycle(n: int) -> list:
    """A cyclic order of ``n`` engines (indices) in which every ordered pair of two different
    engines occurs exactly once as neighbours (wrapping around): an Euler circuit of the complete
    directed graph, ``n * (n - 1)`` long, each engine ``n - 1`` times; ``[0]`` for one engine."""
    if n < 2:
        return [0] * n
    unused = {i: [j for j in range(n) if j != i] for i in range(n)}  # edges i -> j left
    stack, circuit = [0], []
    while stack:  # Hierholzer
        node = stack[-1]
        if unused[node]:
            stack.append(unused[node].pop())
        else:
            circuit.append(stack.pop())
    circuit.reverse()
    return circuit[:-1]  # the last returns to the first


def measure_point(spec: dict, point: dict, index: int, backend: dict) -> dict:
    runs = {}
    for name in spec["engines"]:
        run, kernel = ENGINES[name](point, spec["threads"])
        np.save(f"{spec['folder']}/out-{name}-{index}.npy", run())
        if kernel:
            backend["pylstm"] = kernel
        runs[name] = run
    per_call = {name: warm(run) for name, run in runs.items()}
    if spec.get("shared"):  # the engines take turns, one call each, back to back
        calls = calls_for(spec, sum(per_call.values()))
        samples = {name: [] for name in runs}
        perf = time.perf_counter
        deadline = perf() + cap_s(spec) * len(runs)
        # Every engine follows every other one equally often (an engine right after PyTorch or
        # ONNX Runtime meets their threads still spinning): the calls go round a cycle in
        # which each ordered pair of engines occurs once.
        names = list(runs)
        cycle = [names[i] for i in pair_cycle(len(names))]
        for k in range(calls * len(names)):
            if min(map(len, samples.values())) >= FEWEST_CALLS and perf() > deadline:
                break
            name = cycle[k % len(cycle)]
            start = perf()
            runs[name]()
            samples[name].append(perf() - start)
        return samples
    out = {}
    for name, run in runs.items():
        out[name] = {}
        for gap_ms in spec["gaps_ms"]:
            calls = calls_for(spec, per_call[name] + gap_ms / 1e3)
            warm(run)  # the pool awake again after the previous gap's last call
            out[name][str(gap_ms)] = timed_calls(run, calls, gap_ms / 1e3, cap_s(spec))
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as fh:
        spec = json.load(fh)
    backend = {}
    points = [measure_point(spec, p, i, backend) for i, p in enumerate(spec["points"])]
    result = {"backend": backend.get("pylstm"), "points": points}
    with open(f"{spec['folder']}/result-{spec['tag']}.json", "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
