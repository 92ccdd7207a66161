// SIMD vectors for the instruction set of the translation unit that includes this header.
// Each isa_*.cpp defines PYLSTM_VL (floats per vector) and PYLSTM_ISA (a namespace name) and is
// compiled with that instruction set's flags; the code is written once with GCC/Clang vector
// extensions, which lower to SSE, AVX2 or AVX-512 as the flags allow.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__SSE__)
#include <immintrin.h>
#endif

#if !defined(PYLSTM_VL) || !defined(PYLSTM_ISA)
#error "define PYLSTM_VL and PYLSTM_ISA before including simd.hpp"
#endif

// Small vector helpers must be inlined: a call passes vectors through memory and stops the
// compiler from interleaving the independent activations of a gate computation.
#ifndef PYLSTM_INLINE
#define PYLSTM_INLINE static inline __attribute__((always_inline))
#endif

namespace pylstm {
namespace PYLSTM_ISA {

constexpr int VL = PYLSTM_VL;

typedef float vf __attribute__((vector_size(VL * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VL * sizeof(int32_t))));

PYLSTM_INLINE vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
PYLSTM_INLINE void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
// Broadcast: one instruction (from memory when s was just loaded). The portable spelling
// `vf{} + s` costs an extra add (-0.0 + 0.0 is not -0.0) and a register shuffle, which in the
// GEMM micro-kernel compete with the FMAs for their ports.
PYLSTM_INLINE vf splat(float s) {
#if defined(__AVX512F__) && PYLSTM_VL == 16
  return (vf)_mm512_set1_ps(s);
#elif defined(__AVX__) && PYLSTM_VL == 8
  return (vf)_mm256_set1_ps(s);
#elif defined(__SSE__) && PYLSTM_VL == 4
  return (vf)_mm_set1_ps(s);
#else
  vf v;
  for (int i = 0; i < VL; ++i) v[i] = s;
  return v;
#endif
}
// a < b ? a : b and a > b ? a : b (b where either is NaN), as one instruction: the compiler
// lowers the vector ternary to a compare and a blend. To bound x and keep a NaN in x, pass the
// bound first: vmax(splat(lo), x) is NaN where x is (IEEE fmax-style `vmax(x, lo)` is lo).
PYLSTM_INLINE vf vmin(vf a, vf b) {
#if defined(__AVX512F__) && PYLSTM_VL == 16
  return (vf)_mm512_min_ps((__m512)a, (__m512)b);
#elif defined(__AVX__) && PYLSTM_VL == 8
  return (vf)_mm256_min_ps((__m256)a, (__m256)b);
#elif defined(__SSE__) && PYLSTM_VL == 4
  return (vf)_mm_min_ps((__m128)a, (__m128)b);
#else
  return a < b ? a : b;
#endif
}
PYLSTM_INLINE vf vmax(vf a, vf b) {
#if defined(__AVX512F__) && PYLSTM_VL == 16
  return (vf)_mm512_max_ps((__m512)a, (__m512)b);
#elif defined(__AVX__) && PYLSTM_VL == 8
  return (vf)_mm256_max_ps((__m256)a, (__m256)b);
#elif defined(__SSE__) && PYLSTM_VL == 4
  return (vf)_mm_max_ps((__m128)a, (__m128)b);
#else
  return a > b ? a : b;
#endif
}
PYLSTM_INLINE vf vabs(vf a) {
  vi bits;
  std::memcpy(&bits, &a, sizeof a);
  bits &= 0x7fffffff;
  std::memcpy(&a, &bits, sizeof a);
  return a;
}
// Copies the sign of `sign` onto the magnitude of `mag`.
PYLSTM_INLINE vf vcopysign(vf mag, vf sign) {
  vi m, s;
  std::memcpy(&m, &mag, sizeof m);
  std::memcpy(&s, &sign, sizeof s);
  m = (m & 0x7fffffff) | (s & static_cast<int32_t>(0x80000000u));
  std::memcpy(&mag, &m, sizeof m);
  return mag;
}

// 1/x to about float precision without a division: the hardware reciprocal estimate (14 bits
// with AVX-512, 12 otherwise) refined by one Newton step. A vector division costs ~16 cycles of
// throughput, and sigmoid/tanh need one each for every gate of every unit at every step.
PYLSTM_INLINE vf reciprocal(vf x) {
#if defined(__AVX512F__) && PYLSTM_VL == 16
  const vf r = (vf)_mm512_rcp14_ps((__m512)x);
#elif defined(__AVX__) && PYLSTM_VL == 8
  const vf r = (vf)_mm256_rcp_ps((__m256)x);
#elif defined(__SSE__) && PYLSTM_VL == 4
  const vf r = (vf)_mm_rcp_ps((__m128)x);
#else
  return 1.0f / x;
#endif
#if defined(__SSE__)
  // r + r*(1 - x*r): the residual 1 - x*r is exact with FMA, so exact reciprocals (1/1) come
  // out exact, which keeps sigmoid and tanh at exactly 1 in saturation.
  const vf e = 1.0f - x * r;
#if defined(__AVX512F__) && PYLSTM_VL == 16
  return r + r * e;
#else
  const vf r1 = r + r * e;  // the 12-bit estimate needs a second step
  return r1 + r1 * (1.0f - x * r1);
#endif
#endif
}

// VL bfloat16 values (raw bits) -> floats; VL int8 -> floats. Compilers scalarise the generic
// vector conversions of narrow integers, so the x86 builds use intrinsics.
PYLSTM_INLINE vf widen_bf16(const uint16_t* p) {
#if defined(__AVX512F__) && PYLSTM_VL == 16
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return (vf)_mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
#elif defined(__AVX2__) && PYLSTM_VL == 8
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return (vf)_mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
#else
  vi bits;
  for (int i = 0; i < VL; ++i) bits[i] = static_cast<int32_t>(static_cast<uint32_t>(p[i]) << 16);
  vf f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
#endif
}

PYLSTM_INLINE vf widen_i8(const int8_t* p) {
#if defined(__AVX512F__) && PYLSTM_VL == 16
  return (vf)_mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#elif defined(__AVX2__) && PYLSTM_VL == 8
  return (vf)_mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
#else
  vf f;
  for (int i = 0; i < VL; ++i) f[i] = static_cast<float>(p[i]);
  return f;
#endif
}

}  // namespace PYLSTM_ISA
}  // namespace pylstm
