// Vectorised activation functions. Accuracy target: a few float32 ulp in the gate range, which
// keeps cells within the 3e-5 absolute agreement the tests demand against PyTorch/ONNX Runtime.
// Non-finite inputs give what the formula gives in IEEE arithmetic, as PyTorch, Keras and ONNX
// Runtime do: NaN in -> NaN out (every bound below is written vmin/vmax(bound, x), which keeps a
// NaN x), sigmoid(+-inf) = 1/0, tanh(+-inf) = +-1, relu(inf) = inf, and an infinity times a
// factor that vanishes is NaN (silu(-inf), mish(-inf), gelu(-inf), hard_silu(-inf)).
#pragma once

#include "kernels/simd.hpp"
#include "pylstm/network.hpp"

namespace pylstm {
namespace PYLSTM_ISA {

// e^x for x in float range; saturates at e^88.3 and e^-87.3 (no inf, no denormals); NaN stays
// NaN. (So sigmoid(-inf) is 1/(1 + e^88.3), a denormal, not 0: immaterial except where an
// infinity multiplies it, which apply() handles.)
PYLSTM_INLINE vf v_exp(vf x) {
  x = vmin(splat(88.3f), vmax(splat(-87.3f), x));
  // x = n*ln2 + r with |r| <= ln2/2; n = x/ln2 rounded to nearest.
#if defined(__AVX512F__) && PYLSTM_VL == 16
  const vf n = (vf)_mm512_roundscale_ps((__m512)(x * 1.44269504088896341f),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
  const vf magic = splat(12582912.0f);  // 1.5*2^23: adding it rounds to an integer
  const vf n = (x * 1.44269504088896341f + magic) - magic;
#endif
  vf r = x - n * 0.693359375f;  // ln2 split in a short high part...
  r = r - n * -2.12194440e-4f;  // ...and the rest, so r is exact enough
  // e^r = 1 + r + r^2 q(r): degree-6 polynomial fitted for relative error (max 1.1e-8 on
  // |r| <= ln2/2, below float's 6e-8).
  vf p = splat(1.3552719288e-03f);
  p = p * r + 8.3640933230e-03f;
  p = p * r + 4.1672224128e-02f;
  p = p * r + 1.6666561697e-01f;
  p = p * r + 4.9999981152e-01f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // times 2^n: one instruction with AVX-512, else built in the exponent bits
#if defined(__AVX512F__) && PYLSTM_VL == 16
  return (vf)_mm512_scalef_ps((__m512)p, (__m512)n);
#else
  vi e = (__builtin_convertvector(n, vi) + 127) << 23;
  vf scale;
  std::memcpy(&scale, &e, sizeof scale);
  return p * scale;
#endif
}

// log(x) for x > 0 (finite): x = m * 2^e with m in [sqrt(1/2), sqrt(2)), then
// log(m) = 2*atanh(s), s = (m-1)/(m+1), |s| <= 0.172, series to s^11.
PYLSTM_INLINE vf v_log(vf x) {
  vi bits;
  std::memcpy(&bits, &x, sizeof bits);
  vi e = ((bits >> 23) & 0xff) - 127;
  bits = (bits & 0x007fffff) | 0x3f800000;  // mantissa in [1, 2)
  vf m;
  std::memcpy(&m, &bits, sizeof m);
  const vi big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = e - big;  // comparison gives -1 for true
  const vf s = (m - 1.0f) / (m + 1.0f);
  const vf s2 = s * s;
  vf p = splat(2.0f / 11);
  p = p * s2 + 2.0f / 9;
  p = p * s2 + 2.0f / 7;
  p = p * s2 + 2.0f / 5;
  p = p * s2 + 2.0f / 3;
  p = p * s2 + 2.0f;
  return p * s + __builtin_convertvector(e, vf) * 0.693147180559945f;
}

PYLSTM_INLINE vf v_sigmoid(vf x) { return reciprocal(1.0f + v_exp(-x)); }

// tanh(x) = sign(x) (1 - e) / (1 + e), e = e^(-2|x|). Absolute error below 1e-7 everywhere
// (near 0 the relative error grows, as 1 - e cancels; outputs are compared absolutely).
PYLSTM_INLINE vf v_tanh(vf x) {
  const vf e = v_exp(vabs(x) * -2.0f);
  return vcopysign(1.0f - 2.0f * e * reciprocal(1.0f + e), x);  // exactly 1 when e underflows
}

// tanh with small relative error near 0 too (the odd Taylor series below |x| = 1/16), for
// activations that multiply tanh of a small value by a large one (mish, gelu_tanh, tanh_shrink).
PYLSTM_INLINE vf v_tanh_precise(vf x) {
  const vf ax = vabs(x);
  const vf x2 = ax * ax;
  const vf small = ax * (1.0f + x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315))));
  return vcopysign(ax < 0.0625f ? small : vabs(v_tanh(ax)), x);
}

