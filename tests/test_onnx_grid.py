"""pylstm against the float64 ONNX oracle (tests/onnx_oracle.py) on the whole grid of the
recurrent operators: operator x direction x layout x lengths x initial state x every variant
(peepholes, coupled input-forget gate, clip, activation lists with alpha/beta, GRU
linear_before_reset, missing bias), including layout=1, which ONNX Runtime refuses.

Single-operator models are built with onnx.helper and loaded in memory; X, sequence_lens and
the initial states are graph inputs, W/R/B/P initializers. Weights are drawn wide enough that
gates saturate, data is fresh for every case.

Tolerance: 3e-5 absolute for float32 outputs of unit scale, scaled by the largest magnitude in
the row for unbounded ones (relu, affine, softplus activations, cell states): see
``onnx_oracle.assert_close``.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx_oracle import ACTIVATION_NAMES, assert_close, make_model, random_case, reference

from pylstm.assemble import from_onnx_model

ATOL = 3e-5  # fp32 vs float64, unit-scale outputs (scaled for unbounded rows)
T, B, I, H = 5, 3, 4, 5
DIRECTIONS = ("forward", "reverse", "bidirectional")
LENGTHS = {
    "none": None,  # no sequence_lens input
    "mixed": [T, 0, 2],  # a full, an empty and a short sequence
    "short": [3, 3, 3],  # all shorter than T: the tail of Y is 0
    "given_full": [T, T, T],
}

# (op, variant) -> (node attributes, random_case keywords)
VARIANTS = {
    ("LSTM", "default"): ({}, {}),
    ("LSTM", "peephole"): ({}, {"peephole": True}),
    ("LSTM", "input_forget"): ({"input_forget": 1}, {"peephole": True}),
    ("LSTM", "clip"): ({"clip": 0.7}, {}),
    ("LSTM", "activations"): (
        {
            "activations": ["HardSigmoid", "Softsign", "Elu"] * 2,
            "activation_alpha": [0.3, 0.9, 0.25, 1.3],
            "activation_beta": [0.45, 0.55],
        },
        {},
    ),
    ("LSTM", "no_bias"): ({}, {"bias": False}),
    ("LSTM", "everything"): (
        {
            "input_forget": 1,
            "activations": ["Sigmoid", "ScaledTanh", "Tanh"] * 2,
            "activation_alpha": [1.2, 0.8],
            "activation_beta": [0.9, 1.1],
        },
        {"peephole": True, "bias": False},
    ),
    ("GRU", "default"): ({}, {}),
    ("GRU", "linear_before_reset"): ({"linear_before_reset": 1}, {}),
    ("GRU", "clip"): ({"clip": 0.6, "linear_before_reset": 1}, {}),
    ("GRU", "activations"): (
        {
            "activations": ["HardSigmoid", "LeakyRelu", "Sigmoid", "Affine"],
            "activation_alpha": [0.25, 0.1, 0.5],
            "activation_beta": [0.5, 0.2],
        },
        {},
    ),
    ("GRU", "no_bias"): ({"linear_before_reset": 1}, {"bias": False}),
    ("RNN", "default"): ({}, {}),
    ("RNN", "relu"): ({"activations": ["Relu", "Relu"]}, {}),
    ("RNN", "activations"): (
        {"activations": ["LeakyRelu", "ThresholdedRelu"], "activation_alpha": [0.2, 0.3]},
        {},
    ),
    ("RNN", "clip"): ({"clip": 0.5}, {}),
    ("RNN", "no_bias"): ({"activations": ["Softsign", "Tanh"]}, {"bias": False}),
}
RUNTIME = ("X", "sequence_lens", "initial_h", "initial_c")


def _attrs_for(op, attrs, direction):
    attrs = dict(attrs)
    D = 2 if direction == "bidirectional" else 1
    if "activations" in attrs:  # lists are written for two directions: keep what D needs
        per = {"LSTM": 3, "GRU": 2, "RNN": 1}[op]
        attrs["activations"] = attrs["activations"][: per * D]
        if D == 1 and op == "RNN" and attrs["activations"][0] == "Relu":
            pass
    attrs["direction"] = direction
    return attrs


def run_case(
    op, attrs, case_kw, direction, layout, lengths, initial, rng, *, opset=14, sizes=(T, B, I, H)
):
    """Build, load and run one case; return (pylstm outputs, oracle outputs, description)."""
    t, b, i, h = sizes
    attrs = _attrs_for(op, attrs, direction)
    if layout:
        attrs["layout"] = layout
    arrays = random_case(
        op,
        rng,
        T=t,
        B=b,
        I=i,
        H=h,
        direction=direction,
        layout=layout,
        lengths=lengths,
        initial=initial,
        **case_kw,
    )
    model = from_onnx_model(make_model(op, arrays, attrs, runtime=RUNTIME, opset=opset))
    feeds = {k: arrays[k] for k in RUNTIME if k in arrays}
    got = model.run(None, feeds)
    want = reference(op, arrays, attrs)
    what = f"{op} {attrs} layout={layout} lengths={lengths} initial={initial}"
    return got, want, what


def _check_grid(op, variant, rng):
    attrs, case_kw = VARIANTS[(op, variant)]
    failures = []
    for direction, layout, lengths, initial in itertools.product(
        DIRECTIONS, (0, 1), LENGTHS.values(), (False, True)
    ):
        got, want, what = run_case(op, attrs, case_kw, direction, layout, lengths, initial, rng)
        for name, g, w in zip(("Y", "Y_h", "Y_c"), got, want):
            try:
                assert_close(g, w, atol=ATOL, what=f"{name} of {what}")
            except AssertionError as exc:
                failures.append(str(exc))
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:6])


@pytest.mark.parametrize(("op", "variant"), list(VARIANTS))
def test_grid_against_oracle(op, variant):
    """48 cases per variant: 3 directions x 2 layouts x 4 length patterns x 2 initial states.

    LSTM clip follows ONNX Runtime's reading (gate inputs only; C_t unclipped)."""
    _check_grid(op, variant, np.random.default_rng(zlib.crc32(f"{op}-{variant}".encode())))


