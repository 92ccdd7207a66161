"""The CUDA backend behind the one binding (_core.Network, _core.Stream), in the host emulation
``pylstm._cuda_emu`` (see tests/test_cuda_emulation.py; skipped where it was not built): the
module's Network is a factory of _core.Network, streams keep their state in device memory (the
emulated runtime counts host <-> device copies), and unpack() returns the weights from the device
so that a model rebuilt from them computes the same bits."""

from __future__ import annotations

import numpy as np
import pytest
from test_backend import make_layer, run, stacks

from pylstm import _core
from pylstm.runtime.system import simd_level

emu = pytest.importorskip(
    "pylstm._cuda_emu", reason="the CUDA emulation was not built (PYLSTM_CUDA_EMULATION=ON)"
)


def test_network_is_a_core_network():
    rng = np.random.default_rng(1)
    net = emu.Network([make_layer(rng, "lstm", 3, 4).to_core()], "fp32", 0, "auto")
    assert type(net) is _core.Network
    assert net.device == 0 and net.backend.startswith("cuda:0/fp32")
    again = _core.Network.from_capsule(emu.make_backend([make_layer(rng, "gru", 3, 4).to_core()]))
    assert again.output_size == 4 and again.h_floats == 4 and again.c_floats == 4


@pytest.mark.parametrize("strategy", ["persistent", "graph"])
@pytest.mark.parametrize("name", ["lstm-proj-peephole", "gru-both-resets", "rnn-nobias-coupled"])
def test_unpack_round_trip_is_bit_identical(name, strategy):
    rng = np.random.default_rng(2)
    cores = [layer.to_core() for layer in stacks(rng)[name]]
    net = emu.Network(cores, "fp32", 0, strategy)
    back = net.unpack()
    again = emu.Network(back, "fp32", 0, strategy)
    T, B = 5, 2
    x = rng.standard_normal((T, B, 5)).astype(np.float32)
    for a, b, what in zip(run(net, x, B), run(again, x, B), ("y", "h_n", "c_n")):
        np.testing.assert_array_equal(a, b, err_msg=f"{name} {what}")
    # the same canonical layers as the CPU backend's (both fold the biases the same way)
    cpu = _core.Network(cores, simd_level(), "fp32").unpack()
    for got, want in zip(back, cpu):
        for dg, dw in zip(got["directions"], want["directions"]):
            for key in ("w", "r", "bias_w", "bias_r", "proj"):
                if dw[key] is None:
                    assert dg[key] is None, key
                else:
                    np.testing.assert_array_equal(dg[key], dw[key], err_msg=key)


def test_unpack_fp16_round_trip():
    rng = np.random.default_rng(3)
    cores = [make_layer(rng, "lstm", 5, 6, P=3).to_core()]
    net = emu.Network(cores, "fp16", 0, "persistent")
    again = emu.Network(net.unpack(), "fp16", 0, "persistent")
    x = rng.standard_normal((4, 2, 5)).astype(np.float32)
    for a, b in zip(run(net, x, 2), run(again, x, 2)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("strategy", ["persistent", "graph", "steps"])
def test_stream_state_stays_on_the_device(strategy):
    """A step copies its inputs to the device and its outputs back, nothing else; chunks of
    steps give what one call on the whole sequence gives."""
    rng = np.random.default_rng(4)
    layers = [make_layer(rng, "lstm", 5, 6, P=3), make_layer(rng, "gru", 3, 7)]
    net = emu.Network([layer.to_core() for layer in layers], "fp32", 0, strategy)
    T, B, I, O = 7, 3, 5, 7
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    y = np.zeros((T, B, O), np.float32)
    h_n = np.zeros(net.h_floats * B, np.float32)
    c_n = np.zeros(net.c_floats * B, np.float32)
    net.forward(x, y, None, None, None, h_n, c_n)

    stream = _core.Stream(net, B)
    parts = []
    for chunk in (x[:3], x[3], x[4:]):
        before = emu.copy_counts()
        parts.append(stream.step(chunk) if chunk.ndim == 3 else stream.step(chunk)[None])
        after = emu.copy_counts()
        steps = 1 if chunk.ndim == 2 else chunk.shape[0]
        assert after["h2d_bytes"] - before["h2d_bytes"] == steps * B * I * 4
        assert after["d2h_bytes"] - before["d2h_bytes"] == steps * B * O * 4
        assert after["h2d_calls"] - before["h2d_calls"] == 1
        assert after["d2h_calls"] - before["d2h_calls"] == 1
    np.testing.assert_allclose(np.concatenate(parts), y, atol=3e-6)
    np.testing.assert_allclose(stream.h, h_n, atol=3e-6)
    np.testing.assert_allclose(stream.c[: 6 * B], c_n[: 6 * B], atol=3e-6)  # the LSTM's c


def test_stream_state_copies():
    rng = np.random.default_rng(5)
    net = emu.Network([make_layer(rng, "lstm", 4, 5).to_core()], "fp32", 0, "auto")
    cpu = _core.Network([net.unpack()[0]], simd_level(), "fp32")
    B = 2
    h = rng.uniform(-1, 1, 5 * B).astype(np.float32)
    c = rng.uniform(-1, 1, 5 * B).astype(np.float32)
    streams = [_core.Stream(n, B) for n in (net, cpu)]
    for s in streams:
        s.set_state(h, c)
        np.testing.assert_array_equal(s.h, h)
        np.testing.assert_array_equal(s.c, c)
    x = rng.standard_normal((3, B, 4)).astype(np.float32)
    y_gpu, y_cpu = (s.step(x) for s in streams)
    np.testing.assert_allclose(y_gpu, y_cpu, atol=3e-5)
    streams[0].reset(0)
    assert not streams[0].row_state(0)[0].any() and streams[0].row_state(1)[0].any()
    streams[0].set_row_state(0, *streams[1].row_state(0))
    np.testing.assert_array_equal(streams[0].row_state(0)[1], streams[1].row_state(0)[1])
