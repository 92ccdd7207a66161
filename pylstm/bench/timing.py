"""Interleaved timing of several engines: medians of bursts, rounds capped by a time budget.

Why a quiet gap and untimed warm-up calls before each burst: thread pools keep spinning after a
call returns (ONNX Runtime's for 20-30 ms, measured on this project's 2-core machines; OpenMP's
and pylstm's for less), and on a machine with few cores the next engine's threads then share
their CPUs with those spinners. Each burst therefore starts after ``quiet_s`` of idleness, which
lets every other pool go to sleep. After such a gap the machine itself needs time to come back
to full speed: on this project's virtual machines the first calls after 50 ms of idleness take
10-25% longer, for every engine, and the slowdown fades over about 20 ms. So each burst is led by
untimed calls of the same engine for ``warm_s`` (which also wake its own pool). The order of
engines rotates each round so that slower drifts of the machine (another process, clock changes)
hit all alike.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

#: Calls longer than this (seconds) get no untimed warm-up call: a spinning pool or a slow start
#: costs at most a few milliseconds, negligible next to them, and the extra call would double the
#: cost.
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
    burst_s: float = 0.01,
    quiet_s: float = 0.05,
    warm_s: float = 0.02,
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
    quiet_s : float
        Idle seconds before each burst (counted in the budget), so that no other engine's
        threads are still spinning.
    warm_s : float
        Seconds of untimed calls (at least one) between the quiet gap and the burst, for calls
        shorter than ``LEAD_CALL_BELOW_S``.

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
    # seconds of untimed calls before each burst (0: none)
    lead_s = {n: max(t, warm_s) if t < LEAD_CALL_BELOW_S else 0.0 for n, t in per_call.items()}
    round_s = sum(per_call[n] * burst[n] + lead_s[n] + quiet_s for n in per_call)
    rounds = int(min(max_rounds, max(min_rounds, budget_s / max(round_s, 1e-9))))
    samples = {e.name: [] for e in engines}
    for r in range(rounds):
        for k in range(len(engines)):
            e = engines[(r + k) % len(engines)]
            time.sleep(quiet_s)
            if lead_s[e.name]:
                warm_until = time.perf_counter() + warm_s
                e.run()
                while time.perf_counter() < warm_until:
                    e.run()
            samples[e.name].extend(time_call(e.run) for _ in range(burst[e.name]))
    return Timings(
        median_s={n: statistics.median(v) for n, v in samples.items()},
        samples={n: len(v) for n, v in samples.items()},
        rounds=rounds,
    )
