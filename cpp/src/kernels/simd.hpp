// SIMD vectors for the instruction set of the translation unit that includes this header.
// Each isa_*.cpp defines PYLSTM_VL (floats per vector) and PYLSTM_ISA (a namespace name) and is
// compiled with that instruction set's flags; the code is written once with GCC/Clang vector
// extensions, which lower to SSE, AVX2 or AVX-512 as the flags allow.
#pragma once

#include <cstdint>
#include <cstring>

#if !defined(PYLSTM_VL) || !defined(PYLSTM_ISA)
#error "define PYLSTM_VL and PYLSTM_ISA before including simd.hpp"
#endif

namespace pylstm {
namespace PYLSTM_ISA {

constexpr int VL = PYLSTM_VL;

typedef float vf __attribute__((vector_size(VL * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VL * sizeof(int32_t))));

static inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
static inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
static inline vf splat(float s) { return vf{} + s; }
static inline vf vmin(vf a, vf b) { return a < b ? a : b; }
static inline vf vmax(vf a, vf b) { return a > b ? a : b; }
static inline vf vabs(vf a) {
  vi bits;
  std::memcpy(&bits, &a, sizeof a);
  bits &= 0x7fffffff;
  std::memcpy(&a, &bits, sizeof a);
  return a;
}
// Copies the sign of `sign` onto the magnitude of `mag`.
static inline vf vcopysign(vf mag, vf sign) {
  vi m, s;
  std::memcpy(&m, &mag, sizeof m);
  std::memcpy(&s, &sign, sizeof s);
  m = (m & 0x7fffffff) | (s & static_cast<int32_t>(0x80000000u));
  std::memcpy(&mag, &m, sizeof m);
  return mag;
}

}  // namespace PYLSTM_ISA
}  // namespace pylstm
