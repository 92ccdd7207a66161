"""A float64 reference of the ONNX LSTM, GRU and RNN operators, written from the operator
specification (onnx/docs/Operators.md, opsets 7 to 22), independently of pylstm (it does not
import it) and of ONNX Runtime.

Every equation below is the specification's, one step of one sequence at a time:

* LSTM (gates ``iofc`` in W, R, B; peepholes ``P`` in the order ``i, o, f``)::

      it = f(Xt*Wi^T + Ht-1*Ri^T + Pi (.) Ct-1 + Wbi + Rbi)
      ft = f(Xt*Wf^T + Ht-1*Rf^T + Pf (.) Ct-1 + Wbf + Rbf)      (input_forget=1: ft = 1 - it)
      ct = g(Xt*Wc^T + Ht-1*Rc^T + Wbc + Rbc)
      Ct = ft (.) Ct-1 + it (.) ct
      ot = f(Xt*Wo^T + Ht-1*Ro^T + Po (.) Ct + Wbo + Rbo)
      Ht = ot (.) h(Ct)

* GRU (gates ``zrh``)::

      zt = f(Xt*Wz^T + Ht-1*Rz^T + Wbz + Rbz)
      rt = f(Xt*Wr^T + Ht-1*Rr^T + Wbr + Rbr)
      ht = g(Xt*Wh^T + (rt (.) Ht-1)*Rh^T + Rbh + Wbh)          linear_before_reset = 0
      ht = g(Xt*Wh^T + (rt (.) (Ht-1*Rh^T + Rbh)) + Wbh)        linear_before_reset != 0
      Ht = (1 - zt) (.) ht + zt (.) Ht-1

* RNN: ``Ht = f(Xt*Wi^T + Ht-1*Ri^T + Wbi + Rbi)``

``clip`` bounds the input of every gate activation to ``[-clip, clip]``. Whether it also bounds
``Ct`` where it enters ``h`` is not clear from the text ("applied to the input of activations");
ONNX Runtime does not clip it (its LSTM kernels clip the gate pre-activations only; checked
against ONNX Runtime 1.32 in test_onnx_oracle.py), and neither does this oracle by default;
``clip_cell=True`` selects the other reading (``Ht = ot (.) h(clip(Ct))``). The state ``Ct`` itself
is never clipped. ``sequence_lens[b]`` limits sequence
``b`` to its first ``len`` steps: the forward direction runs over steps ``0..len-1``, the reverse
direction over ``len-1..0``; ``Y`` is 0 at the steps past ``len``; ``Y_h``/``Y_c`` are the states
after the last step processed. The specification does not say what a sequence of length 0
gives; this oracle follows ONNX Runtime's LSTM and GRU: ``Y_h = Y_c = 0``.

Activation lists: ``activations`` holds 3 (LSTM: f, g, h), 2 (GRU: f, g) or 1 (RNN: f) names per
direction, forward first. ``activation_alpha`` and ``activation_beta`` "are consumed in the order
of activation functions": each function that takes an alpha (Affine, LeakyRelu,
ThresholdedRelu, ScaledTanh, HardSigmoid, Elu) takes the next value of ``activation_alpha``, and
each that takes a beta (Affine, ScaledTanh, HardSigmoid) the next value of ``activation_beta``.
When a list runs out, the defaults are those of :data:`ALPHA_BETA_DEFAULTS` (LeakyRelu 0.01,
HardSigmoid 0.2/0.5 and Elu 1.0 as the ONNX operators of those names; ONNX Runtime uses 0 for the
others, where the specification's "same as the corresponding ONNX operators" would give
ThresholdedRelu 1.0 and Affine 1.0/0.0 -- pylstm follows ONNX Runtime, and so does this oracle).

The model-building helpers at the end (``make_model``) need the ``onnx`` package; the
reference itself needs only numpy.
"""

from __future__ import annotations

import numpy as np

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
DEFAULT_ACTIVATIONS = {
    "LSTM": ("Sigmoid", "Tanh", "Tanh"),
    "GRU": ("Sigmoid", "Tanh"),
    "RNN": ("Tanh",),
}
# The specification's eleven activation functions, spelled as in its text.
ACTIVATION_NAMES = [
    "Relu",
    "Tanh",
    "Sigmoid",
    "Affine",
    "LeakyRelu",
    "ThresholdedRelu",
    "ScaledTanh",
    "HardSigmoid",
    "Elu",
    "Softsign",
    "Softplus",
]
# name -> (takes alpha, takes beta)
TAKES = {
    "relu": (False, False),
    "tanh": (False, False),
    "sigmoid": (False, False),
    "affine": (True, True),
    "leakyrelu": (True, False),
    "thresholdedrelu": (True, False),
    "scaledtanh": (True, True),
    "hardsigmoid": (True, True),
    "elu": (True, False),
    "softsign": (False, False),
    "softplus": (False, False),
}
ALPHA_BETA_DEFAULTS = {"leakyrelu": (0.01, 0.0), "hardsigmoid": (0.2, 0.5), "elu": (1.0, 0.0)}


