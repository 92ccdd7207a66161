"""The neighbours and scaling sections: the engines in one process, timed interleaved with
:func:`pylstm.bench.timing.measure` as in the grid, under two different conditions.

* **neighbours**: once on a quiet machine, once while another process keeps one core busy (a
  child spinning in a tight loop, :func:`.conditions.busy_core`). A team of threads that waits
  for each of its members every step loses most when one of them shares its core with a
  process that never sleeps. ``<engine>_slowdown`` = busy median / quiet median;
  ``speedup_vs_<peer>`` compares the engines while the neighbour spins,
  ``quiet_speedup_vs_<peer>`` without it.
* **scaling**: each engine at one thread, then at all CPUs this process may use; one entry per
  thread count (``speedup_vs_<peer>`` at that count) and, on the all-CPUs entry,
  ``<engine>_thread_speedup`` = one-thread time / all-CPUs time.
"""

from __future__ import annotations

import pylstm

from .peers import PylstmPeer, make_input, make_peers, make_reference_peers, require_torch_module
from .timing import measure

PEERS = ("onnxruntime", "torch")


def _with_ratios(entry: dict, medians: dict, key: str, prefix: str = "") -> None:
    for name, seconds in medians.items():
        entry[f"{name}{key}"] = seconds * 1e3
    for peer in PEERS:
        if peer in medians:
            entry[f"{prefix}speedup_vs_{peer}"] = medians[peer] / medians["pylstm"]


def measure_neighbours_point(cfg, *, threads: int, budget_s: float) -> dict:
    """One configuration, quiet and then with one core kept busy by another process.

    Returns
    -------
    dict
        An entry of kind ``"neighbours"``: ``<engine>_quiet_ms``, ``<engine>_busy_ms``,
        ``<engine>_slowdown``, ``speedup_vs_<peer>`` (busy), ``quiet_speedup_vs_<peer>``,
        ``slowdown_vs_<peer>`` (pylstm's slowdown / the peer's), ``pylstm_backend``.
    """
    from .conditions import busy_core

    pylstm.set_num_threads(threads)
    peers = make_peers(cfg, threads)
    for p in peers:
        p.run()
    quiet = measure(peers, budget_s)
    with busy_core():
        busy = measure(peers, budget_s)
    entry = {"kind": "neighbours", "name": cfg.name, "config": cfg.as_dict()}
    _with_ratios(entry, busy.median_s, "_busy_ms")
    _with_ratios(entry, quiet.median_s, "_quiet_ms", prefix="quiet_")
    for name in busy.median_s:
        entry[f"{name}_slowdown"] = busy.median_s[name] / quiet.median_s[name]
    for peer in PEERS:
        if peer in busy.median_s:
            entry[f"slowdown_vs_{peer}"] = entry["pylstm_slowdown"] / entry[f"{peer}_slowdown"]
    entry["pylstm_backend"] = peers[0].model.engine.backend
    entry["samples"] = {"quiet": quiet.samples, "busy": busy.samples}
    return entry


def measure_scaling_point(cfg, cpus: int, *, threads: int, budget_s: float) -> list:
    """One configuration at one thread and at ``cpus`` threads, every engine; ``threads`` (the
    run's) is restored afterwards.

    Returns
    -------
    list of dict
        Entries of kind ``"scaling"``, one per thread count: ``threads``, ``<engine>_ms``,
        ``speedup_vs_<peer>``; the last (``cpus`` threads) adds ``<engine>_thread_speedup``.
    """
    import torch

    module = require_torch_module(cfg)
    x = make_input(cfg)
    medians = {}
    entries = []
    try:
        for n in sorted({1, cpus}):
            pylstm.set_num_threads(n)
            peers = [PylstmPeer(cfg, module, x), *make_reference_peers(cfg, module, x, n)]
            for p in peers:
                p.run()
            medians[n] = measure(peers, budget_s).median_s
            label = f"{n} thread" + ("s" if n > 1 else "")
            entry = {"kind": "scaling", "name": f"{cfg.name}, {label}", "config": cfg.as_dict()}
            entry["threads"] = n
            _with_ratios(entry, medians[n], "_ms")
            if n > 1:
                for name, seconds in medians[n].items():
                    entry[f"{name}_thread_speedup"] = medians[1][name] / seconds
            entry["pylstm_backend"] = peers[0].model.engine.backend
            entries.append(entry)
    finally:
        pylstm.set_num_threads(threads)
        torch.set_num_threads(threads)
    return entries
