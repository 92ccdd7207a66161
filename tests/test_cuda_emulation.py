"""The CUDA backend's code (kernels, launchers, buffers, cuBLAS calls, graph capture) run by the
host emulation ``pylstm._cuda_emu`` (cuda/emulation: CUDA threads as OS threads with real
barriers, cuBLAS as loops with its argument checks), against the CPU engine. No GPU needed:
this is what checks the CUDA code path on machines without one. Built with
``PYLSTM_CUDA_EMULATION=ON`` (CMake option or environment variable at build time); skipped
otherwise.

Tolerances: fp32 3e-5 absolute, scaled by the row's magnitude (``helpers.assert_close``; both
engines use float32 arithmetic with different activation approximations and summation orders).
fp16 / bf16: the weights, inputs and recurrent operand rounded to 11 / 8 significant bits with
float32 sums, on unit-scale weights and short sequences: 2e-2 / 8e-2 absolute against the fp32
CPU engine (measured here: about a third of that).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from child_process import child_env

import pylstm
from pylstm import _core
from pylstm.runtime.system import simd_level

emu = pytest.importorskip(
    "pylstm._cuda_emu", reason="the CUDA emulation was not built (PYLSTM_CUDA_EMULATION=ON)"
)

from helpers import assert_close

ATOL = {"fp32": 3e-5, "fp16": 2e-2, "bf16": 8e-2}
STRATEGIES = ["persistent", "graph", "steps"]
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def make_layer(
    rng,
    cell,
    I,
    H,
    *,
    P=0,
    D=1,
    reverse=False,
    bias=True,
    peephole=False,
    acts=None,
    scale=1.0,
    **options,
):
    G = GATES[cell]
    Hout = P or H
    dirs = []
    for d in range(D):

        def u(*shape):
            return rng.uniform(-scale, scale, shape) / np.sqrt(max(H, 1))

        dirs.append(
            pylstm.Direction(
                w=u(G * H, I) * 2,
                r=u(G * H, Hout) * 2,
                bias_w=u(G * H) if bias else None,
                bias_r=u(G * H) if bias else None,
                peephole=u(3 * H) * 4 if peephole else None,
                proj=u(P, H) * 2 if P else None,
                activations=acts,
                reverse=(d == 1) or reverse,
            )
        )
    return pylstm.Layer(cell, dirs, **options)


def run_both(layers, T, B, *, strategy, precision="fp32", mask=None, states=True, calls=1, seed=1):
    """The CPU engine and the emulated CUDA engine on the same input (``calls`` times for the
    CUDA one: the step loop is captured in a graph on the second call and replayed on the
    third). Returns (cpu outputs, list of cuda outputs, strategies used)."""
    rng = np.random.default_rng(seed)
    cores = [layer.to_core() for layer in layers]
    cpu = _core.Network(cores, simd_level(), "fp32")
    gpu = emu.Network(cores, precision, 0, strategy)
    I = layers[0].input_size
    O = layers[-1].output_size * layers[-1].num_directions
    hf = sum(layer.num_directions * layer.output_size for layer in layers)
    cf = sum(layer.num_directions * layer.hidden_size for layer in layers)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0 = rng.uniform(-1, 1, hf * B).astype(np.float32) if states else None
    c0 = rng.uniform(-1, 1, cf * B).astype(np.float32) if states else None

    def once(net):
        y = np.full((T, B, O), np.nan, np.float32)
        hn = np.full(hf * B, np.nan, np.float32)
        cn = np.zeros(cf * B, np.float32)
        net.forward(x, y, mask, h0, c0, hn, cn)
        return y, hn, cn

    ref = once(cpu)
    outs = [once(gpu) for _ in range(calls)]
    return ref, outs, list(gpu.last_strategies)


def check(ref, outs, precision, what):
    for n, out in enumerate(outs):
        for name, a, b in zip(("y", "h_n", "c_n"), out, ref):
            assert_close(a, b, atol=ATOL[precision], scaled=True, what=f"{what} call {n} {name}")


CELL_CASES = [
    pytest.param(dict(cell="lstm"), id="lstm"),
    pytest.param(dict(cell="gru"), id="gru"),
    pytest.param(dict(cell="gru", linear_before_reset=False), id="gru-reset-before"),
    pytest.param(dict(cell="rnn", acts=["tanh"]), id="rnn-tanh"),
    pytest.param(dict(cell="rnn", acts=["relu"]), id="rnn-relu"),
    pytest.param(dict(cell="lstm", P=5), id="lstm-proj"),
    pytest.param(dict(cell="lstm", peephole=True, clip=0.7), id="lstm-peephole-clip"),
    pytest.param(dict(cell="lstm", input_forget=True, bias=False), id="lstm-coupled-nobias"),
    pytest.param(
        dict(cell="lstm", acts=[("hardsigmoid", 0.2, 0.5), ("scaledtanh", 1.5, 0.7), "softsign"]),
        id="lstm-onnx-acts",
    ),
    pytest.param(dict(cell="gru", acts=["hardsigmoid", ("leakyrelu", 0.1, 0.0)]), id="gru-acts"),
]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("case", CELL_CASES)
@pytest.mark.parametrize("D", [1, 2], ids=["uni", "bi"])
def test_cells(strategy, case, D):
    rng = np.random.default_rng(0)
    case = dict(case)
    layer = make_layer(rng, case.pop("cell"), 6, 9, D=D, **case)
    ref, outs, used = run_both([layer], 5, 3, strategy=strategy, calls=3)
    check(ref, outs, "fp32", f"{strategy} D={D}")
    if strategy == "graph":
        assert used == ["graph"]
    else:
        assert used == [strategy]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("hold", [False, True], ids=["zero", "hold"])
@pytest.mark.parametrize("cell", ["lstm", "gru-rb", "lstm-proj"])
def test_masks(strategy, hold, cell):
    """Variable lengths (PyTorch) and masks with holes (Keras), both directions: states carried,
    outputs zero or held."""
    rng = np.random.default_rng(2)
    options = {"masked_output": "hold" if hold else "zero"}
    if cell == "gru-rb":
        layer = make_layer(rng, "gru", 4, 6, D=2, linear_before_reset=False, **options)
    elif cell == "lstm-proj":
        layer = make_layer(rng, "lstm", 4, 6, P=3, D=2, **options)
    else:
        layer = make_layer(rng, "lstm", 4, 6, D=2, **options)
    T, B = 6, 4
    mask = (np.arange(T)[:, None] < np.array([6, 1, 4, 3])[None, :]).astype(np.uint8)
    mask[2, 0] = 0  # a hole inside a sequence
    mask[0, 3] = 0  # and one at the start
    ref, outs, _ = run_both(
        [layer], T, B, strategy=strategy, mask=np.ascontiguousarray(mask), calls=3
    )
    check(ref, outs, "fp32", f"{strategy} masked")


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("B", [1, 4, 5, 9])
def test_batch_tiles(strategy, B):
    """Batch sizes around the persistent kernel's tiles (1, 4, 8 rows per pass)."""
    rng = np.random.default_rng(3)
    layers = [make_layer(rng, "lstm", 5, 8, D=2), make_layer(rng, "gru", 16, 7)]
    ref, outs, _ = run_both(layers, 3, B, strategy=strategy, calls=2)
    check(ref, outs, "fp32", f"{strategy} B={B}")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("strategy", ["persistent", "graph"])
