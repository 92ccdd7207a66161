"""The benchmark suite behind ``pylstm bench``: pylstm against PyTorch and ONNX Runtime, measured
side by side in one process, interleaved, with the same thread count; medians reported."""

from .configs import BenchConfig, default_configs, quick_configs
from .runner import run_benchmarks

__all__ = ["BenchConfig", "default_configs", "quick_configs", "run_benchmarks"]
