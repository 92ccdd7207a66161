"""The engines a whole-sequence benchmark compares: pylstm and, when installed, PyTorch and ONNX
Runtime (the torch module exported with the TorchScript exporter).

Every engine runs the same weights on the same input ``[T, B, I]``; ``run()`` returns the output
``[T, B, D*H]`` so that the runner can check the engines agree before it trusts their times.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np

import pylstm

from .configs import BenchConfig
from .machine import engine_versions


def try_import(name: str):
    """The module ``name``, or None when it is not installed."""
    try:
        return __import__(name)
    except ImportError:
        return None


def make_torch_module(cfg, seed: int = 0):
    """A ``torch.nn.LSTM``/``GRU``/``RNN`` for ``cfg`` (time-major, eval mode) with torch's default
    uniform(-1/sqrt(H), 1/sqrt(H)) weights from ``seed``; None without torch."""
    torch = try_import("torch")
    if torch is None:
        return None
    torch.manual_seed(seed)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cfg.cell]
    return cls(
        cfg.input_size,
        cfg.hidden_size,
        num_layers=getattr(cfg, "layers", 1),
        bidirectional=getattr(cfg, "bidirectional", False),
    ).eval()


def require_torch_module(cfg, seed: int = 0):
    """:func:`make_torch_module`, raising RuntimeError with the install hint without torch."""
    module = make_torch_module(cfg, seed)
    if module is None:
        raise RuntimeError(
            "the benchmark builds its models with PyTorch: pip install 'pylstm[bench]'"
        )
    return module


def ort_session(module, args: tuple, input_names: list, output_names: list, threads: int):
    """Export ``module`` called on ``args`` (torch tensors) to ONNX with the TorchScript exporter
    (``dynamo=False``) and open it in ONNX Runtime on the CPU with ``threads`` intra-op threads."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                path,
                input_names=input_names,
                output_names=output_names,
                dynamo=False,
            )
        return open_ort_session(path, threads)


def open_ort_session(path: str, threads: int):
    """ONNX Runtime on the CPU on the model file ``path``, with ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


class PylstmPeer:
    """pylstm on the module's weights; ``precision`` other than fp32 is passed to
    ``pylstm.from_torch`` (TypeError there when this pylstm does not have the option)."""

    def __init__(self, cfg: BenchConfig, module, x: np.ndarray, precision: str = "fp32"):
        self.precision = precision
        self.name = "pylstm" if precision == "fp32" else f"pylstm-{precision}"
        if precision == "fp32":
            self.model = pylstm.from_torch(module)
        else:
            self.model = pylstm.from_torch(module, precision=precision)
        self.x = x

    def run(self) -> np.ndarray:
        return self.model(self.x)[0]


class TorchPeer:
    name = "torch"

    def __init__(self, cfg: BenchConfig, module, x: np.ndarray):
        import torch

        self.torch = torch
        self.module = module
        self.x = torch.from_numpy(x)

    def run(self) -> np.ndarray:
        with self.torch.inference_mode():
            return self.module(self.x)[0].numpy()


class OnnxRuntimePeer:
    name = "onnxruntime"

    def __init__(self, cfg: BenchConfig, module, x: np.ndarray, threads: int):
        import torch

        self.session = ort_session(module, (torch.from_numpy(x),), ["x"], ["y"], threads)
        self.feeds = {"x": x}

    def run(self) -> np.ndarray:
        return self.session.run(["y"], self.feeds)[0]


def make_input(cfg: BenchConfig, seed: int = 0) -> np.ndarray:
    """Standard-normal float32 input ``[T, B, I]`` for ``cfg``."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((cfg.steps, cfg.batch, cfg.input_size), dtype=np.float32)


def make_reference_peers(cfg: BenchConfig, module, x: np.ndarray, threads: int) -> list:
    """PyTorch and, when installed, ONNX Runtime on ``module`` and ``x`` (fp32), with
    ``torch.set_num_threads(threads)`` applied."""
    import torch

    torch.set_num_threads(threads)
    peers = [TorchPeer(cfg, module, x)]
    if try_import("onnxruntime") is not None:
        peers.append(OnnxRuntimePeer(cfg, module, x, threads))
    return peers


def make_peers(cfg: BenchConfig, threads: int, seed: int = 0) -> list:
    """pylstm plus every installed peer, all on the same weights and input ``[T, B, I]``."""
    module = require_torch_module(cfg, seed)
    x = make_input(cfg, seed)
    return [PylstmPeer(cfg, module, x), *make_reference_peers(cfg, module, x, threads)]


#: Kept for callers of the previous name.
peer_versions = engine_versions