def activation(name: str, alpha: float, beta: float):
    """The function ``name`` of the specification's list, in float64."""
    n = name.lower()

    def sigmoid(x):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))

    table = {
        "relu": lambda x: np.maximum(0.0, x),
        "tanh": np.tanh,
        "sigmoid": sigmoid,
        "affine": lambda x: alpha * x + beta,
        "leakyrelu": lambda x: np.where(x >= 0, x, alpha * x),
        "thresholdedrelu": lambda x: np.where(x >= alpha, x, 0.0),
        "scaledtanh": lambda x: alpha * np.tanh(beta * x),
        "hardsigmoid": lambda x: np.minimum(np.maximum(alpha * x + beta, 0.0), 1.0),
        "elu": lambda x: np.where(x >= 0, x, alpha * np.expm1(np.minimum(x, 0.0))),
        "softsign": lambda x: x / (1 + np.abs(x)),
        "softplus": lambda x: np.logaddexp(0.0, x),
    }
    if n not in table:
        raise ValueError(f"unknown activation {name!r}")
    return table[n]


def resolve_activations(op: str, num_directions: int, names=None, alphas=None, betas=None):
    """Per direction, the list of ``(name, alpha, beta)`` of ``op``'s functions."""
    per = len(DEFAULT_ACTIVATIONS[op])
    if not names:
        names = list(DEFAULT_ACTIVATIONS[op]) * num_directions
    if len(names) != per * num_directions:
        raise ValueError(f"{op} needs {per * num_directions} activations, got {len(names)}")
    alphas = list(alphas or [])
    betas = list(betas or [])
    resolved = []
    for name in names:
        n = name.lower()
        takes_alpha, takes_beta = TAKES[n]
        da, db = ALPHA_BETA_DEFAULTS.get(n, (0.0, 0.0))
        a = (alphas.pop(0) if alphas else da) if takes_alpha else 0.0
        b = (betas.pop(0) if betas else db) if takes_beta else 0.0
        resolved.append((n, float(a), float(b)))
    return [resolved[d * per : (d + 1) * per] for d in range(num_directions)]


def _clipper(clip):
    if clip is None:
        return lambda x: x
    return lambda x: np.clip(x, -clip, clip)


def _split(a, n):
    return np.split(np.asarray(a, np.float64), n, axis=0)


