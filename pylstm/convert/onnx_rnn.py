"""ONNX LSTM, GRU and RNN nodes -> canonical :class:`pylstm.Layer` s (the runtime runs each on an
engine: :class:`pylstm.runtime.graph_recurrent.OnnxRecurrent`).

Conversion, once per node at load time (W, R, B and P must be constants):

* ``W [D, G*H, I]``, ``R [D, G*H, H]``: gate blocks in ONNX order -- LSTM ``i, o, f, c``, GRU
  ``z, r, h``, RNN one gate -- reordered to the canonical ``i, f, g, o`` / ``r, z, n``;
* ``B [D, 2*G*H]`` = ``Wb || Rb``, each reordered the same way; absent: no bias;
* ``P [D, 3*H]``: peepholes in the order ``i, o, f`` -> canonical ``i, f, o`` (by gate_order);
* direction ``forward`` / ``reverse`` / ``bidirectional`` -> one or two Directions;
* ``activations`` (3 per direction for LSTM: f, g, h; 2 for GRU: f, g; 1 for RNN), names
  case-insensitive; ``activation_alpha`` / ``activation_beta`` are consumed in order by the
  functions that take them (Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu
  take alpha; Affine, ScaledTanh, HardSigmoid take beta), as ONNX Runtime does; when a list runs
  out: LeakyRelu 0.01, HardSigmoid 0.2/0.5, Elu 1.0, anything else 0 (ONNX Runtime's defaults);
* ``clip``, ``input_forget``, ``linear_before_reset`` -> the Layer options of those names;
* ``com.microsoft`` ``DynamicQuantizeLSTM`` (what ``onnxruntime.quantization.quantize_dynamic``
  writes for an LSTM): lowered by :func:`lower_quantized_lstm` to an LSTM node whose int8/uint8
  ``W [D, I, 4H]`` and ``R [D, H, 4H]`` (transposed), per-tensor (``[D]``) or per-channel
  (``[D, 4H]``) scales and zero points (inputs 8-11) are dequantized here, once, to float32:
  ``w = scale * (q - zero_point)``. The layer then runs on the engine like any LSTM, at the
  precision asked for (``"int8"`` re-quantizes per gate row; ONNX Runtime instead quantizes
  X and h to uint8 at each step, so the two agree to that rounding, not bit for bit).

At run time (``OnnxRecurrent.__call__``) ``layout`` picks the axes of X, the states and the
outputs, ``sequence_lens`` becomes the engine's step mask (padded steps output 0 and carry the
state; the reverse direction starts at each sequence's last valid step), and a sequence of
length 0 gives ``Y_h = Y_c = 0`` as in ONNX Runtime.
"""

from __future__ import annotations

import numpy as np

