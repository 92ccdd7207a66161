"""ONNX operators in numpy, part 1: elementwise maths and activations, linear algebra,
normalisation and reductions (the heads and glue around recurrent layers). Each function takes
the node and its input arrays (None for an omitted optional input) and returns the outputs;
forms that changed between opsets are both handled (``node.opset``)."""

from __future__ import annotations

import numpy as np

from . import activations as act
from .common import OPS, _axes_input_or_attr, _axis, op


# -- elementwise --------------------------------------------------------------------------------
def _unary(fn):
    return lambda node, x: [np.asarray(fn(x), dtype=x.dtype) if x.dtype.kind == "f" else fn(x)]


for _name, _fn in {
    "Abs": np.abs,
    "Neg": np.negative,
    "Exp": np.exp,
    "Log": np.log,
    "Sqrt": np.sqrt,
    "Reciprocal": np.reciprocal,
    "Floor": np.floor,
    "Ceil": np.ceil,
    "Round": np.round,
    "Sign": np.sign,
    "Sin": np.sin,
    "Cos": np.cos,
    "Tan": np.tan,
    "Atan": np.arctan,
    "Tanh": np.tanh,
    "Sigmoid": act.sigmoid,
    "Relu": lambda x: np.maximum(x, 0),
    "Softplus": act.softplus,
    "Softsign": lambda x: x / (1 + np.abs(x)),
    "Erf": act.erf,
    "Mish": act.mish,
    "HardSwish": act.hard_swish,
}.items():
    OPS[_name] = _unary(_fn)


@op("Not")
def _not(node, x):
    return [np.logical_not(x)]


@op("IsNaN")
def _isnan(node, x):
    return [np.isnan(x)]


@op("IsInf")
def _isinf(node, x):
    pos, neg = node.attrs.get("detect_positive", 1), node.attrs.get("detect_negative", 1)
    return [(np.isposinf(x) & bool(pos)) | (np.isneginf(x) & bool(neg))]


def _same(x, y):
    return np.asarray(y, dtype=x.dtype)


@op("LeakyRelu")
def _leaky(node, x):
    a = node.attrs.get("alpha", 0.01)
    return [_same(x, np.where(x >= 0, x, a * x))]


@op("Elu")
def _elu(node, x):
    a = node.attrs.get("alpha", 1.0)
    return [_same(x, act.elu(x, a))]


@op("Celu")
def _celu(node, x):
    a = node.attrs.get("alpha", 1.0)
    return [_same(x, act.celu(x, a))]


@op("Selu")
def _selu(node, x):
    a = node.attrs.get("alpha", 1.67326319217681884765625)
    g = node.attrs.get("gamma", 1.05070102214813232421875)
    return [_same(x, act.selu(x, a, g))]


@op("HardSigmoid")
def _hardsigmoid(node, x):
    a, b = node.attrs.get("alpha", 0.2), node.attrs.get("beta", 0.5)
    return [_same(x, np.clip(a * x + b, 0, 1))]


@op("ThresholdedRelu")
def _thresholded(node, x):
    a = node.attrs.get("alpha", 1.0)
    return [_same(x, np.where(x > a, x, 0))]


@op("Gelu")
def _gelu(node, x):
    return [_same(x, act.gelu(x, approximate=node.attrs.get("approximate", "none") == "tanh"))]


@op("PRelu")
def _prelu(node, x, slope):
    return [_same(x, np.where(x < 0, slope * x, x))]


@op("Clip")
def _clip(node, x, lo=None, hi=None):
    if node.opset < 11:
        lo, hi = node.attrs.get("min"), node.attrs.get("max")
    y = x
    if lo is not None:
        y = np.maximum(y, np.asarray(lo, x.dtype))
    if hi is not None:
        y = np.minimum(y, np.asarray(hi, x.dtype))
    return [np.asarray(y, x.dtype)]


def _int_div(a, b):
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) ^ (b < 0), -q, q).astype(np.result_type(a, b))


def _binary(fn):
    return lambda node, a, b: [fn(a, b)]


for _name, _fn in {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": lambda a, b: _int_div(a, b) if a.dtype.kind in "iu" else np.divide(a, b),
    "Pow": lambda a, b: np.power(a, b).astype(a.dtype),
    "Equal": np.equal,
    "Less": np.less,
    "LessOrEqual": np.less_equal,
    "Greater": np.greater,
    "GreaterOrEqual": np.greater_equal,
    "And": np.logical_and,
    "Or": np.logical_or,
    "Xor": np.logical_xor,
    "BitwiseAnd": np.bitwise_and,
    "BitwiseOr": np.bitwise_or,
}.items():
    OPS[_name] = _binary(_fn)


@op("Mod")
def _mod(node, a, b):
    if node.attrs.get("fmod", 0):
        return [np.fmod(a, b)]
    return [np.mod(a, b)]


