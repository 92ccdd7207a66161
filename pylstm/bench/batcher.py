"""``pylstm bench --sections batcher``: many concurrent streams, each sending single time steps
at Poisson-random times, served three ways on one torch module:

* ``batcher``: one :class:`pylstm.StreamBatcher` (``max_batch=256``, ``max_delay_ms=1``), each
  stream ``s.step(x)`` (cellular batching);
* ``stream``: each stream its own ``model.stream(1)``, ``stream.step(x[None])`` (B = 1 each);
* ``batcher_async``: the same batcher, each stream a coroutine awaiting ``s.astep(x)`` in one
  asyncio event loop (asyncio's timers wake up to 1 ms late, which the latencies include);
* ``onnxruntime``: one ONNX Runtime session of a T = 1 export of the module with the states as
  inputs and outputs (``h0``/``c0`` -> ``hn``/``cn``), each stream ``session.run`` with its own
  state (one intra-op thread: the client threads are the parallelism).

Clients: ``min(N, MAX_CLIENT_THREADS)`` OS threads, the same for all three; stream i belongs to
thread ``i % threads``, which sends the merged Poisson arrivals of its streams in time order and
blocks on each call. Open loop: the latency of a step is from its scheduled arrival to the
return of its call (so it includes waiting for a free client thread when the load is more than
the engine serves); throughput is the steps completed per second of the run. With one stream the
entry also holds the median time of one back-to-back ``step`` call of ``batcher`` and
``stream`` (each call timed on its own).
"""

from __future__ import annotations

import heapq
import threading
import time
from dataclasses import asdict, dataclass

import numpy as np

import pylstm

#: Client threads at most (1024 OS threads would mostly measure the scheduler).
MAX_CLIENT_THREADS = 128
METHODS = ("batcher", "batcher_async", "stream", "onnxruntime")


@dataclass(frozen=True)
class BatcherConfig:
    """N ``streams`` of a one-layer ``cell`` with I = H = ``hidden_size``, each sending single
    steps at ``rate_hz`` (Poisson)."""

    cell: str
    hidden_size: int
    streams: int
    rate_hz: float = 200.0

    @property
    def name(self) -> str:
        return f"{self.cell.upper()} H={self.hidden_size} N={self.streams} @{self.rate_hz:g}/s each"

    def as_dict(self) -> dict:
        return asdict(self)


#: The rate of the capacity rows: far more than any method serves on a small machine, so each
#: method's throughput there is the most it can serve (its capacity), not the offered load.
SATURATING_RATE_HZ = 2000.0


def batcher_configs(quick: bool = False) -> list:
    """LSTM and GRU at H = 64 and 256 with 1, 16, 256, 1024 streams at 200 steps/s each (a
    frame every 5 ms: latency at a service's load), then 256 streams at
    :data:`SATURATING_RATE_HZ` each (capacity). Quick: 1 and 256 streams at 200/s."""
    counts = (1, 256) if quick else (1, 16, 256, 1024)
    configs = [
        BatcherConfig(cell, hidden, n)
        for cell in ("lstm", "gru")
        for hidden in (64, 256)
        for n in counts
    ]
    if not quick:
        configs += [
            BatcherConfig(cell, hidden, 256, SATURATING_RATE_HZ)
            for cell in ("lstm", "gru")
            for hidden in (64, 256)
        ]
    return configs


class _Batcher:
    def __init__(self, model, n):
        self.batcher = pylstm.StreamBatcher(model, max_batch=256, max_delay_ms=1.0)
        self.streams = [self.batcher.open() for _ in range(n)]

    def step(self, i, x):
        return self.streams[i].step(x)

    def close(self):
        self.batcher.close()


class _Streams:
    def __init__(self, model, n):
        self.streams = [model.stream(1) for _ in range(n)]

    def step(self, i, x):
        return self.streams[i].step(x[None])[0]

    def close(self):
        pass


class _Ort:
    def __init__(self, module, n):
        from .peers import ort_session
        from .streaming import step_export

        example = np.zeros((1, 1, module.input_size), np.float32)
        _, _, inputs, self.out_names = export = step_export(module, example)
        self.session = ort_session(*export, 1)
        states = inputs[1:]  # h0 [, c0]
        self.lstm = len(states) == 2
        zero = np.zeros((1, 1, module.hidden_size), np.float32)
        self.feeds = [dict.fromkeys(states, zero) for _ in range(n)]

    def step(self, i, x):
        feeds = self.feeds[i]
        feeds["x"] = x.reshape(1, 1, -1)
        outs = self.session.run(self.out_names, feeds)
        feeds["h0"] = outs[1]
        if self.lstm:
            feeds["c0"] = outs[2]
        return outs[0][0, 0]

    def close(self):
        pass


