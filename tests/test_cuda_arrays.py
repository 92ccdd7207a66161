"""Device arrays on the CUDA engine: PyTorch CUDA tensors and CuPy arrays in, the same library's
arrays out on the same device, no trip through the host, the caller's stream respected; errors
as exceptions. Needs a GPU; skipped with pylstm's reason otherwise.

Tolerance: fp32, 3e-5 scaled (``helpers.assert_close``), against the CPU engine.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from cuda_helpers import requires_gpu, torch_cuda
from helpers import assert_close, make_module

import pylstm

pytestmark = requires_gpu

ATOL = 3e-5


def lstm_pair(batch_first=False, **kw):
    module = make_module("lstm", 8, 16, batch_first=batch_first, rng=np.random.default_rng(1), **kw)
    return pylstm.from_torch(module), pylstm.from_torch(module, device="cuda")


def test_torch_in_torch_out_without_host_sync():
    """A torch CUDA tensor in: torch CUDA tensors out, on the input's device, new memory; no
    synchronizing operation on the way (torch's sync debug mode would raise)."""
    torch = torch_cuda()
    cpu, gpu = lstm_pair()
    x = torch.randn(6, 4, 8, device="cuda")
    gpu(x)  # warm up (allocations, first-call work)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        y, (h, c) = gpu(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for t in (y, h, c):
        assert isinstance(t, torch.Tensor) and t.is_cuda and t.device == x.device
        assert t.dtype == torch.float32
    assert y.data_ptr() != x.data_ptr()
    ref_y, (_, ref_c) = cpu(x.cpu().numpy())
    assert_close(y.cpu().numpy(), ref_y, atol=ATOL, scaled=True, what="y")
    assert_close(c.cpu().numpy(), ref_c, atol=ATOL, scaled=True, what="c_n")


@pytest.mark.parametrize("batch_first", [False, True])
def test_torch_layouts_states_lengths(batch_first):
    torch = torch_cuda()
    cpu, gpu = lstm_pair(batch_first=batch_first, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 7, 8) if batch_first else (7, 5, 8)).astype(np.float32)
    h0 = rng.uniform(-1, 1, (4, 5, 16)).astype(np.float32)
    c0 = rng.uniform(-1, 1, (4, 5, 16)).astype(np.float32)
    lengths = np.array([7, 1, 3, 7, 5])
    ref = cpu(x, (h0, c0), lengths=lengths)
    xt = torch.from_numpy(x).cuda()
    # strided input (a transposed view), states on the device, lengths as a CPU tensor
    xt_view = xt.transpose(0, 1).contiguous().transpose(0, 1)
    out = gpu(
        xt_view,
        (torch.from_numpy(h0).cuda(), torch.from_numpy(c0).cuda()),
        lengths=torch.from_numpy(lengths),
    )
    assert_close(out[0].cpu().numpy(), ref[0], atol=ATOL, scaled=True, what="y")
    assert_close(out[1][0].cpu().numpy(), ref[1][0], atol=ATOL, scaled=True, what="h_n")
    # host states with a device input are copied over
    out2 = gpu(xt, (h0, c0), lengths=lengths)
    assert_close(out2[1][1].cpu().numpy(), ref[1][1], atol=ATOL, scaled=True, what="c_n")


def test_unbatched_and_float64():
    torch = torch_cuda()
    cpu, gpu = lstm_pair()
    x = torch.randn(9, 8, device="cuda", dtype=torch.float64)
    y, (h, _) = gpu(x)
    assert y.shape == (9, 16) and h.shape == (1, 16) and y.dtype == torch.float32
    ref = cpu(x.cpu().numpy())
    assert_close(y.cpu().numpy(), ref[0], atol=ATOL, scaled=True, what="y")


def test_caller_stream_is_respected():
    """Work goes on the caller's current stream: an input produced on a side stream behind a
    long sleep is read only after it is written."""
    torch = torch_cuda()
    if not hasattr(torch.cuda, "_sleep"):
        pytest.skip("torch.cuda._sleep is not available")
    cpu, gpu = lstm_pair()
    base = torch.randn(6, 3, 8, device="cuda")
    ref = cpu(base.cpu().numpy())[0]
    side = torch.cuda.Stream()
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU time before x exists
        x = base * 1.0
        y, _ = gpu(x)
        done = torch.cuda.Event()
        done.record(side)
    done.synchronize()
    assert_close(y.cpu().numpy(), ref, atol=ATOL, scaled=True, what="y on a side stream")


