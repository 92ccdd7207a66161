"""Interleaved timing of several engines: medians of bursts, rounds capped by a time budget.

Why bursts with an untimed first call: ONNX Runtime's, OpenMP's and pylstm's thread pools keep
spinning for a moment after a call returns. On a machine with few cores, the first call of the
next engine then competes with those spinning threads. Each engine's burst starts with a call
that is not timed and absorbs the previous engine's spinning; the order of engines rotates each
round so that slower drifts of the machine (another process, clock changes) hit all alike.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

#: Calls longer than this (seconds) are not preceded by an untimed call: a spinning pool costs
#: at most a few milliseconds, negligible next to them, and the extra call would double the cost.
LEAD_CALL_BELOW_S = 0.05


@dataclass
class Timings:
    """What :func:`measure` found.

    Attributes
    ----------
    median_s : dict
        ``{engine name: median seconds per call}``.
    samples : dict
        ``{engine name: number of timed calls}``.
    rounds : int
        Rounds of interleaved bursts.
    """

    median_s: dict = field(default_factory=dict)
    samples: dict = field(default_factory=dict)
    rounds: int = 0


def time_call(fn) -> float:
    """Seconds one call of ``fn()`` takes (wall clock)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(
    engines: list,
    budget_s: float,
    *,
    min_rounds: int = 3,
    max_rounds: int = 200,
    max_burst: int = 20,
    burst_s: float = 0.003,
) -> Timings:
    """Median seconds per call of each engine, measured interleaved.

    Parameters
    ----------
    engines : list
        Objects with a ``name`` (str) and a ``run()`` method (one call to time); already warm
        (called at least once).
    budget_s : float
        Seconds to spend timing, roughly. The per-call time of each engine is measured first;
        the number of rounds is ``budget_s`` / (time of one round), clipped to
        [``min_rounds``, ``max_rounds``], so slow points take at least ``min_rounds`` rounds and
        fast ones stop at ``max_rounds``.
    max_burst, burst_s : int, float
        Timed calls per engine per round: enough to fill ``burst_s`` seconds, at least 1, at most
        ``max_burst``.

    Returns
    -------
    Timings
    """
    per_call = {}
    for e in engines:
        first = time_call(e.run)
        # A second look only where it is cheap: it filters a one-off hiccup of the first.
        per_call[e.name] = first if first > 0.02 else min(first, time_call(e.run))
    burst = {n: int(min(max_burst, max(1, burst_s / max(t, 1e-9)))) for n, t in per_call.items()}
    lead = {n: t < LEAD_CALL_BELOW_S for n, t in per_call.items()}
    round_s = sum(per_call[n] * (burst[n] + lead[n]) for n in per_call)
    rounds = int(min(max_rounds, max(min_rounds, budget_s / max(round_s, 1e-9))))
    samples = {e.name: [] for e in engines}
    for r in range(rounds):
        for k in range(len(engines)):
            e = engines[(r + k) % len(engines)]
            if lead[e.name]:
                e.run()
            samples[e.name].extend(time_call(e.run) for _ in range(burst[e.name]))
    return Timings(
        median_s={n: statistics.median(v) for n, v in samples.items()},
        samples={n: len(v) for n, v in samples.items()},
        rounds=rounds,
    )