def test_reduced_precision(precision, strategy):
    rng = np.random.default_rng(4)
    layers = [make_layer(rng, "lstm", 8, 16, D=2), make_layer(rng, "gru", 32, 8)]
    ref, outs, _ = run_both(layers, 6, 3, strategy=strategy, precision=precision, calls=3)
    check(ref, outs, precision, f"{strategy} {precision}")


def test_no_states_and_odd_sizes():
    """Zero initial states, sizes that are not multiples of anything, auto strategy."""
    rng = np.random.default_rng(5)
    layers = [make_layer(rng, "lstm", 3, 13, P=11), make_layer(rng, "rnn", 11, 5, acts=["tanh"])]
    ref, outs, used = run_both(layers, 7, 2, strategy="auto", states=False, calls=2)
    check(ref, outs, "fp32", "auto")
    assert used == ["persistent", "persistent"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_blocks_of_steps(strategy, monkeypatch):
    """More steps than one input projection holds (1 KiB here: 10 steps a block): several blocks
    of steps, both directions."""
    monkeypatch.setenv("PYLSTM_CUDA_XP_KIB", "1")
    rng = np.random.default_rng(6)
    layer = make_layer(rng, "gru", 4, 6, D=2, masked_output="hold")
    mask = np.ones((23, 2), np.uint8)
    mask[15:, 1] = 0
    ref, outs, _ = run_both([layer], 23, 2, strategy=strategy, mask=mask, calls=3)
    check(ref, outs, "fp32", "blocks")


@pytest.mark.parametrize(
    "env",
    [
        {"PYLSTM_EMU_SMEM": "20000"},  # weights do not fit in shared memory: read from global
        {"PYLSTM_EMU_SMS": "2"},  # one block holds every unit of a direction
        {"PYLSTM_EMU_SMS": "16", "PYLSTM_CUDA_PERSISTENT_BLOCKS": "7"},  # spare blocks
    ],
    ids=["global-weights", "one-block", "spare-blocks"],
)
def test_persistent_plans(env, tmp_path):
    """Other splits of the persistent kernel (device properties are read once per process, so
    each runs in a child process)."""
    here = os.path.dirname(__file__)
    code = f"import sys; sys.path.insert(0, {here!r}); import test_cuda_emulation as t; t._plans_child()"
    out = subprocess.run(  # the same pylstm as this process, not the source tree in the cwd
        [sys.executable, "-c", code],
        env=child_env(env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def _plans_child():
    rng = np.random.default_rng(7)
    for layer in (
        make_layer(rng, "lstm", 5, 21, P=9, D=2),
        make_layer(rng, "gru", 5, 21, D=2, linear_before_reset=False),
        make_layer(rng, "lstm", 40, 33),
    ):
        for precision in ("fp32", "fp16"):
            ref, outs, used = run_both([layer], 4, 3, strategy="persistent", precision=precision)
            assert used == ["persistent"]
            check(ref, outs, precision, f"plan {precision}")


def test_errors_are_exceptions():
    rng = np.random.default_rng(8)
    cores = [make_layer(rng, "lstm", 3, 4).to_core()]
    with pytest.raises(ValueError, match="fp32, fp16 or bf16"):
        emu.Network(cores, "int8", 0, "auto")
    with pytest.raises(ValueError, match="strategy"):
        emu.Network(cores, "fp32", 0, "fastest")
    with pytest.raises(pylstm.DeviceError, match="device 3 does not exist"):
        emu.Network(cores, "fp32", 3, "auto")
    net = emu.Network(cores, "fp32", 0, "auto")
    with pytest.raises(ValueError, match="x: expected 3 features"):
        net.forward_device((8, "float32", 2, 1, 5, 5, 5), (8, "float32", 2, 1, 4, 4, 4))
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        net.forward_device((8, "float64", 2, 1, 3, 3, 3), (8, "float32", 2, 1, 4, 4, 4))


# -- the device-array path of the PyTorch face, on emulated device memory ---------------------


class EmuArray:
    """A stand-in for a device array in the emulation, where device memory is host memory."""

    def __init__(self, arr):
        self.arr = arr


class EmuIO:
    """pylstm.runtime.device_arrays.DeviceIO for EmuArray (numpy underneath)."""

    lib, device, stream = "emu", 0, 0

    def view(self, a):
        from pylstm.runtime.device_arrays import DeviceView

        arr = a.arr
        return DeviceView(
            arr.ctypes.data,
            arr.shape,
            tuple(s // arr.itemsize for s in arr.strides),
            arr.dtype.name,
            0,
        )

    def empty(self, shape, dtype):
        return EmuArray(np.full(shape, np.nan, dtype))

    def as_type(self, a, dtype, contiguous=False):
        arr = a.arr if isinstance(a, EmuArray) else np.asarray(a)
        return EmuArray(np.ascontiguousarray(arr.astype(dtype)))

    def from_host(self, a):
        return EmuArray(np.ascontiguousarray(a))


@pytest.fixture
def emulated_device_arrays(monkeypatch):
    import pylstm.faces.torch_face as torch_face
    import pylstm.runtime.device_arrays as device_arrays

    real_adopt, real_is = device_arrays.adopt, torch_face.is_device_array
    monkeypatch.setattr(
        device_arrays, "adopt", lambda a: (a, EmuIO()) if isinstance(a, EmuArray) else real_adopt(a)
    )
    monkeypatch.setattr(
        torch_face, "is_device_array", lambda a: isinstance(a, EmuArray) or real_is(a)
    )

    def to_emulated(model, precision="fp32", strategy="persistent"):
        engine = model.engine
        engine._net = emu.Network(engine._net.unpack(), precision, 0, strategy)
        engine.device = "cuda:0"
        return model

    return to_emulated


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("strategy", ["persistent", "graph"])
def test_face_device_path(emulated_device_arrays, batch_first, strategy):
    """TorchModel on device arrays: strided inputs, batch-first, states in and out, lengths."""
    rng = np.random.default_rng(9)
    layers = [make_layer(rng, "lstm", 5, 6, P=4, D=2), make_layer(rng, "lstm", 8, 6, P=4, D=2)]
    cpu = pylstm.from_arrays(layers, batch_first=batch_first)
    gpu = emulated_device_arrays(
        pylstm.from_arrays(layers, batch_first=batch_first), strategy=strategy
    )
    T, B = 6, 3
    x = rng.standard_normal((B, T, 5) if batch_first else (T, B, 5)).astype(np.float32)
    x_strided = np.asfortranarray(x)  # every axis strided differently; features not contiguous
    h0 = rng.uniform(-1, 1, (4, B, 4)).astype(np.float32)
    c0 = rng.uniform(-1, 1, (4, B, 6)).astype(np.float32)
    lengths = [6, 2, 5]
    ref_y, (ref_h, ref_c) = cpu(x, (h0, c0), lengths=lengths)
    for _ in range(3):
        y, (h, c) = gpu(EmuArray(x_strided), (EmuArray(h0), c0), lengths=lengths)
        assert isinstance(y, EmuArray) and y.arr.shape == ref_y.shape
        assert_close(y.arr, ref_y, atol=3e-5, scaled=True, what="y")
        assert_close(h.arr, ref_h, atol=3e-5, scaled=True, what="h_n")
        assert_close(c.arr, ref_c, atol=3e-5, scaled=True, what="c_n")


def test_face_device_path_unbatched_fp16(emulated_device_arrays):
    rng = np.random.default_rng(10)
    layers = [make_layer(rng, "gru", 5, 7)]
    cpu = pylstm.from_arrays(layers)
    gpu = emulated_device_arrays(pylstm.from_arrays(layers), precision="fp16")
    x = rng.standard_normal((6, 5)).astype(np.float32)
    h0 = rng.uniform(-1, 1, (1, 7)).astype(np.float32)
    ref_y, ref_h = cpu(x, h0)
    y, h = gpu(EmuArray(x.astype(np.float16)), EmuArray(h0.astype(np.float16)))
    assert y.arr.dtype == np.float16 and y.arr.shape == (6, 7) and h.arr.shape == (1, 7)
    assert_close(y.arr.astype(np.float32), ref_y, atol=2e-2, what="fp16 y")
    assert_close(h.arr.astype(np.float32), ref_h, atol=2e-2, what="fp16 h_n")
    y64, _ = gpu(EmuArray(x.astype(np.float64)))
    assert y64.arr.dtype == np.float32  # float64 computes as float32


def test_stream_core(emulated_device_arrays):
    """Streaming on a CUDA engine (Engine.stream_core): chunks concatenate to one call."""
    rng = np.random.default_rng(12)
    layers = [make_layer(rng, "lstm", 4, 6, P=3), make_layer(rng, "lstm", 3, 6, P=3)]
    cpu = pylstm.from_arrays(layers, batch_first=True)
    gpu = emulated_device_arrays(pylstm.from_arrays(layers, batch_first=True))
    x = rng.standard_normal((2, 9, 4)).astype(np.float32)
    core = gpu.engine.stream_core(2, True)
    parts = [core.step(x[:, :4]), core.step(x[:, 4])[:, None], core.step(x[:, 5:])]
    assert_close(np.concatenate(parts, axis=1), cpu(x)[0], atol=3e-5, scaled=True, what="y")
    core.reset()
    assert not core.h.any() and not core.c.any()


def test_stream_batcher_on_the_cuda_backend(emulated_device_arrays):
    """The stream batcher's C++ rounds on the CUDA backend's streams (states gathered into one
    device state per round and back; h and c blocks of different sizes, projection): each
    stream's outputs as the CPU model's stream alone."""
    rng = np.random.default_rng(13)
    layers = [make_layer(rng, "lstm", 4, 6, P=3), make_layer(rng, "lstm", 3, 6, P=3)]
    cpu = pylstm.from_arrays(layers)
    gpu = emulated_device_arrays(pylstm.from_arrays(layers))
    chunks = [[rng.standard_normal((1 + (i + t) % 3, 4)).astype(np.float32) for t in range(4)]
              for i in range(6)]  # fmt: skip
    with pylstm.StreamBatcher(gpu, max_batch=4, max_delay_ms=20) as b:
        streams = [b.open() for _ in chunks]
        got = [[None] * 4 for _ in chunks]

        def client(i):
            for t, c in enumerate(chunks[i]):
                got[i][t] = streams[i].step(c)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(chunks))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert b.stats["rounds"] < sum(len(c) for c in chunks)  # some rounds batched streams
    for i, cs in enumerate(chunks):
        alone = cpu.stream(1)
        for t, c in enumerate(cs):
            want = alone.step(c[:, None])[:, 0]
            assert_close(got[i][t], want, atol=3e-5, scaled=True, what=f"stream {i} chunk {t}")