// log(1 + e^x) = max(x, 0) + log1p(e^-|x|), with log1p(y) = log(u) * y / (u - 1), u = 1 + y.
PYLSTM_INLINE vf v_softplus(vf x) {
  const vf y = v_exp(-vabs(x));
  const vf u = 1.0f + y;
  const vf d = u - 1.0f;
  const vf l1p = d == 0.0f ? y : v_log(u) * (y / d);
  return vmax(splat(0.0f), x) + l1p;
}

// erf(x) with absolute error below 2e-7 (Abramowitz & Stegun 7.1.26, odd extension); +-1 at
// +-inf (|x| bounded in t: the reciprocal's Newton step turns 1/inf into NaN).
PYLSTM_INLINE vf v_erf(vf x) {
  const vf ax = vabs(x);
  const vf t = reciprocal(1.0f + 0.3275911f * vmin(splat(1e4f), ax));
  vf p = splat(1.061405429f);
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  const vf y = 1.0f - p * t * v_exp(-ax * ax);
  return vcopysign(y, x);
}

// Any activation, chosen at run time (the cells call the common ones directly, see
// cell_common.hpp); deliberately not forced inline: one copy serves every call site.
static vf apply(const Activation& a, vf x) {
  switch (a.kind) {
    case ActKind::Sigmoid:
      return v_sigmoid(x);
    case ActKind::Tanh:
      return v_tanh_precise(x);
    case ActKind::Relu:
      return vmax(splat(0.0f), x);
    case ActKind::Affine:
      return x * a.alpha + a.beta;
    case ActKind::LeakyRelu:
      return x < 0.0f ? x * a.alpha : x;
    case ActKind::ThresholdedRelu:
      return x > a.alpha ? x : splat(0.0f);
    case ActKind::ScaledTanh:
      return v_tanh_precise(x * a.beta) * a.alpha;
    case ActKind::HardSigmoid:
      return vmin(splat(1.0f), vmax(splat(0.0f), x * a.alpha + a.beta));
    case ActKind::Elu:
      return x < 0.0f ? (v_exp(x) - 1.0f) * a.alpha : x;
    case ActKind::Softsign:
      return x / (1.0f + vabs(x));
    case ActKind::Softplus:
      return v_softplus(x);
    case ActKind::Selu:
      return (x > 0.0f ? x : (v_exp(x) - 1.0f) * 1.6732632423543772f) * 1.0507009873554805f;
    case ActKind::Silu:  // x * 0 below -88: -0 as in float, NaN at -inf (not -inf * denormal)
      return x * (x < -88.0f ? splat(0.0f) : v_sigmoid(x));
    case ActKind::Gelu:
      return x * 0.5f * (1.0f + v_erf(x * 0.7071067811865476f));
    case ActKind::GeluTanh:
      return x * 0.5f * (1.0f + v_tanh_precise((x + x * x * x * 0.044715f) * 0.7978845608028654f));
    case ActKind::Exponential: {  // (e^(x/2))^2: overflows to inf and underflows to 0 as e^x
      const vf e = v_exp(x * 0.5f);
      return e * e;
    }
    case ActKind::Relu6:
      return vmin(splat(6.0f), vmax(splat(0.0f), x));
    case ActKind::HardSilu:
      return x * vmin(splat(6.0f), vmax(splat(0.0f), x + 3.0f)) * (1.0f / 6.0f);
    case ActKind::HardTanh:
      return vmin(splat(1.0f), vmax(splat(-1.0f), x));
    case ActKind::Mish:  // as Silu: x * 0 below -88
      return x * (x < -88.0f ? splat(0.0f) : v_tanh_precise(v_softplus(x)));
    case ActKind::LogSigmoid:
      return -v_softplus(-x);
    case ActKind::TanhShrink:
      return x - v_tanh_precise(x);
    case ActKind::Celu:
      return x > 0.0f ? x : (v_exp(x / a.alpha) - 1.0f) * a.alpha;
  }
  return x;
}

}  // namespace PYLSTM_ISA
}  // namespace pylstm
