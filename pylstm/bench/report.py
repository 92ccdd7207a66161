"""Printing a benchmark record: header, one table per section, footnotes and the summary. The
same functions print rows as they are measured and re-print a recorded JSON file."""

from __future__ import annotations

import json
import math
import sys

from .conditions_tables import CONDITION_NAMES, CONDITION_TABLES

PEERS = ("onnxruntime", "torch")
PEER_LABELS = {"onnxruntime": "ONNX Runtime", "torch": "PyTorch"}

# (header, key of the result entry, format spec, width); "%" formats a fraction as a percentage.
_CONFIG = ("config", "name", "s", 42)
_RATIOS = [("x ort", "speedup_vs_onnxruntime", ".2f", 6), ("x torch", "speedup_vs_torch", ".2f", 7)]
_THROUGHPUT = [
    ("GFLOP/s", "pylstm_gflops", ".1f", 8),
    ("% ceil", "ceiling_fraction", "%", 6),
    ("% peak", "peak_fraction", "%", 6),
]
_MS = [
    ("pylstm ms", "pylstm_ms", ".3f", 10),
    ("ort ms", "onnxruntime_ms", ".3f", 9),
    ("torch ms", "torch_ms", ".3f", 9),
]
GRID_COLUMNS = [_CONFIG, *_MS, *_RATIOS, *_THROUGHPUT, ("max|diff|", "max_abs_diff", ".1e", 9)]
PRECISION_COLUMNS = [
    _CONFIG,
    ("prec", "precision", "s", 5),
    *_MS,
    *_RATIOS,
    *_THROUGHPUT,
    ("|diff| vs torch", "max_abs_diff_vs_torch_fp32", ".1e", 15),
]
STREAM_COLUMNS = [
    _CONFIG,
    ("pylstm us", "pylstm_us", ".1f", 10),
    ("ort us", "onnxruntime_us", ".1f", 9),
    ("torch us", "torch_us", ".1f", 9),
    *_RATIOS,
    ("max|diff|", "max_abs_diff", ".1e", 9),
]

RATIO_FOOTNOTE = (
    "x ort = ONNX Runtime time / pylstm time, x torch = PyTorch time / pylstm time: "
    "> 1 means pylstm is faster."
)
SECTIONS = {
    "grid": (
        "Whole sequences: one call on [T, B, I], median ms per call",
        GRID_COLUMNS,
        [
            RATIO_FOOTNOTE,
            "GFLOP/s: pylstm's gate-GEMM flops per second; % ceil: of the GEMM ceiling above; "
            "% peak: of the FMA peak above.",
            "max|diff|: largest output difference between pylstm and the peers.",
        ],
    ),
    "precision": (
        "Reduced precision: pylstm weights at each precision; ONNX Runtime and PyTorch at fp32",
        PRECISION_COLUMNS,
        [RATIO_FOOTNOTE, "|diff| vs torch: largest |pylstm output - PyTorch fp32 output|."],
    ),
    "stream": (
        "Streaming: B = 1, one time step per call from Python, state carried; median us per call",
        STREAM_COLUMNS,
        [
            RATIO_FOOTNOTE,
            "max|diff|: largest difference of the streamed outputs from PyTorch on the whole "
            "sequence.",
        ],
    ),
}

SECTIONS.update(CONDITION_TABLES)  # service, shared, neighbours, scaling


def _cell(entry: dict, key: str, spec: str) -> str:
    value = entry.get(key)
    if value is None:
        return "-"
    if spec == "%":
        return f"{100 * value:.0f}%"
    return format(value, spec)


def _line(cells: list, widths: list) -> str:
    return "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
    ).rstrip()


class Table:
    """One section's table, printed a row at a time: ``start()``, ``row(entry)`` per result
    entry, ``finish()`` (the footnotes)."""

    def __init__(self, kind: str, out=sys.stdout):
        self.title, self.columns, self.footnotes = SECTIONS[kind]
        self.out = out
        self.widths = [w for _, _, _, w in self.columns]

    def start(self) -> None:
        print(f"\n{self.title}", file=self.out)
        print(_line([h for h, _, _, _ in self.columns], self.widths), file=self.out)

    def row(self, entry: dict) -> None:
        cells = [_cell(entry, key, spec) for _, key, spec, _ in self.columns]
        print(_line(cells, self.widths), file=self.out, flush=True)

    def finish(self) -> None:
        for note in self.footnotes:
            print(f"  {note}", file=self.out)


