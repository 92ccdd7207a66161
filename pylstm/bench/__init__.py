"""The benchmark suite behind ``pylstm bench``: pylstm against ONNX Runtime and PyTorch, measured
side by side in one process, interleaved, with the same thread count; medians reported.

Modules: configs (what is measured), peers and streaming (the engines), timing (interleaved
medians), ceiling (the GEMM ceiling and the FMA peak), machine (what it ran on), runner (the run
and its JSON record), report (tables), plot (matplotlib, imported only for ``--plot``).
"""

from .configs import (
    BenchConfig,
    StreamConfig,
    default_configs,
    filter_configs,
    precision_configs,
    quick_configs,
    stream_configs,
)
from .report import load_record, markdown_lines, print_record
from .runner import run_benchmarks

__all__ = [
    "BenchConfig",
    "StreamConfig",
    "default_configs",
    "filter_configs",
    "load_record",
    "markdown_lines",
    "precision_configs",
    "print_record",
    "quick_configs",
    "run_benchmarks",
    "stream_configs",
]
