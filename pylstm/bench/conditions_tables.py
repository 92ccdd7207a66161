"""Tables of the service-condition sections (service, shared, neighbours, scaling), in the form
of :data:`pylstm.bench.report.SECTIONS`: ``{kind: (title, columns, footnotes)}``, each column
``(header, key of the result entry, format spec, width)``. Times in ms."""

from __future__ import annotations

_CONFIG = ("config", "name", "s", 50)
_T = ".4g"  # ms from 0.01 to 1000 with four digits


def _per_engine(what: str, key: str) -> list:
    short = {"pylstm": "pylstm", "onnxruntime": "ort", "torch": "torch"}
    spec = _T if key.endswith("_ms") else ".2f"
    return [
        (f"{s} {what}", f"{e}{key}", spec, max(8, len(s) + len(what) + 1)) for e, s in short.items()
    ]


def _ratios(prefix: str = "", label: str = "") -> list:
    return [
        (f"x ort{label}", f"{prefix}speedup_vs_onnxruntime", ".2f", 6 + len(label)),
        (f"x torch{label}", f"{prefix}speedup_vs_torch", ".2f", 8 + len(label)),
    ]


RATIOS = (
    "x ort = ONNX Runtime time / pylstm time, x torch = PyTorch time / pylstm time: > 1 means "
    "pylstm is faster."
)
SLOWDOWN = "slow = time in this condition / the same engine's time without it (> 1: slower)."

CONDITION_TABLES = {
    "service": (
        "Service: calls after idle gaps, each engine alone in its own process; ms per call",
        [
            _CONFIG,
            *_per_engine("med", "_median_ms"),
            *_per_engine("p99", "_p99_ms"),
            *_ratios(),
            *_ratios("p99_", " p99"),
            *_per_engine("idle", "_idle_slowdown"),
        ],
        [
            RATIOS + " x ... p99: the same for the 99th percentiles.",
            "med, p99: median and 99th percentile of the calls, each after the gap's sleep.",
            "idle = median after the gap / median of back-to-back calls (what waking costs).",
        ],
    ),
    "shared": (
        "Shared: pylstm, ONNX Runtime and PyTorch taking turns in one process; ms per call",
        [
            _CONFIG,
            *_per_engine("alone", "_alone_ms"),
            *_per_engine("shared", "_shared_ms"),
            *_per_engine("slow", "_slowdown"),
            *_ratios(),
            ("slow vs ort", "slowdown_vs_onnxruntime", ".2f", 11),
        ],
        [
            RATIOS + " (shared times)",
            "alone: back to back, each engine in its own process; shared: one call of each "
            "engine in turn, back to back, in one process.",
            SLOWDOWN + " slow vs ort = pylstm's slow / ONNX Runtime's (> 1: pylstm suffers more).",
        ],
    ),
    "neighbours": (
        "Neighbours: another process keeps one core busy; engines in one process, ms per call",
        [
            _CONFIG,
            *_per_engine("quiet", "_quiet_ms"),
            *_per_engine("busy", "_busy_ms"),
            *_per_engine("slow", "_slowdown"),
            *_ratios(),
            *_ratios("quiet_", " quiet"),
        ],
        [
            RATIOS + " (busy times; x ... quiet: without the neighbour)",
            "busy: while a child process spins in a tight loop; quiet: without it.",
            SLOWDOWN + " slow vs ort in the JSON: pylstm's slow / ONNX Runtime's.",
        ],
    ),
    "scaling": (
        "Scaling: one thread against all CPUs, every engine; median ms per call",
        [
            _CONFIG,
            ("pylstm ms", "pylstm_ms", _T, 10),
            ("ort ms", "onnxruntime_ms", _T, 9),
            ("torch ms", "torch_ms", _T, 9),
            *_ratios(),
            *_per_engine("gain", "_thread_speedup"),
        ],
        [
            RATIOS + " (at the row's thread count)",
            "gain = time at one thread / time at all CPUs, per engine (the all-CPUs row).",
        ],
    ),
}

#: How the summary names each section's rows.
CONDITION_NAMES = {
    "service": "service rows (ratio of medians)",
    "shared": "shared-process points",
    "neighbours": "busy-neighbour points",
    "scaling": "scaling rows",
}
