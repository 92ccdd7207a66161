"""The backend interface as the binding sees it (cpp/include/pylstm/backend.hpp), on the CPU:
Network.unpack() (the canonical layers back from the packed weights; packing them again gives
bit-identical outputs in every precision), the stream state by sequence row, and what only a
CUDA backend does. The CUDA backend's side: tests/test_cuda_backend.py."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from child_process import child_env

import pylstm
from pylstm import _core
from pylstm.runtime.system import simd_level

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
KEYS = {"cell", "input_size", "hidden_size", "proj_size", "clip", "input_forget"}
KEYS |= {"linear_before_reset", "masked_output", "directions"}


def make_layer(rng, cell, I, H, *, P=0, D=1, bias=True, peephole=False, **options):
    G = GATES[cell]
    dirs = []
    for d in range(D):

        def u(*shape, scale=1.0):
            return (rng.uniform(-scale, scale, shape) / np.sqrt(H)).astype(np.float32)

        dirs.append(
            pylstm.Direction(
                w=u(G * H, I, scale=3),
                r=u(G * H, P or H, scale=3),
                bias_w=u(G * H) if bias else None,
                bias_r=u(G * H) if bias else None,
                peephole=u(3 * H, scale=4) if peephole else None,
                proj=u(P, H, scale=2) if P else None,
                reverse=d == 1,
            )
        )
    return pylstm.Layer(cell, dirs, **options)


def stacks(rng):
    """Stacks that cover the packed forms: projections, peepholes, both GRU resets, no bias,
    two directions, sizes that are not a multiple of the vector width."""
    return {
        "lstm-proj-peephole": [
            make_layer(rng, "lstm", 5, 19, P=7, peephole=True),
            make_layer(rng, "lstm", 7, 6, D=2, clip=2.5, masked_output="hold"),
        ],
        "gru-both-resets": [
            make_layer(rng, "gru", 5, 9, D=2),
            make_layer(rng, "gru", 18, 33, linear_before_reset=False),
        ],
        "rnn-nobias-coupled": [
            make_layer(rng, "rnn", 5, 17, bias=False),
            make_layer(rng, "lstm", 17, 5, input_forget=True),
        ],
    }


def run(net, x, B):
    T = x.shape[0]
    y = np.full((T, B, net.output_size), np.nan, np.float32)
    h_n = np.full(net.h_floats * B, np.nan, np.float32)
    c_n = np.full(net.c_floats * B, np.nan, np.float32)
    h0 = np.linspace(-1, 1, net.h_floats * B, dtype=np.float32)
    c0 = np.linspace(1, -1, net.c_floats * B, dtype=np.float32)
    net.forward(x, y, None, h0, c0, h_n, c_n)
    return y, h_n, c_n


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("name", ["lstm-proj-peephole", "gru-both-resets", "rnn-nobias-coupled"])
def test_unpack_round_trip_is_bit_identical(precision, name):
    rng = np.random.default_rng(1)
    layers = stacks(rng)[name]
    net = _core.Network([layer.to_core() for layer in layers], simd_level(), precision)
    again = _core.Network(net.unpack(), simd_level(), precision)
    T, B = 6, 3
    x = rng.standard_normal((T, B, 5)).astype(np.float32)
    for a, b, what in zip(run(net, x, B), run(again, x, B), ("y", "h_n", "c_n")):
        np.testing.assert_array_equal(a, b, err_msg=f"{name} {precision} {what}")
    # and once more: unpacking is stable
    for a, b in zip(again.unpack(), net.unpack()):
        for da, db in zip(a["directions"], b["directions"]):
            np.testing.assert_array_equal(da["w"], db["w"])
            np.testing.assert_array_equal(da["r"], db["r"])


def test_unpack_gives_the_canonical_layers():
    """fp32: the weights exactly; the biases folded (bias_w = input + recurrent, bias_r = 0) but
    for the GRU's recurrent n bias, which stays inside r * (...)."""
    rng = np.random.default_rng(2)
    layers = stacks(rng)["gru-both-resets"] + [make_layer(rng, "lstm", 33, 4, P=3, peephole=True)]
    net = _core.Network([layer.to_core() for layer in layers], simd_level(), "fp32")
    got = net.unpack()
    for layer, core, back in zip(layers, [layer.to_core() for layer in layers], got):
        assert set(back) == KEYS
        for key in KEYS - {"directions", "clip"}:
            assert back[key] == core[key], key
        assert back["clip"] == float(core["clip"])
        H = layer.hidden_size
        for d, b in zip(core["directions"], back["directions"]):
            assert b["reverse"] == d["reverse"]
            assert [a[0] for a in b["activations"]] == [a[0] for a in d["activations"]]
            for key in ("w", "r", "proj"):
                if d[key] is None:
                    assert b[key] is None
                else:
                    assert b[key].dtype == np.float32 and b[key].shape == np.shape(d[key])
                    np.testing.assert_array_equal(b[key], d[key])
            if d["peephole"] is not None:
                np.testing.assert_array_equal(b["peephole"], np.ravel(d["peephole"]))
            keep = layer.cell == "gru" and layer.linear_before_reset
            folded = np.float32(d["bias_w"]) + np.float32(d["bias_r"])
            want_r = np.zeros_like(folded)
            if keep:
                folded[2 * H :] = d["bias_w"][2 * H :]
                want_r[2 * H :] = d["bias_r"][2 * H :]
            np.testing.assert_array_equal(b["bias_w"], folded)
            np.testing.assert_array_equal(b["bias_r"], want_r)


