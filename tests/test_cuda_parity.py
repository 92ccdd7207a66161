"""The CUDA engine against the CPU engine and against PyTorch on CUDA (cuDNN, TF32 off), over the
cell / option grid, with every strategy forced in turn (persistent kernel, per-step cuBLAS +
fused gates in CUDA graphs, and the same loop launched directly). Needs a GPU; skipped with
pylstm's reason otherwise.

Tolerances (ARCHITECTURE.md, fp32: 3e-5 absolute for unit-scale outputs):

* fp32, LSTM/GRU/tanh-RNN: 3e-5 scaled by ``max(1, largest |value| in the row)``
  (``helpers.assert_close``), against the CPU engine and against cuDNN: all three sum in float32
  in different orders and use different exp/tanh approximations.
* relu-RNN: 1e-5 relative to the row's magnitude (unbounded outputs, see test_torch_parity).
* fp16 / bf16 (weights, inputs and the recurrent operand rounded; float32 sums and cell state):
  2e-2 / 8e-2 absolute against the fp32 CPU engine, on PyTorch's default (unit-scale) weights
  and 8 steps.
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass

import numpy as np
import pytest
from cuda_helpers import STRATEGIES, requires_gpu, torch_cuda, used_strategies
from helpers import assert_close, make_module, random_hx, split_state

import pylstm

pytestmark = requires_gpu


@pytest.fixture(params=STRATEGIES)
def strategy(request, monkeypatch):
    """Models built inside the test use this CUDA strategy (read when a model is built)."""
    monkeypatch.setenv("PYLSTM_CUDA_STRATEGY", request.param)
    return request.param


ATOL = 3e-5
RELU_RTOL = 1e-5
REDUCED_ATOL = {"fp16": 2e-2, "bf16": 8e-2}


def tolerance(cell: str) -> float:
    return RELU_RTOL if cell == "rnn_relu" else ATOL


@dataclass(frozen=True)
class Case:
    cell: str
    batch: int = 3
    steps: int = 7
    input_size: int = 5
    hidden_size: int = 12
    num_layers: int = 1
    bidirectional: bool = False
    proj_size: int = 0
    batch_first: bool = False
    lengths: bool = False
    hx: bool = False

    @property
    def id(self) -> str:
        parts = [self.cell, f"B{self.batch}", f"L{self.num_layers}"]
        parts += ["bi"] if self.bidirectional else []
        parts += [f"P{self.proj_size}"] if self.proj_size else []
        parts += ["bf"] if self.batch_first else []
        parts += ["len"] if self.lengths else []
        parts += ["hx"] if self.hx else []
        return "-".join(parts)


CASES = [
    Case("lstm"),
    Case("gru"),
    Case("rnn_tanh"),
    Case("rnn_relu"),
    Case("lstm", batch=1, hidden_size=64, input_size=32),
    Case("lstm", num_layers=2, bidirectional=True, hx=True),
    Case("gru", num_layers=2, bidirectional=True, lengths=True),
    Case("lstm", proj_size=7, bidirectional=True, lengths=True, hx=True),
    Case("lstm", batch=40, batch_first=True, lengths=True),
    Case("gru", batch=64, hidden_size=33, hx=True),
    Case("rnn_tanh", num_layers=3, bidirectional=True, batch_first=True, lengths=True, hx=True),
    Case("lstm", batch=9, steps=30, num_layers=2, proj_size=4),
]


def torch_cuda_forward(torch, module, x, hx, lengths):
    """``module`` (on CUDA) on numpy ``x``; the packed-sequence route with ``lengths``. Returns
    numpy (output, h_n, c_n)."""
    xt = torch.from_numpy(x).cuda()
    h = None
    if hx is not None:
        h = (
            tuple(torch.from_numpy(a).cuda() for a in hx)
            if isinstance(hx, tuple)
            else (torch.from_numpy(hx).cuda())
        )
    with torch.no_grad():
        if lengths is None:
            out, state = module(xt, h)
        else:
            T = x.shape[1] if module.batch_first else x.shape[0]
            packed = torch.nn.utils.rnn.pack_padded_sequence(
                xt, torch.as_tensor(lengths), batch_first=module.batch_first, enforce_sorted=False
            )
            out, state = module(packed, h)
            out, _ = torch.nn.utils.rnn.pad_packed_sequence(
                out, batch_first=module.batch_first, total_length=T
            )
    h_n, c_n = split_state(module, state)
    return out.cpu().numpy(), h_n.cpu().numpy(), None if c_n is None else c_n.cpu().numpy()


def unpack(model, result):
    y, state = result
    if model.cell == "lstm":
        return y, state[0], state[1]
    return y, state, None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_against_cpu_and_cudnn(case, strategy):
    torch = torch_cuda()
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    module = make_module(
        case.cell,
        case.input_size,
        case.hidden_size,
        num_layers=case.num_layers,
        bidirectional=case.bidirectional,
        batch_first=case.batch_first,
        proj_size=case.proj_size,
        rng=rng,
    )
    shape = (case.batch, case.steps) if case.batch_first else (case.steps, case.batch)
    x = rng.standard_normal((*shape, case.input_size)).astype(np.float32)
    hx = random_hx(module, case.batch, rng) if case.hx else None
    lengths = rng.integers(1, case.steps + 1, size=case.batch) if case.lengths else None
    if lengths is not None:
        lengths[0] = case.steps
    cpu = pylstm.from_torch(module)
    gpu = pylstm.from_torch(module, device="cuda")
    ref = unpack(cpu, cpu(x, hx, lengths=lengths))
    tol = tolerance(case.cell)
    # numpy in, numpy out; three calls: direct, captured, replayed (graph strategy).
    for call in range(3):
        out = unpack(gpu, gpu(x, hx, lengths=lengths))
        for name, a, b in zip(("output", "h_n", "c_n"), out, ref):
            if b is not None:
                assert isinstance(a, np.ndarray)
                assert_close(a, b, atol=tol, scaled=True, what=f"{case.id} call {call} {name}")
    expected = strategy
    if strategy == "persistent" and gpu.engine._net.persistent_refusal(0, case.batch):
        expected = "graph"  # e.g. a batch above the persistent kernel's limit
    assert used_strategies(gpu)[0] == expected

    # torch CUDA tensors in, torch CUDA tensors out, against cuDNN itself.
    module_cuda = copy.deepcopy(module).cuda()
    ref_cuda = torch_cuda_forward(torch, module_cuda, x, hx, lengths)
    hx_t = None
    if hx is not None:
        hx_t = (
            tuple(torch.from_numpy(a).cuda() for a in hx)
            if isinstance(hx, tuple)
            else (torch.from_numpy(hx).cuda())
        )
    out_t = unpack(gpu, gpu(torch.from_numpy(x).cuda(), hx_t, lengths=lengths))
    for name, a, b in zip(("output", "h_n", "c_n"), out_t, ref_cuda):
        if b is not None:
            assert a.is_cuda and a.dtype == torch.float32
            assert_close(a.cpu().numpy(), b, atol=tol, scaled=True, what=f"{case.id} cudnn {name}")


VARIANTS = {
    "peephole-clip": dict(cell="lstm", peephole=True, clip=0.8),
    "coupled-no-bias": dict(cell="lstm", input_forget=True, bias=False),
    "onnx-activations": dict(
        cell="lstm", acts=[("hardsigmoid", 0.2, 0.5), ("scaledtanh", 1.3, 0.6), "softsign"]
    ),
    "keras-activations": dict(cell="gru", acts=[("hardsigmoid", 1 / 6, 0.5), "mish"]),
    "gru-reset-before": dict(cell="gru", linear_before_reset=False),
    "rnn-elu": dict(cell="rnn", acts=[("elu", 0.7, 0.0)]),
    "proj-hold": dict(cell="lstm", P=5, masked_output="hold"),
    "gru-rb-hold": dict(cell="gru", linear_before_reset=False, masked_output="hold"),
}


def variant_layer(rng, cell, I, H, *, P=0, D=2, bias=True, peephole=False, acts=None, **opts):
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    k = 2.0 / np.sqrt(H)
    dirs = [
        pylstm.Direction(
            w=rng.uniform(-k, k, (G * H, I)),
            r=rng.uniform(-k, k, (G * H, P or H)),
            bias_w=rng.uniform(-k, k, G * H) if bias else None,
            bias_r=rng.uniform(-k, k, G * H) if bias else None,
            peephole=rng.uniform(-1, 1, 3 * H) if peephole else None,
            proj=rng.uniform(-k, k, (P, H)) if P else None,
            activations=acts,
            reverse=d == 1,
        )
        for d in range(D)
    ]
    return pylstm.Layer(cell, dirs, **opts)


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("batch", [2, 48])
def test_variants_against_cpu(name, batch, strategy):
    """Options no framework on CUDA has (peepholes, clip, ONNX/Keras activations, reset before
    the product, held outputs) against the CPU engine, with a mask that has holes."""
    rng = np.random.default_rng(11)
    layer = variant_layer(rng, I=6, H=10, **VARIANTS[name])
    cpu = pylstm.runtime.engine.Engine([layer])
    gpu = pylstm.runtime.engine.Engine([layer], device="cuda")
    T = 9
    mask = (np.arange(T)[:, None] < rng.integers(1, T + 1, size=batch)[None, :]).astype(np.uint8)
    mask[3, 0] = 0
    x = rng.standard_normal((T, batch, 6)).astype(np.float32)
    rows = cpu.state_rows
    h0 = rng.uniform(-1, 1, rows * batch * layer.output_size).astype(np.float32)
    c0 = rng.uniform(-1, 1, rows * batch * layer.hidden_size).astype(np.float32)
    outs = []
    for engine in (cpu, gpu, gpu, gpu):
        y = np.empty((T, batch, cpu.output_size), np.float32)
        h_n, c_n = np.empty_like(h0), np.empty_like(c0)
        engine.forward(x, y, mask, h0, c0, h_n, c_n)
        outs.append((y, h_n, c_n if layer.cell == "lstm" else None))
    for n, out in enumerate(outs[1:]):
        for a, b, what in zip(out, outs[0], ("y", "h_n", "c_n")):
            if b is not None:
                assert_close(a, b, atol=ATOL, scaled=True, what=f"{name} call {n} {what}")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("batch", [1, 8, 96])
def test_reduced_precision(precision, cell, batch, strategy):
    torch = torch_cuda()
    if precision == "bf16" and torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("bf16 needs compute capability 8.0")
    rng = np.random.default_rng(21)
    module = make_module(cell, 32, 64, num_layers=2, bidirectional=True, scale=1.0, rng=rng)
    x = rng.standard_normal((8, batch, 32)).astype(np.float32)
    cpu = pylstm.from_torch(module)
    ref = unpack(cpu, cpu(x))
    gpu = pylstm.from_torch(module, device="cuda", precision=precision)
    dtype = getattr(torch, {"fp16": "float16", "bf16": "bfloat16"}[precision])
    for _ in range(3):
        out = unpack(gpu, gpu(torch.from_numpy(x).cuda().to(dtype)))
        for name, a, b in zip(("output", "h_n", "c_n"), out, ref):
            if b is not None:
                assert a.dtype == dtype and a.is_cuda
                assert_close(
                    a.float().cpu().numpy(),
                    b,
                    atol=REDUCED_ATOL[precision],
                    what=f"{precision} {name}",
                )
    # numpy in: float32 numpy out, same numbers
    out_np = unpack(gpu, gpu(x))
    assert out_np[0].dtype == np.float32
    assert_close(out_np[0], ref[0], atol=REDUCED_ATOL[precision], what=f"{precision} numpy")


def test_auto_strategy_by_batch():
    """Without a forced strategy: the persistent kernel at small batch, graphs at large."""
    torch = torch_cuda()
    module = make_module("lstm", 64, 128, rng=np.random.default_rng(3))
    gpu = pylstm.from_torch(module, device="cuda")
    gpu(torch.zeros(10, 1, 64, device="cuda"))
    assert used_strategies(gpu) == ["persistent"]
    for _ in range(2):
        gpu(torch.zeros(10, 256, 64, device="cuda"))
    assert used_strategies(gpu) == ["graph"]


def test_long_sequences_and_large_layers(strategy):
    """H = 1024 (weights too large for one block's shared memory at fp32 on small GPUs), T = 300
    (the persistent kernel keeps state across steps for long)."""
    torch_cuda()
    rng = np.random.default_rng(5)
    module = make_module("lstm", 256, 1024, scale=1.0, rng=rng)
    x = rng.standard_normal((300, 2, 256)).astype(np.float32)
    ref = pylstm.from_torch(module)(x)[0]
    out = pylstm.from_torch(module, device="cuda")(x)[0]
    assert_close(out, ref, atol=1e-4, what="H=1024 T=300")  # 300 steps of float32 drift