def test_threads_on_streams():
    """One model called from several threads at once, each on its own stream."""
    torch = torch_cuda()
    cpu, gpu = lstm_pair()
    xs = [torch.randn(20, 2 + i, 8, device="cuda") for i in range(4)]
    refs = [cpu(x.cpu().numpy())[0] for x in xs]
    results = [None] * len(xs)

    def work(i):
        s = torch.cuda.Stream()
        with torch.cuda.stream(s):
            for _ in range(5):
                results[i] = gpu(xs[i])[0]
        s.synchronize()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (got, ref) in enumerate(zip(results, refs)):
        assert_close(got.cpu().numpy(), ref, atol=ATOL, scaled=True, what=f"thread {i}")


def test_cupy_in_cupy_out():
    cupy = pytest.importorskip("cupy")
    cpu, gpu = lstm_pair()
    x = cupy.random.standard_normal((6, 3, 8), dtype=cupy.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        y, (_, c) = gpu(x)
    stream.synchronize()
    assert isinstance(y, cupy.ndarray) and y.device.id == x.device.id
    ref = cpu(cupy.asnumpy(x))
    assert_close(cupy.asnumpy(y), ref[0], atol=ATOL, scaled=True, what="cupy y")
    assert_close(cupy.asnumpy(c), ref[1][1], atol=ATOL, scaled=True, what="cupy c_n")


def test_dlpack_only_object():
    """An object with only __dlpack__ / __dlpack_device__ (as JAX arrays) is read zero-copy."""
    torch = torch_cuda()
    cpu, gpu = lstm_pair()
    x = torch.randn(4, 2, 8, device="cuda")

    class OnlyDLPack:
        def __dlpack__(self, stream=None, **kwargs):
            return x.__dlpack__(stream=stream)

        def __dlpack_device__(self):
            return x.__dlpack_device__()

    y, _ = gpu(OnlyDLPack())
    assert_close(y.cpu().numpy(), cpu(x.cpu().numpy())[0], atol=ATOL, scaled=True, what="y")


def test_errors():
    torch = torch_cuda()
    module = make_module("gru", 4, 6, rng=np.random.default_rng(3))
    with pytest.raises(pylstm.DeviceError, match="no CUDA device 99"):
        pylstm.from_torch(module, device="cuda:99")
    with pytest.raises(ValueError, match="fp32, fp16, bf16"):
        pylstm.from_torch(module, device="cuda", precision="int8")
    gpu = pylstm.from_torch(module, device="cuda")
    with pytest.raises(TypeError, match="float32, float16, bfloat16 or float64"):
        gpu(torch.zeros(3, 2, 4, dtype=torch.int32, device="cuda"))
    with pytest.raises(ValueError, match="input features"):
        gpu(torch.zeros(3, 2, 5, device="cuda"))
    with pytest.raises(ValueError, match="h_0: expected shape"):
        gpu(torch.zeros(3, 2, 4, device="cuda"), torch.zeros(1, 3, 6, device="cuda"))
    if torch.cuda.device_count() > 1:
        with pytest.raises(ValueError, match="is on cuda:1 but the model is on cuda:0"):
            gpu(torch.zeros(3, 2, 4, device="cuda:1"))


def test_stream_core_on_cuda():
    """Streaming on a CUDA engine (Engine.stream_core): chunks concatenate to the whole call."""
    torch_cuda()
    cpu, gpu = lstm_pair()
    x = np.random.default_rng(4).standard_normal((10, 2, 8)).astype(np.float32)
    core = gpu.engine.stream_core(2, False)
    parts = [core.step(x[:3]), core.step(x[3])[None], core.step(x[4:])]
    assert_close(np.concatenate(parts), cpu(x)[0], atol=ATOL, scaled=True, what="streamed")


def test_info_lists_devices():
    torch = torch_cuda()
    info = pylstm.info()
    assert info["cuda_compiled"] and info["cuda_devices"]
    assert info["cuda_devices"][0] == torch.cuda.get_device_name(0)
    assert info["cuda_status"] == ""
