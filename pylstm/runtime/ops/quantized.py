"""numpy implementations of the quantized operators ``onnxruntime.quantization.quantize_dynamic``
writes around recurrent layers, and of the ``com.microsoft`` ones ONNX Runtime's optimizer fuses
them into.

A ``MatMul`` whose weight is an initializer becomes ``DynamicQuantizeLinear`` (the activations
to uint8 with one scale and zero point per tensor) -> ``MatMulInteger`` (int32 products) ->
``Cast`` -> ``Mul`` by both scales; ONNX Runtime's graph optimizer (an ``optimized_model_filepath``
saved model) fuses that into ``com.microsoft`` ``DynamicQuantizeMatMul`` or
``MatMulIntegerToFloat``. The recurrent ``DynamicQuantizeLSTM`` is not here: it is lowered to an
LSTM and dequantized at load (:func:`pylstm.convert.onnx_rnn.lower_quantized_lstm`).

Integer products are computed in float64 (exact for the sums of up to 2**37 int8 x uint8
products that fit in int32), so that numpy's BLAS does the work.
"""

from __future__ import annotations

import numpy as np

from .common import op

#: Operators of the ``com.microsoft`` domain that this module implements.
MS_OPS = frozenset({"DynamicQuantizeMatMul", "MatMulIntegerToFloat"})


def _quantize_params(x: np.ndarray) -> tuple:
    """ONNX DynamicQuantizeLinear's uint8 scale and zero point of ``x``: the range widened to
    hold 0, ``scale = (max - min) / 255`` (1 when the range is empty, as in ONNX Runtime),
    ``zero_point = round_half_even(clip(-min / scale, 0, 255))``."""
    if x.size:
        lo = min(float(np.min(x)), 0.0)
        hi = max(float(np.max(x)), 0.0)
    else:
        lo = hi = 0.0
    scale = np.float32((hi - lo) / 255.0) if hi != lo else np.float32(1.0)
    zero = np.float32(0.0) - np.float32(lo) / scale
    zero = np.round(np.clip(zero, 0.0, 255.0))
    return scale, np.uint8(zero)


def _quantize(x: np.ndarray, scale, zero) -> np.ndarray:
    q = np.rint(x / scale) + np.float32(zero)  # rint: round half to even, as ONNX says
    return np.clip(q, 0, 255).astype(np.uint8)


@op("DynamicQuantizeLinear")
def _dynamic_quantize_linear(node, x):
    x = np.asarray(x, np.float32)
    if not np.isfinite(x).all():
        raise ValueError("DynamicQuantizeLinear: the input holds NaN or infinity")
    scale, zero = _quantize_params(x)
    return [_quantize(x, scale, zero), np.asarray(scale), np.asarray(zero)]


def _integer(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype not in (np.int8, np.uint8):
        raise TypeError(f"{name} must be int8 or uint8, got {a.dtype}")
    return a


def _centered(a, zero, name: str, axis: int) -> np.ndarray:
    """``a - zero`` in float64; ``zero`` a scalar or one value per row (``axis=-2``, A) or per
    column (``axis=-1``, B)."""
    out = a.astype(np.float64)
    if zero is None:
        return out
    z = np.asarray(zero)
    if z.dtype != a.dtype:
        raise TypeError(f"the zero point of {name} must be {a.dtype} like {name}, got {z.dtype}")
    z = z.astype(np.float64)
    if z.size == 1:
        return out - z.reshape(())
    if z.ndim != 1 or a.ndim < 2 or z.shape[0] != a.shape[axis]:
        raise ValueError(
            f"the zero point of {name} must be a scalar or hold {a.shape[axis] if a.ndim else '?'}"
            f" values (one per {'row' if axis == -2 else 'column'}), got shape {list(z.shape)}"
        )
    return out - (z[:, None] if axis == -2 else z)


def _integer_product(a, b, a_zero, b_zero) -> np.ndarray:
    """``(a - a_zero) @ (b - b_zero)`` exactly, as float64."""
    a = _integer(a, "A")
    b = _integer(b, "B")
    return np.matmul(_centered(a, a_zero, "A", -2), _centered(b, b_zero, "B", -1))


@op("MatMulInteger")
def _matmul_integer(node, a, b, a_zero=None, b_zero=None):
    return [_integer_product(a, b, a_zero, b_zero).astype(np.int32)]


def _scaled(product, a_scale, b_scale, bias) -> np.ndarray:
    scale = np.asarray(a_scale, np.float32).reshape(()) * np.asarray(b_scale, np.float32)
    y = product.astype(np.float32) * scale
    if bias is not None:
        y = y + np.asarray(bias, np.float32)
    return y.astype(np.float32)


@op("MatMulIntegerToFloat")
def _matmul_integer_to_float(node, a, b, a_scale, b_scale, a_zero=None, b_zero=None, bias=None):
    """``com.microsoft``: ``(A - a_zero) @ (B - b_zero) * a_scale * b_scale + bias``."""
    return [_scaled(_integer_product(a, b, a_zero, b_zero), a_scale, b_scale, bias)]


@op("DynamicQuantizeMatMul")
def _dynamic_quantize_matmul(node, a, b, b_scale, b_zero=None, bias=None):
    """``com.microsoft``: A (float) quantized as DynamicQuantizeLinear does, then
    MatMulIntegerToFloat."""
    qa, a_scale, a_zero = _dynamic_quantize_linear(node, a)
    return [_scaled(_integer_product(qa, b, a_zero, b_zero), a_scale, b_scale, bias)]
