"""Shared pieces of the CUDA tests: the skip marker for machines without a GPU (with pylstm's
own reason), torch on CUDA with TF32 off, and strategy forcing.

The CUDA engine runs each layer by one of two strategies (persistent kernel at small batch,
per-step cuBLAS + fused gates in CUDA graphs at large batch); the tests force each in turn with
``PYLSTM_CUDA_STRATEGY`` so that both are checked on every configuration.
"""

from __future__ import annotations

import pytest

import pylstm
from pylstm.runtime.system import cuda_status

DEVICES, REASON = cuda_status()
requires_gpu = pytest.mark.skipif(not DEVICES, reason=f"no CUDA device: {REASON}")

#: Strategies forced by the tests ("graph" captures on the second call of a shape).
STRATEGIES = ["persistent", "graph", "steps"]


def torch_cuda():
    """torch with CUDA, TF32 off everywhere (cuDNN and cuBLAS), or a skip."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA here (a CPU build of torch, or no driver)")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return torch


def used_strategies(model) -> list:
    """The strategy each layer used in the model's last CUDA call."""
    return list(model.engine._net.last_strategies)


__all__ = ["DEVICES", "REASON", "STRATEGIES", "pylstm", "requires_gpu", "torch_cuda"]