def _run(op, X, W, R, B, sequence_lens, initial_h, initial_c, P, attrs):
    attrs = dict(attrs)
    if isinstance(attrs.get("direction"), bytes):
        attrs["direction"] = attrs["direction"].decode()
    direction = attrs.get("direction", "forward")
    layout = int(attrs.get("layout", 0))
    D = 2 if direction == "bidirectional" else 1
    G = GATES[op]
    X = np.asarray(X, np.float64)
    if layout == 1:  # [B, T, I] -> [T, B, I]; states [B, D, H] -> [D, B, H]
        X = X.transpose(1, 0, 2)
        initial_h = None if initial_h is None else np.asarray(initial_h).transpose(1, 0, 2)
        initial_c = None if initial_c is None else np.asarray(initial_c).transpose(1, 0, 2)
    T, Bsz, _ = X.shape
    H = np.asarray(R).shape[-1]
    if "hidden_size" in attrs:
        assert attrs["hidden_size"] == H
    lens = np.full(Bsz, T) if sequence_lens is None else np.asarray(sequence_lens, np.int64)
    h0 = np.zeros((D, Bsz, H)) if initial_h is None else np.asarray(initial_h, np.float64)
    c0 = np.zeros((D, Bsz, H)) if initial_c is None else np.asarray(initial_c, np.float64)
    acts = resolve_activations(
        op, D, attrs.get("activations"), attrs.get("activation_alpha"), attrs.get("activation_beta")
    )
    clip = _clipper(attrs.get("clip"))
    Y = np.zeros((T, D, Bsz, H))
    Y_h = np.zeros((D, Bsz, H))
    Y_c = np.zeros((D, Bsz, H))
    for d in range(D):
        fns = [activation(*a) for a in acts[d]]
        Wd = _split(W[d], G)
        Rd = _split(R[d], G)
        if B is None:
            Wb = [np.zeros(H)] * G
            Rb = [np.zeros(H)] * G
        else:
            Wb = _split(B[d][: G * H], G)
            Rb = _split(B[d][G * H :], G)
        reverse = direction == "reverse" or d == 1
        for b in range(Bsz):
            L = int(lens[b])
            steps = range(L - 1, -1, -1) if reverse else range(L)
            h = h0[d, b].copy()
            c = c0[d, b].copy()
            for t in steps:
                x = X[t, b]
                if op == "LSTM":
                    f, g, hf = fns
                    Wi, Wo, Wf, Wc = Wd
                    Ri, Ro, Rf, Rc = Rd
                    Pi, Po, Pf = _split(P[d], 3) if P is not None else [np.zeros(H)] * 3
                    i_ = f(clip(Wi @ x + Ri @ h + Pi * c + Wb[0] + Rb[0]))
                    if attrs.get("input_forget", 0):
                        f_ = 1 - i_
                    else:
                        f_ = f(clip(Wf @ x + Rf @ h + Pf * c + Wb[2] + Rb[2]))
                    ct = g(clip(Wc @ x + Rc @ h + Wb[3] + Rb[3]))
                    C = f_ * c + i_ * ct
                    o_ = f(clip(Wo @ x + Ro @ h + Po * C + Wb[1] + Rb[1]))
                    h, c = o_ * hf(clip(C) if attrs.get("clip_cell") else C), C
                elif op == "GRU":
                    f, g = fns
                    Wz, Wr, Wh = Wd
                    Rz, Rr, Rh = Rd
                    z = f(clip(Wz @ x + Rz @ h + Wb[0] + Rb[0]))
                    r = f(clip(Wr @ x + Rr @ h + Wb[1] + Rb[1]))
                    if attrs.get("linear_before_reset", 0):
                        ht = g(clip(Wh @ x + r * (Rh @ h + Rb[2]) + Wb[2]))
                    else:
                        ht = g(clip(Wh @ x + Rh @ (r * h) + Rb[2] + Wb[2]))
                    h = (1 - z) * ht + z * h
                else:
                    (f,) = fns
                    h = f(clip(Wd[0] @ x + Rd[0] @ h + Wb[0] + Rb[0]))
                Y[t, d, b] = h
            if L > 0:
                Y_h[d, b] = h
                Y_c[d, b] = c
    if layout == 1:
        Y = Y.transpose(2, 0, 1, 3)
        Y_h = Y_h.transpose(1, 0, 2)
        Y_c = Y_c.transpose(1, 0, 2)
    return (Y, Y_h, Y_c) if op == "LSTM" else (Y, Y_h)


def lstm(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, **attrs):
    """ONNX LSTM in float64. Returns ``(Y, Y_h, Y_c)``; attributes as keyword arguments, plus
    ``clip_cell=True`` to clip ``Ct`` before ``h`` as well (see the module docstring)."""
    return _run("LSTM", X, W, R, B, sequence_lens, initial_h, initial_c, P, attrs)


def gru(X, W, R, B=None, sequence_lens=None, initial_h=None, **attrs):
    """ONNX GRU in float64. Returns ``(Y, Y_h)``."""
    return _run("GRU", X, W, R, B, sequence_lens, initial_h, None, None, attrs)


def rnn(X, W, R, B=None, sequence_lens=None, initial_h=None, **attrs):
    """ONNX RNN in float64. Returns ``(Y, Y_h)``."""
    return _run("RNN", X, W, R, B, sequence_lens, initial_h, None, None, attrs)


REFERENCE = {"LSTM": lstm, "GRU": gru, "RNN": rnn}
INPUT_NAMES = {
    "LSTM": ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"),
    "GRU": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
    "RNN": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
}
OUTPUT_NAMES = {"LSTM": ("Y", "Y_h", "Y_c"), "GRU": ("Y", "Y_h"), "RNN": ("Y", "Y_h")}


