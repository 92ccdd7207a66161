"""The gate variants from numpy arrays (``pylstm.from_arrays``), as a user with a peephole,
coupled-gate, clipped or custom-activation LSTM (or a GRU with the reset gate before the
recurrent product, or an RNN with any activation) trained elsewhere builds them: weights in ONNX
layout, converted with ``Layer(gate_order=...)``, peepholes reordered from ONNX's i, o, f.

Each is compared with the float64 ONNX oracle (tests/onnx_oracle.py) on every instruction set
the CPU offers (``PYLSTM_SIMD``), with lengths, initial states, one and two layers.

Tolerance: 3e-5 absolute for unit-scale outputs, scaled by the row's largest magnitude for
unbounded ones (onnx_oracle.assert_close).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from onnx_oracle import assert_close, random_case, reference, resolve_activations

import pylstm

ATOL = 3e-5
T, B, I, H = 6, 4, 5, 7
ORDER = {"LSTM": "iofc", "GRU": "zrh", "RNN": "h"}


def layers_from_onnx_arrays(op, arrays, attrs, num_layers=1):
    """pylstm Layers from ONNX-layout arrays, as the README shows."""
    D = np.asarray(arrays["W"]).shape[0]
    direction = attrs.get("direction", "forward")
    acts = resolve_activations(
        op, D, attrs.get("activations"), attrs.get("activation_alpha"), attrs.get("activation_beta")
    )
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    H = np.asarray(arrays["R"]).shape[-1]
    dirs = []
    for d in range(D):
        # ONNX's P is i, o, f: gate_order="iofc" reorders it with the gates
        peephole = None if arrays.get("P") is None else arrays["P"][d]
        b = arrays.get("B")
        dirs.append(
            pylstm.Direction(
                w=arrays["W"][d],
                r=arrays["R"][d],
                bias_w=None if b is None else b[d][: G * H],
                bias_r=None if b is None else b[d][G * H :],
                peephole=peephole,
                activations=acts[d],
                reverse=direction == "reverse" or d == 1,
            )
        )
    layer = pylstm.Layer(
        op.lower(),
        dirs,
        clip=attrs.get("clip"),
        input_forget=bool(attrs.get("input_forget", 0)),
        linear_before_reset=bool(attrs.get("linear_before_reset", 0)),
        gate_order=ORDER[op],
    )
    return [layer] * num_layers


CASES = {
    "lstm-peephole": ("LSTM", {}, {"peephole": True}),
    "lstm-input_forget": ("LSTM", {"input_forget": 1}, {"peephole": True}),
    "lstm-clip": ("LSTM", {"clip": 0.8}, {"peephole": True}),
    "lstm-activations": (
        "LSTM",
        {
            "activations": ["HardSigmoid", "Softsign", "ScaledTanh"],
            "activation_alpha": [0.25, 1.1],
            "activation_beta": [0.5, 0.9],
        },
        {},
    ),
    "lstm-no_bias-reverse": ("LSTM", {"direction": "reverse"}, {"bias": False, "peephole": True}),
    "lstm-everything-bidirectional": (
        "LSTM",
        {
            "direction": "bidirectional",
            "input_forget": 1,
            "clip": 1.5,
            "activations": ["Sigmoid", "Elu", "Softsign", "HardSigmoid", "Tanh", "Tanh"],
            "activation_alpha": [0.8, 0.3],
            "activation_beta": [0.6],
        },
        {"peephole": True, "bias": False},
    ),
    "gru-reset_before_product": ("GRU", {"linear_before_reset": 0}, {}),
    "gru-reset_after_product": ("GRU", {"linear_before_reset": 1}, {}),
    "gru-clip-activations": (
        "GRU",
        {"clip": 0.7, "activations": ["HardSigmoid", "LeakyRelu"], "activation_alpha": [0.3, 0.05]},
        {},
    ),
    "gru-no_bias-bidirectional": ("GRU", {"direction": "bidirectional"}, {"bias": False}),
    "rnn-relu-reverse": ("RNN", {"activations": ["Relu"], "direction": "reverse"}, {"scale": 1.5}),
    "rnn-affine-clip": (
        "RNN",
        {
            "activations": ["Affine"],
            "activation_alpha": [0.6],
            "activation_beta": [0.1],
            "clip": 2.0,
        },
        {},
    ),
    "rnn-softplus-no_bias-bidirectional": (
        "RNN",
        {
            "activations": ["Softplus", "ThresholdedRelu"],
            "activation_alpha": [0.2],
            "direction": "bidirectional",
        },
        {"bias": False, "scale": 1.0},
    ),
}


SIZES = {"small": (6, 4, 5, 7), "wide": (9, 5, 20, 37)}  # T, B, I, H; 37: full vectors + a tail


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("name", list(CASES))
def test_from_arrays_against_oracle(isa, name, num_layers, size):
    op, attrs, case_kw = CASES[name]
    T, B, I, H = SIZES[size]
    direction = attrs.get("direction", "forward")
    rng = np.random.default_rng(zlib.crc32(name.encode()) + num_layers)
    D = 2 if direction == "bidirectional" else 1
    # a second layer reads D*H features: the shared weights then have that input width
    width = D * H if num_layers == 2 else I
    arrays = random_case(op, rng, T=T, B=B, I=width, H=H, direction=direction, **case_kw)
    lengths = [T, 1, *rng.integers(1, T + 1, size=B - 2)]
    model = pylstm.from_arrays(layers_from_onnx_arrays(op, arrays, attrs, num_layers))
    h0 = rng.uniform(-1, 1, size=(num_layers * D, B, H)).astype(np.float32)
    c0 = rng.uniform(-2, 2, size=(num_layers * D, B, H)).astype(np.float32)
    hx = (h0, c0) if op == "LSTM" else h0
    y, state = model(arrays["X"], hx, lengths=lengths)

    # oracle: each layer with its slice of the initial state, sequence_lens = lengths
    x = arrays["X"]
    attrs_k = dict(attrs)
    finals = []
    for k in range(num_layers):
        layer_arrays = dict(
            arrays,
            X=x,
            sequence_lens=np.asarray(lengths, np.int32),
            initial_h=h0[k * D : (k + 1) * D],
        )
        if op == "LSTM":
            layer_arrays["initial_c"] = c0[k * D : (k + 1) * D]
        out, *states = reference(op, layer_arrays, attrs_k)
        x = out.transpose(0, 2, 1, 3).reshape(T, B, D * H)
        finals.append(states)
    assert_close(y, x, atol=ATOL, what=f"{name} output ({isa})")
    h_n = state[0] if op == "LSTM" else state
    assert_close(h_n, np.concatenate([f[0] for f in finals]), atol=ATOL, what=f"{name} h_n")
    if op == "LSTM":
        assert_close(state[1], np.concatenate([f[1] for f in finals]), atol=ATOL, what="c_n")


def test_lstm_clip_leaves_the_cell_unclipped():
    """ONNX Runtime's reading of LSTM clip: gate inputs are clipped, C_t is not, not even where
    it enters h. One step with c_0 = 3 and saturated gates gives C_1 ~ 2, beyond clip = 0.5."""
    big = np.full((4, 1), 10.0)
    d = pylstm.Direction(w=big, r=np.zeros((4, 1)))
    model = pylstm.from_arrays([pylstm.Layer("lstm", [d], clip=0.5)])
    _, (h, c) = model(np.ones((1, 1, 1)), (np.zeros((1, 1, 1)), np.full((1, 1, 1), 3.0)))
    o = 1 / (1 + np.exp(-0.5))  # the output gate's input, 10, clipped to 0.5
    assert c.item() > 1.5
    assert abs(h.item() - o * np.tanh(c.item())) < 1e-6  # fp32 evaluation of one step


def test_streaming_a_peephole_lstm(isa):
    """from_arrays models stream like any other: chunks equal one call (1e-6: same arithmetic,
    GEMM blocking may differ with the chunk's row count)."""
    rng = np.random.default_rng(9)
    arrays = random_case("LSTM", rng, T=T, B=B, I=I, H=H, peephole=True)
    attrs = {"input_forget": 1, "clip": 3.0}
    model = pylstm.from_arrays(layers_from_onnx_arrays("LSTM", arrays, attrs))
    whole, _ = model(arrays["X"])
    stream = model.stream(B)
    parts = [stream.step(arrays["X"][a:b]) for a, b in ((0, 1), (1, 4), (4, T))]
    assert_close(np.concatenate(parts), whole, atol=1e-6, what="streamed")
