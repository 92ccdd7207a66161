"""Streaming benchmark: one time step per call from Python, the state carried between calls.

* pylstm: ``stream = model.stream(B)``, then ``stream.step(x_t)`` with ``x_t`` of shape ``[B, I]``
  (a 2-D chunk is exactly one step).
* ONNX Runtime: the module exported for T = 1 with the initial states as graph inputs (``h0``, and
  ``c0`` for LSTM) and the final states as outputs (``hn``, ``cn``); each call is one
  ``session.run`` with a feeds dict that is reused, the returned states put back into it.
* PyTorch: ``module(x_t, hx)`` with ``x_t`` of shape ``[1, B, I]``, carrying ``hx``.

Each engine's ``run()`` does one step on the next input of a fixed pool and returns ``[B, H]``;
``reset()`` goes back to the zero state and the start of the pool.
"""

from __future__ import annotations

import numpy as np

import pylstm

from .configs import StreamConfig
from .peers import ort_session, require_torch_module, try_import
from .timing import measure

#: Distinct inputs each engine cycles through: ``[POOL_STEPS, B, I]``.
POOL_STEPS = 64
#: Steps run by every engine from the zero state to check that they agree.
CHECK_STEPS = 16


class PylstmStream:
    name = "pylstm"

    def __init__(self, model, xs: np.ndarray):
        """``model``: a pylstm model (e.g. ``pylstm.from_torch(module)``)."""
        self.stream = model.stream(xs.shape[1])
        self.steps = list(xs)  # each [B, I]
        self.reset()

    def reset(self) -> None:
        self.stream.reset()
        self.i = 0

    def run(self) -> np.ndarray:
        x = self.steps[self.i]
        self.i = (self.i + 1) % len(self.steps)
        return self.stream.step(x)


class TorchStream:
    name = "torch"

    def __init__(self, module, xs: np.ndarray):
        import torch

        self.torch = torch
        self.module = module
        xt = torch.from_numpy(xs)
        self.steps = [xt[i : i + 1] for i in range(len(xs))]  # each [1, B, I]
        self.reset()

    def reset(self) -> None:
        self.hx = None  # zeros, as torch makes them
        self.i = 0

    def run(self) -> np.ndarray:
        x = self.steps[self.i]
        self.i = (self.i + 1) % len(self.steps)
        with self.torch.inference_mode():
            y, self.hx = self.module(x, self.hx)
        return y[0].numpy()


def _step_module(module):
    """``module`` wrapped so that states are plain inputs and outputs:
    LSTM ``(x, h0, c0) -> (y, hn, cn)``, GRU/RNN ``(x, h0) -> (y, hn)``."""
    import torch

    class LstmStep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = module

        def forward(self, x, h0, c0):
            y, (hn, cn) = self.rnn(x, (h0, c0))
            return y, hn, cn

    class GruStep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = module

        def forward(self, x, h0):
            y, hn = self.rnn(x, h0)
            return y, hn

    return (LstmStep if isinstance(module, torch.nn.LSTM) else GruStep)().eval()


def step_export(module, xs: np.ndarray) -> tuple:
    """What ``torch.onnx.export`` takes to export ``module`` for one step with its states as
    inputs and outputs: ``(step module, example args, input names, output names)``."""
    import torch

    lstm = isinstance(module, torch.nn.LSTM)
    zero = torch.zeros(module.num_layers, xs.shape[1], module.hidden_size)
    states = ["h0", "c0"] if lstm else ["h0"]
    outputs = ["y", "hn", "cn"] if lstm else ["y", "hn"]
    args = (torch.from_numpy(xs[:1]), *[zero for _ in states])
    return _step_module(module), args, ["x", *states], outputs