def _arrivals(n: int, rate_hz: float, duration_s: float, threads: int, rng) -> list:
    """Per client thread: ``[(time, stream), ...]`` in time order (times from 0)."""
    per_thread = [[] for _ in range(threads)]
    for i in range(n):
        gaps = rng.exponential(1.0 / rate_hz, size=int(rate_hz * duration_s * 1.5) + 8)
        times = np.cumsum(gaps)
        times = times[times < duration_s]
        per_thread[i % threads].append([(float(t), i) for t in times])
    return [list(heapq.merge(*lists)) for lists in per_thread]


def _load_summary(latencies, schedule, start, end, duration_s, *, client_threads) -> dict:
    """Throughput and latency of one open-loop run: ``latencies`` per stream (seconds from each
    step's due time to its answer), ``schedule`` the arrivals offered over ``duration_s``."""
    lat = np.concatenate([np.asarray(x) for x in latencies if x]) * 1e3
    offered = sum(len(s) for s in schedule)
    return {
        "steps_per_s": len(lat) / (end - start),
        "offered_steps_per_s": offered / duration_s,
        "completed": len(lat) / max(offered, 1),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "client_threads": client_threads,
    }


def _drive(server, n: int, rate_hz: float, duration_s: float, xs, seed: int = 0) -> dict:
    """Run the open-loop load on ``server``; returns throughput and latency percentiles."""
    threads = min(n, MAX_CLIENT_THREADS)
    schedule = _arrivals(n, rate_hz, duration_s, threads, np.random.default_rng(seed))
    latencies = [[] for _ in range(threads)]
    start = time.perf_counter() + 0.05
    deadline = start + duration_s * 1.5  # overloaded clients stop sending here
    errors = []

    def client(k):
        lat = latencies[k]
        perf, sleep, step = time.perf_counter, time.sleep, server.step
        try:
            for t, i in schedule[k]:
                due = start + t
                now = perf()
                if due > now:
                    sleep(due - now)
                elif now > deadline:
                    break
                step(i, xs[i % len(xs)])
                lat.append(perf() - due)
        except BaseException as exc:  # reported below
            errors.append(exc)

    pool = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    end = time.perf_counter()
    if errors:
        raise errors[0]
    return _load_summary(latencies, schedule, start, end, duration_s, client_threads=threads)


def _drive_async(server, n: int, rate_hz: float, duration_s: float, xs, seed: int = 0) -> dict:
    """:func:`_drive` with asyncio clients: one event loop (in this thread), one coroutine per
    stream awaiting ``astep`` at its Poisson arrival times."""
    import asyncio

    schedule = _arrivals(n, rate_hz, duration_s, n, np.random.default_rng(seed))
    latencies = [[] for _ in range(n)]

    async def client(i, start, deadline):
        s, lat, perf = server.streams[i], latencies[i], time.perf_counter
        for t, _ in schedule[i]:
            due = start + t
            now = perf()
            if due > now:
                await asyncio.sleep(due - now)
            elif now > deadline:
                break
            await s.astep(xs[i % len(xs)])
            lat.append(perf() - due)

    async def main():
        start = time.perf_counter() + 0.05
        deadline = start + duration_s * 1.5
        await asyncio.gather(*(client(i, start, deadline) for i in range(n)))
        return start, time.perf_counter()

    start, end = asyncio.run(main())
    return _load_summary(latencies, schedule, start, end, duration_s, client_threads=0)


def _back_to_back_us(server, x, calls: int = 20000) -> float:
    """Median time of one call, each timed on its own (block means would be dominated by the
    rare calls that the OS preempts on a busy machine)."""
    perf, step = time.perf_counter, server.step
    times = np.empty(calls)
    for k in range(calls):
        t0 = perf()
        step(0, x)
        times[k] = perf() - t0
    return float(np.median(times) * 1e6)