from ..errors import FormatError, UnsupportedError
from .builder import Direction, Layer
from .canonical import Activation

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
GATE_ORDER = {"LSTM": "iofc", "GRU": "zrh", "RNN": "h"}
CELL = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn"}
DEFAULT_ACTIVATIONS = {
    "LSTM": ("Sigmoid", "Tanh", "Tanh"),
    "GRU": ("Sigmoid", "Tanh"),
    "RNN": ("Tanh",),
}
# ONNX's eleven activation functions: lower-case name -> (takes alpha, takes beta)
ONNX_ACTIVATIONS = {
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
INPUTS = {
    "LSTM": ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"),
    "GRU": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
    "RNN": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
}
_KNOWN_ATTRS = {
    "activation_alpha",
    "activation_beta",
    "activations",
    "clip",
    "direction",
    "hidden_size",
    "layout",
    "output_sequence",  # opset 1 only; outputs are produced when asked for either way
}
#: The attribute marking an LSTM node lowered from ``com.microsoft`` ``DynamicQuantizeLSTM``.
QUANTIZED = "pylstm.quantized_from"
_EXTRA_ATTRS = {"LSTM": {"input_forget", QUANTIZED}, "GRU": {"linear_before_reset"}, "RNN": set()}
MS_DOMAIN = "com.microsoft"
# DynamicQuantizeLSTM's inputs after LSTM's eight: (scale, zero point) of W, then of R.
_QUANT_INPUTS = {1: (8, 9), 2: (10, 11)}


def lower_quantized_lstm(node):
    """A ``com.microsoft`` ``DynamicQuantizeLSTM`` node as the LSTM node it quantizes: same
    name, inputs (the four quantization inputs kept at 8-11) and attributes, marked
    :data:`QUANTIZED` so that :func:`build_layer` dequantizes W and R; other nodes unchanged."""
    if node.op_type != "DynamicQuantizeLSTM" or node.domain != MS_DOMAIN:
        return node
    attrs = dict(node.attrs)
    attrs[QUANTIZED] = f"{MS_DOMAIN}.DynamicQuantizeLSTM"
    return type(node)(
        op_type="LSTM",
        name=node.name,
        inputs=list(node.inputs),
        outputs=list(node.outputs),
        attrs=attrs,
        domain="",
        opset=14,
    )


def _dequantized(node, constants: dict, index: int, what: str, source: str, D: int):
    """Input ``index`` (W or R) of a lowered ``DynamicQuantizeLSTM``: int8/uint8 ``[D, K, G*H]``
    with its scale and zero point (``[D]`` or ``[D, G*H]``), as float32 ``[D, G*H, K]``."""
    q = _const(node, constants, index, what, source, kinds="iu")
    where = f"{source}: {node.describe()} (DynamicQuantizeLSTM)"
    if q is None:
        return None
    if q.dtype not in (np.int8, np.uint8) or q.ndim != 3 or q.shape[0] != D:
        raise FormatError(
            f"{where}: quantized {what} must be int8 or uint8 of shape [{D}, K, 4*hidden_size], "
            f"got {q.dtype} {list(q.shape)}"
        )
    s_idx, z_idx = _QUANT_INPUTS[index]
    scale = _const(node, constants, s_idx, f"{what}_scale", source)
    zero = _const(node, constants, z_idx, f"{what}_zero_point", source, kinds="iu")
    if scale is None:
        raise FormatError(f"{where}: the input {what}_scale is required")
    zero = np.zeros_like(scale) if zero is None else zero.astype(np.float32)
    per_channel = (D, q.shape[2])
    for name, arr in ((f"{what}_scale", scale), (f"{what}_zero_point", zero)):
        if arr.shape not in ((D,), per_channel):
            raise FormatError(
                f"{where}: {name} must have shape [{D}] (per tensor) or {list(per_channel)} "
                f"(per channel), got {list(arr.shape)}"
            )
    scale = scale.reshape(D, 1, -1)
    zero = zero.reshape(D, 1, -1)
    w = (q.astype(np.float32) - zero) * scale  # [D, K, G*H]
    return np.ascontiguousarray(w.transpose(0, 2, 1))


def resolve_activations(op: str, names, alphas, betas, num_directions: int, what: str) -> list:
    """Per direction, the tuple of :class:`Activation` of an ONNX recurrent node.

    Raises
    ------
    FormatError
        Wrong number of names.
    UnsupportedError
        A name outside ONNX's eleven functions.
    """
    per = len(DEFAULT_ACTIVATIONS[op])
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in (names or [])]
    if not names:
        names = list(DEFAULT_ACTIVATIONS[op]) * num_directions
    if op == "RNN" and num_directions == 1 and len(names) == 2:
        names = names[:1]  # opset-1 RNN's default list was [Tanh, Tanh]; ONNX Runtime takes one
    if len(names) != per * num_directions:
        raise FormatError(
            f"{what}: 'activations' must list {per} function(s) per direction "
            f"({per * num_directions} for {num_directions} direction(s)), got {len(names)}: {names}"
        )
    alphas = [float(a) for a in (alphas or [])]
    betas = [float(b) for b in (betas or [])]
    acts = []
    for name in names:
        key = name.lower()
        if key not in ONNX_ACTIVATIONS:
            raise UnsupportedError(
                f"{what}: activation {name!r} is not one of the ONNX functions "
                "(Relu, Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, "
                "HardSigmoid, Elu, Softsign, Softplus)"
            )
        takes_alpha, takes_beta = ONNX_ACTIVATIONS[key]
        default_alpha, default_beta = ALPHA_BETA_DEFAULTS.get(key, (0.0, 0.0))
        alpha = (alphas.pop(0) if alphas else default_alpha) if takes_alpha else 0.0
        beta = (betas.pop(0) if betas else default_beta) if takes_beta else 0.0
        acts.append(Activation(key, alpha, beta))
    return [tuple(acts[d * per : (d + 1) * per]) for d in range(num_directions)]


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _const(node, constants: dict, index: int, what: str, source: str, kinds: str = "f"):
    """Input ``index`` of ``node`` as a float32 array (or, with ``kinds="iu"``, the integer
    array as it is), if given; it must be a constant."""
    names = node.inputs
    if index >= len(names) or not names[index]:
        return None
    name = names[index]
    if name not in constants:
        raise UnsupportedError(
            f"{source}: {node.describe()} takes its {what} from {name!r}, which is computed at "
            "run time; pylstm converts and packs recurrent weights once, at load time, so W, R, "
            "B and P must be initializers or constant subgraphs"
        )
    arr = np.asarray(constants[name])
    if arr.dtype.kind not in kinds:
        raise FormatError(
            f"{source}: {node.describe()}: {what} {name!r} has element type {arr.dtype}, "
            f"expected {'floats' if kinds == 'f' else 'integers'}"
        )
    return arr if kinds != "f" else arr.astype(np.float32)