class OnnxRuntimeStream:
    name = "onnxruntime"

    def __init__(self, session, xs: np.ndarray):
        """``session``: ONNX Runtime on a :func:`step_export` of the module (inputs ``x``,
        ``h0`` [, ``c0``]; outputs ``y``, ``hn`` [, ``cn``])."""
        self.session = session
        inputs = {i.name: i.shape for i in session.get_inputs()}
        self.lstm = "c0" in inputs
        layers, _, hidden = inputs["h0"]
        self.zero = np.zeros((layers, xs.shape[1], hidden), np.float32)
        self.out_names = [o.name for o in session.get_outputs()]  # y, hn [, cn]
        self.steps = [np.ascontiguousarray(xs[i : i + 1]) for i in range(len(xs))]  # [1, B, I]
        self.feeds = {}
        self.reset()

    def reset(self) -> None:
        self.feeds.update(h0=self.zero, x=self.steps[0])
        if self.lstm:
            self.feeds["c0"] = self.zero
        self.i = 0

    def run(self) -> np.ndarray:
        self.feeds["x"] = self.steps[self.i]
        self.i = (self.i + 1) % len(self.steps)
        outs = self.session.run(self.out_names, self.feeds)
        self.feeds["h0"] = outs[1]
        if self.lstm:
            self.feeds["c0"] = outs[2]
        return outs[0][0]


def make_stream_peers(cfg: StreamConfig, threads: int, seed: int = 0) -> tuple:
    """The streaming engines on one module and one input pool.

    Returns
    -------
    (peers, module, xs)
        ``peers``: pylstm, torch and (when installed) ONNX Runtime streams; ``module``: the torch
        module; ``xs``: the input pool ``[POOL_STEPS, B, I]`` float32.
    """
    module = require_torch_module(cfg, seed)
    import torch

    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((POOL_STEPS, cfg.batch, cfg.input_size), dtype=np.float32)
    peers = [PylstmStream(pylstm.from_torch(module), xs), TorchStream(module, xs)]
    if try_import("onnxruntime") is not None:
        peers.append(OnnxRuntimeStream(ort_session(*step_export(module, xs), threads), xs))
    return peers, module, xs


def stream_agreement(peers: list, module, xs: np.ndarray, steps: int = CHECK_STEPS) -> float:
    """Largest |difference| between any engine's first ``steps`` streamed outputs and torch run
    on the whole sequence ``xs[:steps]``; leaves every engine reset."""
    import torch

    with torch.inference_mode():
        reference = module(torch.from_numpy(xs[:steps]))[0].numpy()  # [steps, B, H]
    worst = 0.0
    for p in peers:
        p.reset()
        got = np.stack([p.run() for _ in range(steps)])
        worst = max(worst, float(np.max(np.abs(got - reference))))
        p.reset()
    return worst


def measure_stream(cfg: StreamConfig, *, threads: int, budget_s: float, seed: int = 0) -> dict:
    """Time one streaming point.

    Returns
    -------
    dict
        A JSON result entry: ``kind`` ``"stream"``, ``name``, ``config``, ``<engine>_us``
        (median microseconds per one-step call), ``speedup_vs_<peer>`` (peer time / pylstm
        time), ``max_abs_diff`` (vs torch on the whole sequence), ``rounds``, ``samples``.
    """
    peers, module, xs = make_stream_peers(cfg, threads, seed)
    diff = stream_agreement(peers, module, xs)
    for p in peers:  # warm up past the first calls' allocations
        for _ in range(8):
            p.run()
    timings = measure(peers, budget_s, max_burst=50)
    row = {"kind": "stream", "name": cfg.name, "config": cfg.as_dict(), "max_abs_diff": diff}
    row.update({f"{n}_us": t * 1e6 for n, t in timings.median_s.items()})
    for peer in ("onnxruntime", "torch"):
        if peer in timings.median_s:
            row[f"speedup_vs_{peer}"] = timings.median_s[peer] / timings.median_s["pylstm"]
    row.update(rounds=timings.rounds, samples=timings.samples)
    return row
