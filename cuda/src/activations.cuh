// Activation functions on the device, numbered as pylstm::ActKind (network.hpp has the
// formulas). CUDA's accurate expf/tanhf/erff/log1pf (no fast math): a few ulp, well inside the
// 3e-5 agreement the tests ask for. Like the CPU kernels, exponentials saturate instead of
// overflowing to inf, and saturated sigmoids are exactly 0 or 1.
#pragma once

#include <cuda_runtime.h>

#include "kernel_params.hpp"

namespace pylstm {
namespace cuda {

enum ActCode : int {
  kActSigmoid = 0,
  kActTanh,
  kActRelu,
  kActAffine,
  kActLeakyRelu,
  kActThresholdedRelu,
  kActScaledTanh,
  kActHardSigmoid,
  kActElu,
  kActSoftsign,
  kActSoftplus,
  kActSelu,
  kActSilu,
  kActGelu,
  kActGeluTanh,
  kActExponential,
  kActRelu6,
  kActHardSilu,
  kActHardTanh,
  kActMish,
  kActLogSigmoid,
  kActTanhShrink,
  kActCelu,
};

// Bounds that keep a NaN x (fminf/fmaxf return the other operand when one is NaN): NaN in,
// NaN out, as PyTorch, Keras and ONNX Runtime compute (activations.hpp on the CPU).
__device__ __forceinline__ float at_least(float x, float lo) { return x < lo ? lo : x; }
__device__ __forceinline__ float at_most(float x, float hi) { return x > hi ? hi : x; }
__device__ __forceinline__ float bounded(float x, float lo, float hi) {
  return at_most(at_least(x, lo), hi);
}

__device__ __forceinline__ float sat_exp(float x) { return expf(bounded(x, -87.3f, 88.3f)); }

__device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

// log(1 + e^x) without overflow.
__device__ __forceinline__ float softplus_f(float x) {
  return at_least(x, 0.0f) + log1pf(expf(-fabsf(x)));
}

// Every activation but the two defaults; not inlined, so that the kernels carry one copy.
static __device__ __noinline__ float activate_other(int kind, float alpha, float beta, float x) {
  switch (kind) {
    case kActRelu:
      return at_least(x, 0.0f);
    case kActAffine:
      return x * alpha + beta;
    case kActLeakyRelu:
      return x < 0.0f ? x * alpha : x;
    case kActThresholdedRelu:
      return x > alpha ? x : 0.0f;
    case kActScaledTanh:
      return tanhf(x * beta) * alpha;
    case kActHardSigmoid:
      return bounded(x * alpha + beta, 0.0f, 1.0f);
    case kActElu:
      return x < 0.0f ? (sat_exp(x) - 1.0f) * alpha : x;
    case kActSoftsign:
      return x / (1.0f + fabsf(x));
    case kActSoftplus:
      return softplus_f(x);
    case kActSelu:
      return (x > 0.0f ? x : (sat_exp(x) - 1.0f) * 1.6732632423543772f) * 1.0507009873554805f;
    case kActSilu:
      return x * sigmoid_f(x);
    case kActGelu:
      return x * 0.5f * (1.0f + erff(x * 0.7071067811865476f));
    case kActGeluTanh:
      return x * 0.5f * (1.0f + tanhf((x + x * x * x * 0.044715f) * 0.7978845608028654f));
    case kActExponential:
      return expf(x);  // inf above ~88.7, as e^x in float
    case kActRelu6:
      return bounded(x, 0.0f, 6.0f);
    case kActHardSilu:
      return x * bounded(x + 3.0f, 0.0f, 6.0f) * (1.0f / 6.0f);
    case kActHardTanh:
      return bounded(x, -1.0f, 1.0f);
    case kActMish:
      return x * tanhf(softplus_f(x));
    case kActLogSigmoid:
      return -softplus_f(-x);
    case kActTanhShrink:
      return x - tanhf(x);
    case kActCelu:
      return x > 0.0f ? x : (sat_exp(x / alpha) - 1.0f) * alpha;
    default:
      return x;
  }
}

__device__ __forceinline__ float activate(const ActParams& a, float x) {
  if (a.kind == kActSigmoid) return sigmoid_f(x);
  if (a.kind == kActTanh) return tanhf(x);
  return activate_other(a.kind, a.alpha, a.beta, x);
}

// ONNX `clip` (as ONNX Runtime reads it): gate pre-activations bounded to [-clip, clip], the
// LSTM cell state not; clip <= 0: none.
__device__ __forceinline__ float clipped(float x, float clip) {
  return clip > 0.0f ? bounded(x, -clip, clip) : x;
}

}  // namespace cuda
}  // namespace pylstm