def test_unpack_bf16_is_the_rounded_weights():
    rng = np.random.default_rng(3)
    layer = make_layer(rng, "lstm", 5, 7)
    net = _core.Network([layer.to_core()], simd_level(), "bf16")
    w = net.unpack()[0]["directions"][0]["w"]
    bits = w.view(np.uint32)
    assert not (bits & 0xFFFF).any()  # bfloat16 values
    np.testing.assert_allclose(w, layer.directions[0].w, rtol=2**-8)


def test_stream_state_by_row():
    rng = np.random.default_rng(4)
    layers = [make_layer(rng, "lstm", 5, 6, P=3), make_layer(rng, "gru", 3, 4)]
    net = _core.Network([layer.to_core() for layer in layers], simd_level(), "fp32")
    B = 3
    stream = _core.Stream(net, B)
    stream.step(rng.standard_normal((4, B, 5)).astype(np.float32))
    h, c = stream.h, stream.c
    # h is [L*D, B, Hout] blocks: layer 0 [B, 3], layer 1 [B, 4]
    rows_h = [
        np.concatenate([h[: 3 * B].reshape(B, 3)[b], h[3 * B :].reshape(B, 4)[b]]) for b in range(B)
    ]
    rows_c = [
        np.concatenate([c[: 6 * B].reshape(B, 6)[b], c[6 * B :].reshape(B, 4)[b]]) for b in range(B)
    ]
    for b in range(B):
        rh, rc = stream.row_state(b)
        np.testing.assert_array_equal(rh, rows_h[b])
        np.testing.assert_array_equal(rc, rows_c[b])
    stream.reset(1)
    assert not stream.row_state(1)[0].any() and stream.row_state(0)[0].any()
    stream.set_row_state(1, rows_h[2], rows_c[2])
    np.testing.assert_array_equal(stream.row_state(1)[0], rows_h[2])
    # rows 1 and 2 now carry the same state: the same input gives the same output
    x = np.repeat(rng.standard_normal((1, 1, 5)).astype(np.float32), B, axis=1)
    y = stream.step(x)
    np.testing.assert_array_equal(y[0, 1], y[0, 2])
    with pytest.raises(ValueError, match="row"):
        stream.row_state(B)
    stream.reset()
    assert not stream.h.any() and not stream.c.any()


def test_device_entry_points_need_cuda():
    rng = np.random.default_rng(5)
    net = _core.Network([make_layer(rng, "gru", 3, 4).to_core()], simd_level(), "fp32")
    x = np.zeros((2, 1, 3), np.float32)
    y = np.zeros((2, 1, 4), np.float32)
    with pytest.raises(ValueError, match="needs a CUDA backend"):
        net.forward_device(
            (x.ctypes.data, "float32", 2, 1, 3, 3, 3), (y.ctypes.data, "float32", 2, 1, 4, 4, 4)
        )
    assert net.device == -1 and list(net.last_strategies) == []
    with pytest.raises(ValueError, match="no layer"):
        net.persistent_refusal(1, 1)
    with pytest.raises(ValueError, match="capsule"):
        _core.Network.from_capsule(object())


# Run in a fresh interpreter: in a long test process, glibc may serve the temporary unpacked
# copy from heap that earlier tests freed (and not hand it back), which is not what is measured.
_HELD_ONCE = """
import sys
import numpy as np
from pylstm import _core

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

precision = sys.argv[1]
rng = np.random.default_rng(6)
H = I = 1024
u = lambda *s: rng.uniform(-0.03, 0.03, s).astype(np.float32)
core = dict(cell="lstm", input_size=I, hidden_size=H, directions=[dict(
    activations=[("sigmoid", 0.0, 0.0), ("tanh", 0.0, 0.0), ("tanh", 0.0, 0.0)],
    w=u(4 * H, I), r=u(4 * H, H), bias_w=u(4 * H), bias_r=u(4 * H))])
before = rss()
net = _core.Network([core], "auto", precision)
print(rss() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_weights_are_held_once(precision, tmp_path):
    """A network holds its packed weights and nothing else of that size (no unpacked copy kept
    for its sizes): resident memory grows by about the packed bytes (fp32 as given, int8 a
    quarter), not twice that."""
    weight_bytes = 2 * 4 * 1024 * 1024 * 4  # w and r of LSTM(1024, 1024): 32 MiB
    packed = weight_bytes // (4 if precision == "int8" else 1)
    done = subprocess.run(
        [sys.executable, "-c", _HELD_ONCE, precision],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    grown = int(done.stdout.split()[-1])
    assert grown < packed + weight_bytes // 4, (grown, packed)
