"""The neighbours and scaling sections: the engines in one process (this one), built from the
files of :func:`.conditions.write_point_files`, timed interleaved with
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

from .conditions_child import ENGINES
from .timing import measure

PEERS = ("onnxruntime", "torch")


class _Peer:
    """An engine as :func:`measure` wants it: ``name`` and ``run()``."""

    def __init__(self, name: str, run):
        self.name, self.run = name, run


def make_file_peers(point: dict, engines, threads: int) -> tuple:
    """The ``engines`` on the files of ``point`` (from :func:`.conditions.write_point_files`),
    each at ``threads`` threads (pylstm and torch: their process-wide setting), warmed by one
    call. Returns ``(peers, pylstm_backend)``."""
    peers, backend = [], None
    for name in engines:
        run, kernel = ENGINES[name](point, threads)
        run()
        backend = kernel or backend
        peers.append(_Peer(name, run))
    return peers, backend


def _with_ratios(entry: dict, medians: dict, key: str, prefix: str = "") -> None:
    for name, seconds in medians.items():
        entry[f"{name}{key}"] = seconds * 1e3
    for peer in PEERS:
        if peer in medians:
            entry[f"{prefix}speedup_vs_{peer}"] = medians[peer] / medians["pylstm"]


def measure_neighbours_point(cfg, point: dict, engines, *, threads: int, budget_s: float) -> dict:
    """One configuration, quiet and then with one core kept busy by another process.

    Parameters
    ----------
    cfg : BenchConfig
    point : dict
        Its model and input files (:func:`.conditions.write_point_files`).
    engines : list of str
        ``pylstm`` first, then the peers to compare with.

    Returns
    -------
    dict
        An entry of kind ``"neighbours"``: ``<engine>_quiet_ms``, ``<engine>_busy_ms``,
        ``<engine>_slowdown``, ``speedup_vs_<peer>`` (busy), ``quiet_speedup_vs_<peer>``,
        ``slowdown_vs_<peer>`` (pylstm's slowdown / the peer's), ``pylstm_backend``.
    """
    from .conditions import busy_core

    peers, backend = make_file_peers(point, engines, threads)
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
    entry["pylstm_backend"] = backend
    entry["samples"] = {"quiet": quiet.samples, "busy": busy.samples}
    return entry


def measure_scaling_point(
    cfg, point: dict, engines, cpus: int, *, threads: int, budget_s: float
) -> list:
    """One configuration at one thread and at ``cpus`` threads, every engine (the caller
    restores the run's thread counts afterwards).

    Returns
    -------
    list of dict
        Entries of kind ``"scaling"``, one per thread count: ``threads``, ``<engine>_ms``,
        ``speedup_vs_<peer>``; the last (``cpus`` threads) adds ``<engine>_thread_speedup``.
    """
    medians = {}
    entries = []
    for n in sorted({1, cpus}):
        peers, backend = make_file_peers(point, engines, n)
        medians[n] = measure(peers, budget_s).median_s
        label = f"{n} thread" + ("s" if n > 1 else "")
        entry = {"kind": "scaling", "name": f"{cfg.name}, {label}", "config": cfg.as_dict()}
        entry["threads"] = n
        _with_ratios(entry, medians[n], "_ms")
        if n > 1:
            for name, seconds in medians[n].items():
                entry[f"{name}_thread_speedup"] = medians[1][name] / seconds
        entry["pylstm_backend"] = backend
        entries.append(entry)
    return entries