def header_lines(record: dict) -> list:
    """The lines above the tables: machine, versions, threads, GEMM ceiling, FMA peak."""
    m, v = record["machine"], record["versions"]
    lines = [
        f"pylstm {v['pylstm']} on {m['cpu']} ({m['cpus']} CPUs, {m['simd']}); "
        f"{record['threads']} thread(s) for every engine; {record['date']}",
        "peers: " + ", ".join(f"{k} {v[k]}" for k in ("onnxruntime", "torch", "numpy") if k in v),
        "times: medians of interleaved calls, all engines in one process",
    ]
    if m.get("caches") or m.get("isa"):  # records before 2026-11-30 lack these
        caches = ", ".join(f"{k} {v}" for k, v in m.get("caches", {}).items())
        lines.insert(
            1,
            f"caches (CPU 0): {caches}; ISA: {' '.join(m.get('isa', []))}; "
            f"pylstm kernel: {m.get('pylstm_backend', m['simd'])}",
        )
    if m.get("load_average"):
        load = ", ".join(f"{x:.2f}" for x in m["load_average"])
        lines.insert(2, f"load average at the start (1, 5, 15 min): {load} on {m['cpus']} CPUs")
    if record.get("gemm_ceiling_gflops"):
        g = record["gemm"]
        parts = [
            f"{lib} {g[lib + '_gflops']:.1f}" for lib in ("numpy", "torch") if lib + "_gflops" in g
        ]
        shapes = ", ".join("x".join(str(d) for d in s) for s in g["shapes"])
        lines.append(
            f"GEMM ceiling: {record['gemm_ceiling_gflops']:.1f} GFLOP/s fp32 "
            f"(best of {', '.join(parts)}; M x K x N = {shapes})"
        )
    if record.get("fma_peak_gflops"):  # records before 2026-12 lack it
        p = record["fma_peak"]
        lines.append(
            f"FMA peak: {record['fma_peak_gflops']:.1f} GFLOP/s fp32 (independent {p['isa']} "
            f"multiply-adds on {p['threads']} thread(s) at once)"
        )
    return lines


def _geomean(values: list) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summarize(results: list) -> dict:
    """Per section (``grid``, ``stream``, ``precision``, the condition sections of
    :mod:`.conditions_tables`): points, and per peer how many of them
    pylstm was faster on and the geometric mean of the speed-ups."""
    out = {}
    for kind in SECTIONS:
        rows = [r for r in results if r.get("kind", "grid") == kind]
        if not rows:
            continue
        section = {"points": len(rows)}
        for peer in PEERS:
            ratios = [r[f"speedup_vs_{peer}"] for r in rows if f"speedup_vs_{peer}" in r]
            if ratios:
                section[f"faster_than_{peer}"] = sum(x > 1 for x in ratios)
                section[f"geomean_speedup_vs_{peer}"] = _geomean(ratios)
        out[kind] = section
    return out


def summary_lines(summary: dict) -> list:
    """One line per section: "grid points: pylstm faster than ONNX Runtime on a of n ..."."""
    names = {"grid": "grid points", "stream": "streaming points", "precision": "precision rows"}
    names.update(CONDITION_NAMES)
    short = {"onnxruntime": "ort", "torch": "torch"}
    lines = []
    for kind, s in summary.items():
        parts = [
            f"faster than {PEER_LABELS[p]} on {s[f'faster_than_{p}']} of {s['points']} "
            f"(geometric mean x {short[p]} {s[f'geomean_speedup_vs_{p}']:.2f})"
            for p in PEERS
            if f"faster_than_{p}" in s
        ]
        if parts:
            lines.append(f"{names[kind]}: pylstm " + ", ".join(parts))
    return lines


def print_record(record: dict, out=sys.stdout) -> None:
    """Print a whole record (as written to JSON): header, tables, notes and summary."""
    for line in header_lines(record):
        print(line, file=out)
    for kind in SECTIONS:
        rows = [r for r in record["results"] if r.get("kind", "grid") == kind]
        if rows:
            table = Table(kind, out)
            table.start()
            for r in rows:
                table.row(r)
            table.finish()
    for note in record.get("notes", []):
        print(f"note: {note}", file=out)
    print("", file=out)
    for line in summary_lines(record.get("summary") or summarize(record["results"])):
        print(line, file=out)


def markdown_lines(record: dict) -> list:
    """A record's tables as Markdown (for the README): one table per section, with its title
    and footnotes, then the summary."""
    lines = []
    for kind, (title, columns, footnotes) in SECTIONS.items():
        rows = [r for r in record["results"] if r.get("kind", "grid") == kind]
        if not rows:
            continue
        lines += [f"**{title}**", ""]
        lines.append("| " + " | ".join(h.replace("|", "\\|") for h, _, _, _ in columns) + " |")
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|")
        for r in rows:
            lines.append(
                "| " + " | ".join(_cell(r, key, spec) for _, key, spec, _ in columns) + " |"
            )
        lines += [""] + [f"- {note}" for note in footnotes] + [""]
    batcher_rows = [r for r in record["results"] if r.get("kind") == "batcher"]
    if batcher_rows:
        from .batcher import markdown_table

        lines += ["**Many streams, one step per call at Poisson times (open loop)**", ""]
        lines += [markdown_table(batcher_rows), ""]
    lines += [
        f"- {line}" for line in summary_lines(record.get("summary") or summarize(record["results"]))
    ]
    return lines


def load_record(path: str) -> dict:
    """A record written by ``pylstm bench`` (JSON); ValueError if ``path`` holds something else."""
    with open(path) as fh:
        record = json.load(fh)
    if not isinstance(record, dict) or not isinstance(record.get("results"), list):
        raise ValueError(f"{path}: not a pylstm bench record (no 'results' list)")
    return record


def write_record(record: dict, path: str) -> None:
    """Write ``record`` as indented JSON, creating the directory."""
    import os

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(record, fh, indent=2)
        fh.write("\n")