# -- building single-operator models (needs onnx) ------------------------------------------------
def make_model(op, arrays, attrs, *, runtime=("X",), opset=14, dynamic=True, ir_version=None):
    """A single-operator ONNX model of ``op`` with ``arrays`` (name -> array; the names of
    :data:`INPUT_NAMES`, omitted ones left out) and ``attrs``.

    Names in ``runtime`` become graph inputs (with symbolic dims when ``dynamic``), the others
    initializers. All of ``op``'s outputs are graph outputs. ``hidden_size`` is added from R's
    shape unless ``attrs`` has it (ONNX Runtime requires it).
    """
    from onnx import TensorProto, helper, numpy_helper

    inputs, inits, node_inputs = [], [], []
    for name in INPUT_NAMES[op]:
        if name not in arrays or arrays[name] is None:
            node_inputs.append("")
            continue
        node_inputs.append(name)
        a = np.asarray(arrays[name])
        if name in runtime:
            elem = TensorProto.INT32 if name == "sequence_lens" else TensorProto.FLOAT
            shape = [f"{name}_d{i}" for i in range(a.ndim)] if dynamic else list(a.shape)
            inputs.append(helper.make_tensor_value_info(name, elem, shape))
        else:
            dtype = np.int32 if name == "sequence_lens" else np.float32
            inits.append(numpy_helper.from_array(a.astype(dtype), name))
    while node_inputs and node_inputs[-1] == "":
        node_inputs.pop()
    attrs = dict(attrs)
    attrs.setdefault("hidden_size", int(np.asarray(arrays["R"]).shape[-1]))
    node = helper.make_node(op, node_inputs, list(OUTPUT_NAMES[op]), name=f"{op.lower()}0", **attrs)
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in OUTPUT_NAMES[op]]
    graph = helper.make_graph([node], f"single_{op.lower()}", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if ir_version is not None:
        model.ir_version = ir_version
    return model


def random_case(
    op,
    rng,
    *,
    T=5,
    B=3,
    I=4,
    H=5,
    direction="forward",
    layout=0,
    lengths=None,
    initial=False,
    bias=True,
    peephole=False,
    scale=3.0,
):
    """Random arrays for ``op`` (float32 values), weights scaled so that gates saturate.

    ``lengths``: None (all T) or a list of B lengths; ``initial``: random initial states.
    Returns a dict name -> array in the layout given.
    """
    D = 2 if direction == "bidirectional" else 1
    G = GATES[op]
    k = scale / np.sqrt(H)

    def u(*shape, s=k):
        return rng.uniform(-s, s, size=shape).astype(np.float32)

    x_shape = (T, B, I) if layout == 0 else (B, T, I)
    s_shape = (D, B, H) if layout == 0 else (B, D, H)
    arrays = {
        "X": rng.normal(size=x_shape).astype(np.float32),
        "W": u(D, G * H, I),
        "R": u(D, G * H, H),
    }
    if bias:
        arrays["B"] = u(D, 2 * G * H)
    if lengths is not None:
        arrays["sequence_lens"] = np.asarray(lengths, np.int32)
    if initial:
        arrays["initial_h"] = rng.uniform(-1, 1, size=s_shape).astype(np.float32)
        if op == "LSTM":
            arrays["initial_c"] = rng.uniform(-2, 2, size=s_shape).astype(np.float32)
    if peephole:
        arrays["P"] = u(D, 3 * H)
    return arrays


def reference(op, arrays, attrs):
    """The oracle's outputs for the arrays and attributes of :func:`random_case`/:func:`make_model`."""
    names = INPUT_NAMES[op]
    args = [arrays.get(n) for n in names]
    return REFERENCE[op](*args, **attrs)


def assert_close(actual, expected, *, atol: float, what: str = ""):
    """``|actual - expected| <= atol * max(1, max |expected| over the row)`` elementwise.

    The error of a float32 result is set by the size of the terms summed into it, which are of
    the size of the largest values of its row (last axis): for rows bounded by 1 (sigmoid/tanh
    outputs) the bound is ``atol`` itself, for unbounded ones (relu, affine, softplus, cell
    states) it grows with the row. The message names the worst element.
    """
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert np.all(np.isfinite(expected)), f"{what}: the reference is not finite"
    if actual.size == 0:
        return
    err = np.abs(actual - expected)
    row = np.abs(expected).max(axis=-1, keepdims=True)
    bound = np.broadcast_to(atol * np.maximum(1.0, row), err.shape)
    bad = ~(err <= bound)
    if bad.any():
        where = np.unravel_index(np.argmax(np.where(bad, err / bound, 0)), err.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {err.size} elements off; worst at {where}: got "
            f"{actual[where]!r}, expected {expected[where]!r} (|diff| {err[where]:.3g} > "
            f"bound {bound[where]:.3g})"
        )