def measure_batcher_point(cfg: BatcherConfig, *, budget_s: float = 2.0, seed: int = 0) -> dict:
    """One configuration, all three methods; a result entry of kind ``"batcher"``:
    ``<method>`` = {steps_per_s, p50_ms, p99_ms, ...}, ``throughput_vs_<peer>`` (batcher
    steps/s over the peer's), ``max_abs_diff`` (batcher vs stream outputs over 8 steps)."""
    import torch

    torch.manual_seed(seed)
    cls = torch.nn.LSTM if cfg.cell == "lstm" else torch.nn.GRU
    module = cls(cfg.hidden_size, cfg.hidden_size).eval()
    model = pylstm.from_torch(module)
    rng = np.random.default_rng(seed)
    xs = list(rng.standard_normal((64, cfg.hidden_size)).astype(np.float32))
    makers = {
        "batcher": lambda: _Batcher(model, cfg.streams),
        "batcher_async": lambda: _Batcher(model, cfg.streams),
        "stream": lambda: _Streams(model, cfg.streams),
        "onnxruntime": lambda: _Ort(module, cfg.streams),
    }
    entry = {"kind": "batcher", "name": cfg.name, "config": cfg.as_dict()}
    check = {}
    for method, make in makers.items():
        try:
            server = make()
        except ImportError as exc:
            entry.setdefault("skipped", {})[method] = str(exc)
            continue
        try:
            check[method] = np.stack([server.step(0, xs[t]) for t in range(8)])
            if cfg.streams == 1 and method in ("batcher", "stream"):
                entry[f"{method}_step_us"] = _back_to_back_us(server, xs[0])
            drive = _drive_async if method == "batcher_async" else _drive
            entry[method] = drive(server, cfg.streams, cfg.rate_hz, budget_s, xs, seed)
        finally:
            server.close()
    if "stream" in check:
        entry["max_abs_diff"] = float(max(np.abs(check[m] - check["stream"]).max() for m in check))
    for mine in ("batcher", "batcher_async"):
        for peer in ("stream", "onnxruntime"):
            if peer in entry and mine in entry:
                suffix = "_async" if mine == "batcher_async" else ""
                entry[f"throughput{suffix}_vs_{peer}"] = (
                    entry[mine]["steps_per_s"] / entry[peer]["steps_per_s"]
                )
    return entry


COLUMNS = (
    "config",
    *(
        f"{label} {what}"
        for label in ("batcher", "batcher asyncio", "stream", "ort")
        for what in ("steps/s", "p50 ms", "p99 ms")
    ),
    "x ort",
    "x ort asyncio",
)


def table_row(entry: dict) -> list:
    cells = [entry["name"]]
    for method in METHODS:
        m = entry.get(method)
        if m is None:
            cells += ["-", "-", "-"]
        else:
            cells += [f"{m['steps_per_s']:.0f}", f"{m['p50_ms']:.2f}", f"{m['p99_ms']:.2f}"]
    for key in ("throughput_vs_onnxruntime", "throughput_async_vs_onnxruntime"):
        r = entry.get(key)
        cells.append("-" if r is None else f"{r:.2f}")
    return cells


def markdown_table(entries: list) -> str:
    """The batcher entries of a record as a markdown table (README)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---" + "|---:" * (len(COLUMNS) - 1) + "|"]
    for e in entries:
        lines.append("| " + " | ".join(table_row(e)) + " |")
    single = [e for e in entries if "batcher_step_us" in e]
    for e in single:
        lines.append("")
        lines.append(
            f"- {e['name'].split(' N=')[0]}, one stream, back-to-back: `stream.step` "
            f"{e['stream_step_us']:.1f} us, batcher `step` {e['batcher_step_us']:.1f} us "
            f"({e['batcher_step_us'] - e['stream_step_us']:+.1f} us)"
        )
    return "\n".join(lines)


def _line(cells) -> str:
    return cells[0].ljust(28) + " ".join(c.rjust(9) for c in cells[1:])


def run_batcher_section(record: dict, configs: list, *, budget_s: float, out) -> None:
    """Measure ``configs``, print a table row per point, append the entries to ``record``."""
    if not configs:
        return
    import os

    if hasattr(os, "getloadavg"):
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        record["notes"].append(f"batcher section: load average (1, 5, 15 min) at its start: {load}")
    print("\nMany streams, one step per call at Poisson times (open loop)", file=out)
    short = ["config"] + [f"{m} {w}" for m in ("B", "BA", "S", "O") for w in ("st/s", "p50", "p99")]
    print(_line([*short, "x O", "x O (BA)"]), file=out)
    for cfg in configs:
        entry = measure_batcher_point(cfg, budget_s=budget_s)
        record["results"].append(entry)
        row = table_row(entry)
        print(_line(row), file=out, flush=True)
    print(
        f"  B: batcher, BA: batcher with asyncio clients, S: stream.step per stream, O: ONNX "
        f"Runtime session.run per stream; clients: min(N, {MAX_CLIENT_THREADS}) threads (BA: "
        "one event loop); p50/p99 ms from the scheduled arrival; x O = steps/s over O's",
        file=out,
    )