def _variadic(fn):
    def run(node, *xs):
        out = xs[0].view()
        for x in xs[1:]:
            out = fn(out, x)
        return [out]

    return run


OPS["Sum"] = _variadic(np.add)
OPS["Max"] = _variadic(np.maximum)
OPS["Min"] = _variadic(np.minimum)


@op("Mean")
def _mean(node, *xs):
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return [np.asarray(out / len(xs), xs[0].dtype)]


@op("Where")
def _where(node, c, a, b):
    return [np.where(c, a, b)]


# -- linear algebra -----------------------------------------------------------------------------
@op("MatMul")
def _matmul(node, a, b):
    return [np.matmul(a, b)]


@op("Gemm")
def _gemm(node, a, b, c=None):
    if node.attrs.get("transA", 0):
        a = a.T
    if node.attrs.get("transB", 0):
        b = b.T
    y = np.asarray(node.attrs.get("alpha", 1.0), a.dtype) * (a @ b)
    if c is not None:
        y = y + np.asarray(node.attrs.get("beta", 1.0), a.dtype) * c
    return [y.astype(a.dtype, copy=False)]


@op("Einsum")
def _einsum(node, *xs):
    return [np.einsum(node.attrs["equation"].replace(" ", ""), *xs)]


# -- normalisation ------------------------------------------------------------------------------
def _softmax_axes(node, x):
    if node.opset < 13:  # the input is coerced to 2-D at `axis` (default 1)
        axis = _axis(node.attrs.get("axis", 1), x.ndim, node)
        return tuple(range(axis, x.ndim))
    return (_axis(node.attrs.get("axis", -1), x.ndim, node),)


@op("Softmax")
def _softmax(node, x):
    axes = _softmax_axes(node, x)
    e = np.exp(x - np.max(x, axis=axes, keepdims=True))
    return [(e / np.sum(e, axis=axes, keepdims=True)).astype(x.dtype, copy=False)]


@op("LogSoftmax")
def _logsoftmax(node, x):
    axes = _softmax_axes(node, x)
    s = x - np.max(x, axis=axes, keepdims=True)
    return [(s - np.log(np.sum(np.exp(s), axis=axes, keepdims=True))).astype(x.dtype, copy=False)]


@op("LayerNormalization")
def _layernorm(node, x, scale, bias=None):
    axis = _axis(node.attrs.get("axis", -1), x.ndim, node)
    axes = tuple(range(axis, x.ndim))
    eps = node.attrs.get("epsilon", 1e-5)
    xf = x.astype(np.float64) if x.dtype != np.float64 else x
    mean = xf.mean(axis=axes, keepdims=True)
    inv = 1 / np.sqrt(((xf - mean) ** 2).mean(axis=axes, keepdims=True) + eps)
    y = (xf - mean) * inv * scale
    if bias is not None:
        y = y + bias
    return [y.astype(x.dtype), mean.astype(np.float32), inv.astype(np.float32)]


@op("BatchNormalization")
def _batchnorm(node, x, scale, bias, mean, var):
    eps = node.attrs.get("epsilon", 1e-5)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * scale.reshape(
        shape
    ) + bias.reshape(shape)
    return [y.astype(x.dtype)]


# -- reductions ---------------------------------------------------------------------------------
def _reduction(fn, since_input: int):
    def run(node, x, axes_in=None):
        axes = _axes_input_or_attr(node, [x, axes_in], 1, since_input)
        keep = bool(node.attrs.get("keepdims", 1))
        if not axes:
            if node.attrs.get("noop_with_empty_axes", 0):
                return [x.view()]
            axes = list(range(x.ndim))
        axes = tuple(_axis(a, x.ndim, node) for a in axes)
        return [np.asarray(fn(x, axis=axes, keepdims=keep), dtype=x.dtype)]

    return run


OPS["ReduceSum"] = _reduction(np.sum, 13)
OPS["ReduceMean"] = _reduction(np.mean, 18)
OPS["ReduceMax"] = _reduction(np.max, 18)
OPS["ReduceMin"] = _reduction(np.min, 18)
OPS["ReduceProd"] = _reduction(np.prod, 18)
OPS["ReduceL2"] = _reduction(
    lambda x, axis, keepdims: np.sqrt(np.sum(x * x, axis, keepdims=keepdims)), 18
)
OPS["ReduceSumSquare"] = _reduction(
    lambda x, axis, keepdims: np.sum(x * x, axis, keepdims=keepdims), 18
)


def _arg(fn):
    def run(node, x):
        axis = _axis(node.attrs.get("axis", 0), x.ndim, node)
        if node.attrs.get("select_last_index", 0):
            idx = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis)
        else:
            idx = fn(x, axis=axis)
        if node.attrs.get("keepdims", 1):
            idx = np.expand_dims(idx, axis)
        return [idx.astype(np.int64)]

    return run


OPS["ArgMax"] = _arg(np.argmax)
OPS["ArgMin"] = _arg(np.argmin)
