"""The engines a benchmark compares: pylstm and, when installed, PyTorch and ONNX Runtime.

Every peer runs the same weights on the same input; ``run()`` returns the output so the runner
can check that the engines agree before it trusts their times.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np

import pylstm

from .configs import BenchConfig


def _try_import(name):
    try:
        return __import__(name)
    except ImportError:
        return None


def make_torch_module(cfg: BenchConfig, seed: int = 0):
    """A torch RNN module for ``cfg`` with uniform(-1/sqrt(H), 1/sqrt(H)) weights (torch's init)."""
    torch = _try_import("torch")
    if torch is None:
        return None
    torch.manual_seed(seed)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cfg.cell]
    return cls(
        cfg.input_size, cfg.hidden_size, num_layers=cfg.layers, bidirectional=cfg.bidirectional
    ).eval()


class PylstmPeer:
    name = "pylstm"

    def __init__(self, cfg: BenchConfig, module, x: np.ndarray):
        self.model = pylstm.from_torch(module)
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
    """The torch module exported to ONNX (TorchScript exporter) and run by ONNX Runtime."""

    name = "onnxruntime"

    def __init__(self, cfg: BenchConfig, module, x: np.ndarray, threads: int):
        import onnxruntime as ort
        import torch

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.onnx")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module,
                    (torch.from_numpy(x),),
                    path,
                    input_names=["x"],
                    output_names=["y"],
                    dynamo=False,
                )
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.feeds = {"x": x}

    def run(self) -> np.ndarray:
        return self.session.run(["y"], self.feeds)[0]


def make_peers(cfg: BenchConfig, threads: int, seed: int = 0) -> list:
    """pylstm plus every installed peer, all on the same weights and input ``[T, B, I]``."""
    module = make_torch_module(cfg, seed)
    if module is None:
        raise RuntimeError(
            "the benchmark builds its models with PyTorch: pip install 'pylstm[bench]'"
        )
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg.steps, cfg.batch, cfg.input_size), dtype=np.float32)
    import torch

    torch.set_num_threads(threads)
    peers = [PylstmPeer(cfg, module, x), TorchPeer(cfg, module, x)]
    if _try_import("onnxruntime") is not None:
        peers.append(OnnxRuntimePeer(cfg, module, x, threads))
    return peers


def peer_versions() -> dict:
    out = {"pylstm": pylstm.__version__, "numpy": np.__version__}
    for name in ("torch", "onnxruntime"):
        mod = _try_import(name)
        if mod is not None:
            out[name] = mod.__version__
    return out
