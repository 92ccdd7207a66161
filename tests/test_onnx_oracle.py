"""The float64 ONNX oracle (tests/onnx_oracle.py) against ONNX Runtime, wherever ONNX Runtime
runs the case: every operator, direction, sequence_lens pattern (including length 0),
initial state and variant (peepholes, input_forget, clip, each of the eleven activation
functions with and without alpha/beta, linear_before_reset, missing bias).

layout=1 is refused by ONNX Runtime ("Batchwise recurrent operations (layout == 1) are not
supported"); there the oracle is checked for consistency with layout 0 instead, and the
refusal itself is asserted so that a future ONNX Runtime that accepts it gets compared too.

Tolerance: 3e-5 absolute (ONNX Runtime computes in float32 with approximated sigmoid/tanh),
scaled by the row's largest magnitude for unbounded outputs (see onnx_oracle.assert_close).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from onnx_oracle import (
    ACTIVATION_NAMES,
    INPUT_NAMES,
    assert_close,
    make_model,
    random_case,
    reference,
)

ATOL = 3e-5
T, B, I, H = 5, 3, 4, 5
RUNTIME = ("X", "sequence_lens", "initial_h", "initial_c")


def ort_run(model, feeds):
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, feeds)


def check(op, attrs, rng, **case_kw):
    arrays = random_case(op, rng, T=T, B=B, I=I, H=H, **case_kw)
    model = make_model(op, arrays, attrs, runtime=RUNTIME)
    got = ort_run(model, {k: arrays[k] for k in RUNTIME if k in arrays})
    want = reference(op, arrays, attrs)
    for name, g, w in zip(("Y", "Y_h", "Y_c"), got, want):
        assert_close(g, w, atol=ATOL, what=f"ORT {name} of {op} {attrs} {case_kw}")


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_directions_lengths_initial_states(op):
    rng = np.random.default_rng(1)
    for direction, lengths, initial, bias in itertools.product(
        ("forward", "reverse", "bidirectional"),
        (None, [T, 0, 2], [3, 3, 3], [1, T, 4]),
        (False, True),
        (True, False),
    ):
        check(
            op,
            {"direction": direction},
            rng,
            direction=direction,
            lengths=lengths,
            initial=initial,
            bias=bias,
            peephole=op == "LSTM",
        )


@pytest.mark.parametrize(
    ("op", "attrs", "case_kw"),
    [
        ("LSTM", {"input_forget": 1}, {"peephole": True}),
        ("LSTM", {"clip": 0.5}, {"peephole": True}),
        ("LSTM", {"clip": 0.5, "input_forget": 1}, {}),
        ("GRU", {"linear_before_reset": 1}, {}),
        ("GRU", {"linear_before_reset": 0, "clip": 0.4}, {}),
        ("GRU", {"linear_before_reset": 1, "clip": 0.4}, {}),
        ("RNN", {"clip": 0.3}, {}),
    ],
)
def test_variants(op, attrs, case_kw):
    rng = np.random.default_rng(2)
    for direction, lengths in itertools.product(
        ("forward", "reverse", "bidirectional"), (None, [T, 0, 2])
    ):
        check(
            op,
            dict(attrs, direction=direction),
            rng,
            direction=direction,
            lengths=lengths,
            initial=True,
            **case_kw,
        )


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_every_activation_and_alpha_beta_rules(op):
    """Each function in every slot; alpha/beta given, partly given, or left to the defaults."""
    rng = np.random.default_rng(3)
    per = {"LSTM": 3, "GRU": 2, "RNN": 1}[op]
    for name, params in itertools.product(ACTIVATION_NAMES, ("none", "some", "all")):
        attrs = {"activations": [name] * per + ["Tanh"] * per, "direction": "bidirectional"}
        if params != "none":
            attrs["activation_alpha"] = [0.7, 0.4, 0.9, 0.6, 0.8, 0.5][
                : 1 if params == "some" else 6
            ]
            attrs["activation_beta"] = [0.3, 0.6, 0.2, 0.5, 0.4, 0.1][
                : 1 if params == "some" else 6
            ]
        # ONNX Runtime's Softplus is log(1 + exp(x)), inf for x > 88 in float32: an LSTM whose
        # gates are softplus (unbounded) grows its cell past that, so keep those inputs small.
        scale = 0.3 if name == "Softplus" and op == "LSTM" else 1.0
        check(op, attrs, rng, direction="bidirectional", lengths=[T, 2, 0], scale=scale)


def test_alpha_beta_are_consumed_by_the_functions_that_take_them():
    """[Sigmoid, LeakyRelu, Affine] with alpha [a1, a2]: LeakyRelu takes a1, Affine a2 (not
    one value per slot), as ONNX Runtime does; mixed lists across both directions too."""
    rng = np.random.default_rng(4)
    check(
        "LSTM",
        {
            "activations": ["Sigmoid", "LeakyRelu", "Affine"],
            "activation_alpha": [0.3, 0.1],
            "activation_beta": [0.4],
        },
        rng,
    )
    check(
        "RNN",
        {
            "activations": ["Tanh", "LeakyRelu"],
            "direction": "bidirectional",
            "activation_alpha": [0.3, 0.2],
        },
        rng,
        direction="bidirectional",
    )
    check(
        "GRU",
        {
            "activations": ["HardSigmoid", "ScaledTanh", "Elu", "Affine"],
            "direction": "bidirectional",
            "activation_alpha": [0.2, 1.5, 0.8],
            "activation_beta": [0.5, 0.7],
        },
        rng,
        direction="bidirectional",
    )


def test_lstm_clip_is_not_applied_to_the_cell_before_h():
    """ONNX Runtime clips gate inputs only; the 'clip C_t before h' reading differs from it."""
    rng = np.random.default_rng(5)
    arrays = random_case("LSTM", rng, T=T, B=B, I=I, H=H, initial=True)
    attrs = {"clip": 0.3}
    got = ort_run(
        make_model("LSTM", arrays, attrs, runtime=RUNTIME),
        {"X": arrays["X"], "initial_h": arrays["initial_h"], "initial_c": arrays["initial_c"]},
    )
    assert_close(got[0], reference("LSTM", arrays, attrs)[0], atol=ATOL, what="gate inputs only")
    other = reference("LSTM", arrays, dict(attrs, clip_cell=True))[0]
    assert np.abs(got[0] - other).max() > 1e-2


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_layout_1(op):
    """ONNX Runtime refuses layout=1; the oracle's layout 1 is its layout 0 with axes moved."""
    rng = np.random.default_rng(6)
    arrays = random_case(
        op,
        rng,
        T=T,
        B=B,
        I=I,
        H=H,
        direction="bidirectional",
        layout=1,
        lengths=[T, 0, 2],
        initial=True,
        peephole=op == "LSTM",
    )
    attrs = {"direction": "bidirectional", "layout": 1}
    try:
        got = ort_run(
            make_model(op, arrays, attrs, runtime=RUNTIME),
            {k: arrays[k] for k in RUNTIME if k in arrays},
        )
    except Exception as exc:
        assert "layout" in str(exc)
        got = None
    want = reference(op, arrays, attrs)
    as_layout0 = dict(arrays)
    as_layout0["X"] = arrays["X"].transpose(1, 0, 2)
    for k in ("initial_h", "initial_c"):
        if k in arrays:
            as_layout0[k] = arrays[k].transpose(1, 0, 2)
    want0 = reference(op, as_layout0, {"direction": "bidirectional"})
    np.testing.assert_array_equal(want[0], want0[0].transpose(2, 0, 1, 3))
    for w, w0 in zip(want[1:], want0[1:]):
        np.testing.assert_array_equal(w, w0.transpose(1, 0, 2))
    if got is not None:  # a future ONNX Runtime that runs layout=1
        for name, g, w in zip(("Y", "Y_h", "Y_c"), got, want):
            assert_close(g, w, atol=ATOL, what=f"ORT {name} layout 1")


def test_reference_is_independent_of_pylstm():
    import ast

    import onnx_oracle

    with open(onnx_oracle.__file__) as fh:
        tree = ast.parse(fh.read())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m.split(".")[0] == "pylstm" for m in imported), imported
    assert set(INPUT_NAMES) == {"LSTM", "GRU", "RNN"}
