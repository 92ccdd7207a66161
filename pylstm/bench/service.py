"""The service and shared sections' result entries, from the raw times of the child processes
(:mod:`.conditions_child`, run by :func:`.conditions.run_condition_sections`).

* **service**: each engine alone in its own process; per idle gap (2 ms, 20 ms of sleep before
  every call) the median and the 99th percentile of the calls, and the same engine back to back
  (no gap) for reference. ``speedup_vs_<peer>`` is the ratio of medians (peer / pylstm),
  ``p99_speedup_vs_<peer>`` the ratio of 99th percentiles; ``<engine>_idle_slowdown`` = median
  after the gap / median back to back (what waking up costs that engine).
* **shared**: pylstm, ONNX Runtime and PyTorch in one process taking turns, one call each, back
  to back (a service that also runs torch or ONNX Runtime models), against each engine alone in
  its own process, back to back. ``<engine>_slowdown`` = shared median / alone median;
  ``slowdown_vs_<peer>`` = pylstm's slowdown / the peer's (> 1: pylstm suffers more);
  ``speedup_vs_<peer>`` compares the shared medians.
"""

from __future__ import annotations

import numpy as np

PEERS = ("onnxruntime", "torch")


def _ms(samples) -> np.ndarray:
    return np.asarray(samples, dtype=np.float64) * 1e3


def _ratios(entry: dict, key: str, prefix: str = "") -> None:
    """``<prefix>speedup_vs_<peer>`` = ``<peer><key>`` / ``pylstm<key>`` for every peer there."""
    mine = entry.get(f"pylstm{key}")
    for peer in PEERS:
        theirs = entry.get(f"{peer}{key}")
        if mine and theirs:
            entry[f"{prefix}speedup_vs_{peer}"] = theirs / mine


def service_entries(configs: list, alone: dict, gaps_ms, diffs: list, backend=None) -> list:
    """Entries of kind ``"service"``, one per configuration and gap.

    Parameters
    ----------
    configs : list of BenchConfig
    alone : dict
        ``{engine: [per point {gap_ms (str): [seconds per call, ...]}]}``, gap ``"0"`` being
        back to back.
    gaps_ms : sequence of int
        The gaps to report (each must be in ``alone``).
    diffs : list
        Per point, the largest output difference from pylstm's (or None).
    backend : str, optional
        pylstm's kernel (``model.engine.backend``).

    Returns
    -------
    list of dict
        ``name``, ``config``, ``gap_ms``, ``<engine>_median_ms``, ``<engine>_p99_ms``,
        ``<engine>_back_to_back_ms``, ``<engine>_idle_slowdown``, ``calls`` ({engine: n}),
        ``speedup_vs_<peer>``, ``p99_speedup_vs_<peer>``, ``max_abs_diff``, ``pylstm_backend``.
    """
    entries = []
    for i, cfg in enumerate(configs):
        for gap in gaps_ms:
            entry = {
                "kind": "service",
                "name": f"{cfg.name}, {gap} ms gaps",
                "config": cfg.as_dict(),
                "gap_ms": gap,
                "calls": {},
            }
            for name, points in alone.items():
                times = _ms(points[i][str(gap)])
                entry[f"{name}_median_ms"] = float(np.median(times))
                entry[f"{name}_p99_ms"] = float(np.percentile(times, 99))
                entry["calls"][name] = len(times)
                if "0" in points[i]:
                    burst = float(np.median(_ms(points[i]["0"])))
                    entry[f"{name}_back_to_back_ms"] = burst
                    entry[f"{name}_idle_slowdown"] = entry[f"{name}_median_ms"] / burst
            _ratios(entry, "_median_ms")
            _ratios(entry, "_p99_ms", prefix="p99_")
            if diffs[i] is not None:
                entry["max_abs_diff"] = diffs[i]
            if backend:
                entry["pylstm_backend"] = backend
            entries.append(entry)
    return entries


def shared_entries(configs: list, alone: dict, together: list, backend=None) -> list:
    """Entries of kind ``"shared"``, one per configuration.

    Parameters
    ----------
    configs : list of BenchConfig
    alone : dict
        As for :func:`service_entries`; the back-to-back times (gap ``"0"``) are used.
    together : list
        Per point ``{engine: [seconds per call, ...]}`` from the child running every engine in
        turn.

    Returns
    -------
    list of dict
        ``name``, ``config``, ``<engine>_alone_ms``, ``<engine>_shared_ms``,
        ``<engine>_slowdown``, ``speedup_vs_<peer>`` (shared medians),
        ``alone_speedup_vs_<peer>``, ``slowdown_vs_<peer>``, ``calls``, ``pylstm_backend``.
    """
    entries = []
    for i, cfg in enumerate(configs):
        entry = {"kind": "shared", "name": cfg.name, "config": cfg.as_dict(), "calls": {}}
        for name, times in together[i].items():
            shared = float(np.median(_ms(times)))
            entry[f"{name}_shared_ms"] = shared
            entry["calls"][name] = len(times)
            if name in alone and "0" in alone[name][i]:
                entry[f"{name}_alone_ms"] = float(np.median(_ms(alone[name][i]["0"])))
                entry[f"{name}_slowdown"] = shared / entry[f"{name}_alone_ms"]
        _ratios(entry, "_shared_ms")
        _ratios(entry, "_alone_ms", prefix="alone_")
        for peer in PEERS:
            if "pylstm_slowdown" in entry and f"{peer}_slowdown" in entry:
                entry[f"slowdown_vs_{peer}"] = entry["pylstm_slowdown"] / entry[f"{peer}_slowdown"]
        if backend:
            entry["pylstm_backend"] = backend
        entries.append(entry)
    return entries