def test_lstm_clip_gates_only_when_cell_stays_within_clip():
    """With clip above every |C_t| the two readings of ONNX clip agree, and pylstm matches."""
    rng = np.random.default_rng(7)
    for direction, layout in itertools.product(DIRECTIONS, (0, 1)):
        got, want, what = run_case(
            "LSTM", {"clip": 50.0}, {}, direction, layout, [T, 1, 3], True, rng
        )
        assert max(np.abs(want[2]).max(), 1) < 50
        for name, g, w in zip(("Y", "Y_h", "Y_c"), got, want):
            assert_close(g, w, atol=ATOL, what=f"{name} of {what}")


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_every_activation_function(op):
    """Each of ONNX's eleven functions in every slot of the operator, with and without
    explicit alpha/beta (defaults: LeakyRelu 0.01, HardSigmoid 0.2/0.5, Elu 1.0, others 0)."""
    rng = np.random.default_rng(11)
    per = {"LSTM": 3, "GRU": 2, "RNN": 1}[op]
    failures = []
    for name, explicit in itertools.product(ACTIVATION_NAMES, (False, True)):
        attrs = {"activations": [name] * per + ["Tanh"] * per}
        if explicit:
            attrs["activation_alpha"] = [0.7, 0.4, 0.9, 0.6, 0.8, 0.5]
            attrs["activation_beta"] = [0.3, 0.6, 0.2, 0.5, 0.4, 0.1]
        got, want, what = run_case(
            op, attrs, {"scale": 1.0}, "bidirectional", 0, [T, 2, 4], True, rng
        )
        for out, g, w in zip(("Y", "Y_h", "Y_c"), got, want):
            try:
                assert_close(g, w, atol=ATOL, what=f"{out} of {what}")
            except AssertionError as exc:
                failures.append(str(exc))
    assert not failures, "\n".join(failures[:6])


@pytest.mark.parametrize("opset", [7, 9, 13, 14, 18, 22])
def test_opsets(opset):
    """The recurrent operators load and run under every opset that defines them (layout only
    from 14 on)."""
    rng = np.random.default_rng(opset)
    for op in ("LSTM", "GRU", "RNN"):
        layout = 1 if opset >= 14 else 0
        got, want, what = run_case(
            op, {}, {}, "bidirectional", layout, [T, 3, 1], True, rng, opset=opset
        )
        for name, g, w in zip(("Y", "Y_h", "Y_c"), got, want):
            assert_close(g, w, atol=ATOL, what=f"{name} of {what} opset {opset}")