def build_layer(node, constants: dict, source: str = "model"):
    """The canonical Layer of an ONNX LSTM/GRU/RNN node, and its ``layout``.

    Raises
    ------
    FormatError
        Shapes that do not agree with each other or with ``hidden_size``, invalid attributes.
    UnsupportedError
        Weights computed at run time, unknown attributes or activations.
    """
    op = node.op_type
    what = f"{source}: {node.describe()}"
    unknown = sorted(set(node.attrs) - _KNOWN_ATTRS - _EXTRA_ATTRS[op])
    if unknown:
        raise UnsupportedError(f"{what}: attribute(s) {', '.join(unknown)} are not supported")
    G = GATES[op]
    direction = _text(node.attrs.get("direction", "forward"))
    if direction not in ("forward", "reverse", "bidirectional"):
        raise FormatError(
            f"{what}: direction must be forward, reverse or bidirectional, got {direction!r}"
        )
    D = 2 if direction == "bidirectional" else 1
    layout = int(node.attrs.get("layout", 0))
    if layout not in (0, 1):
        raise FormatError(f"{what}: layout must be 0 or 1, got {layout}")
    if node.attrs.get(QUANTIZED):
        W = _dequantized(node, constants, 1, "W", source, D)
        R = _dequantized(node, constants, 2, "R", source, D)
    else:
        W = _const(node, constants, 1, "W", source)
        R = _const(node, constants, 2, "R", source)
    if W is None or R is None:
        raise FormatError(f"{what}: the inputs W and R are required")
    B = _const(node, constants, 3, "B", source)
    P = _const(node, constants, 7, "P", source) if op == "LSTM" else None
    if R.ndim != 3 or R.shape[0] != D or R.shape[1] % G or R.shape[1] != G * R.shape[2]:
        raise FormatError(
            f"{what}: R must have shape [num_directions={D}, {G}*hidden_size, hidden_size], "
            f"got {list(R.shape)}"
        )
    H = R.shape[2]
    if "hidden_size" in node.attrs and int(node.attrs["hidden_size"]) != H:
        raise FormatError(
            f"{what}: hidden_size is {node.attrs['hidden_size']} but R has shape {list(R.shape)}"
        )
    if W.ndim != 3 or W.shape[:2] != (D, G * H):
        raise FormatError(
            f"{what}: W must have shape [{D}, {G * H}, input_size], got {list(W.shape)}"
        )
    if B is not None and B.shape != (D, 2 * G * H):
        raise FormatError(f"{what}: B must have shape [{D}, {2 * G * H}], got {list(B.shape)}")
    if P is not None and P.shape != (D, 3 * H):
        raise FormatError(f"{what}: P must have shape [{D}, {3 * H}], got {list(P.shape)}")
    acts = resolve_activations(
        op,
        node.attrs.get("activations"),
        node.attrs.get("activation_alpha"),
        node.attrs.get("activation_beta"),
        D,
        what,
    )
    clip = node.attrs.get("clip")
    directions = []
    for d in range(D):
        # ONNX P is i, o, f: Layer(gate_order="iofc") reorders it along with the gates
        peephole = None if P is None else P[d]
        directions.append(
            Direction(
                w=W[d],
                r=R[d],
                bias_w=None if B is None else B[d, : G * H],
                bias_r=None if B is None else B[d, G * H :],
                peephole=peephole,
                activations=acts[d],
                reverse=direction == "reverse" or d == 1,
            )
        )
    try:
        layer = Layer(
            CELL[op],
            directions,
            clip=None if clip is None else float(clip),
            input_forget=bool(node.attrs.get("input_forget", 0)),
            linear_before_reset=bool(node.attrs.get("linear_before_reset", 0)),
            gate_order=GATE_ORDER[op],
        )
    except (ValueError, TypeError) as exc:
        raise FormatError(f"{what}: {exc}") from None
    return layer, layout