def test_float64_and_float16_models():
    """X of type double (or float16) gives outputs of that type; compute stays float32."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    arrays = random_case("GRU", rng, T=T, B=B, I=I, H=H, initial=True)
    for elem, dtype, atol in (
        (TensorProto.DOUBLE, np.float64, ATOL),
        (TensorProto.FLOAT16, np.float16, 2e-3),
    ):
        inits = [numpy_helper.from_array(arrays[k].astype(dtype), k) for k in ("W", "R", "B")]
        node = helper.make_node("GRU", ["X", "W", "R", "B", "", "h0"], ["Y", "Y_h"], hidden_size=H)
        graph = helper.make_graph(
            [node],
            "g",
            [
                helper.make_tensor_value_info("X", elem, [None, None, I]),
                helper.make_tensor_value_info("h0", elem, [1, None, H]),
            ],
            [helper.make_tensor_value_info(n, elem, None) for n in ("Y", "Y_h")],
            inits,
        )
        model = from_onnx_model(
            helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
        )
        x = arrays["X"].astype(dtype)
        h0 = arrays["initial_h"].astype(dtype)
        y, y_h = model.run(None, {"X": x, "h0": h0})
        assert y.dtype == dtype and y_h.dtype == dtype
        want = reference(
            "GRU",
            {k: np.asarray(v, dtype).astype(np.float64) for k, v in arrays.items()},
            {},
        )
        assert_close(y, want[0], atol=atol, what=f"Y ({np.dtype(dtype).name})")
        assert_close(y_h, want[1], atol=atol, what=f"Y_h ({np.dtype(dtype).name})")


def test_bfloat16_model_of_opset_22():
    """Opset 22 allows bfloat16: weights are widened to float32 exactly, X is fed as float32
    (numpy has no bfloat16) and outputs come back as float32."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(22)
    arrays = random_case("LSTM", rng, T=T, B=B, I=I, H=H, peephole=True)
    inits, rounded = [], {}
    for k in ("W", "R", "B", "P"):
        bits = ((arrays[k].view(np.uint32) + 0x8000) >> 16).astype(np.uint16)  # round to bf16
        rounded[k] = (bits.astype(np.uint32) << 16).view(np.float32)
        inits.append(
            helper.make_tensor(k, TensorProto.BFLOAT16, arrays[k].shape, bits.tobytes(), raw=True)
        )
    node = helper.make_node(
        "LSTM", ["X", "W", "R", "B", "", "", "", "P"], ["Y", "Y_h", "Y_c"], hidden_size=H
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.BFLOAT16, [None, None, I])],
        [helper.make_tensor_value_info(n, TensorProto.BFLOAT16, None) for n in ("Y", "Y_h", "Y_c")],
        inits,
    )
    model = from_onnx_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)]))
    assert model.get_inputs()[0].type == "tensor(bfloat16)"
    got = model.run(None, {"X": arrays["X"]})
    want = reference("LSTM", {**arrays, **rounded}, {})
    for name, g, w in zip(("Y", "Y_h", "Y_c"), got, want):
        assert g.dtype == np.float32
        assert_close(g, w, atol=ATOL, what=f"bfloat16 {name}")


@pytest.mark.parametrize(
    ("op", "variant"),
    [
        k
        for k in VARIANTS
        if k[1] in ("default", "everything", "linear_before_reset", "activations")
    ],
)
def test_wide_layers(op, variant):
    """Sizes where the kernels use full vectors and a tail (H = 37, I = 20), both layouts."""
    attrs, case_kw = VARIANTS[(op, variant)]
    rng = np.random.default_rng(zlib.crc32(f"wide-{op}-{variant}".encode()))
    sizes = (9, 5, 20, 37)
    for direction, layout in itertools.product(DIRECTIONS, (0, 1)):
        got, want, what = run_case(
            op, attrs, case_kw, direction, layout, [9, 0, 4, 1, 7], True, rng, sizes=sizes
        )
        for name, g, w in zip(("Y", "Y_h", "Y_c"), got, want):
            assert_close(g, w, atol=ATOL, what=f"{name} of {what} (wide)")
