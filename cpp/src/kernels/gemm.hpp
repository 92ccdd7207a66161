// Register-blocked matrix products against packed panels (packing.hpp).
//
//   C[i][v*VL + lane] = bias + sum_k A_i[k] * B[k*ldb + v*VL + lane]      i < MR, v < NV
//
// A is given as MR row pointers, so the same kernel reads time-major, batch-first or
// state rows without copies. Every output element is a sequential sum over k, whatever the
// thread count or tile split, so results do not depend on how work is divided.
#pragma once

#include <cstdint>

#include "kernels/simd.hpp"

namespace pylstm {
namespace PYLSTM_ISA {

// Accumulator registers the micro-kernel may use (of 32 zmm with AVX-512, 16 otherwise).
constexpr int kAccRegs = VL == 16 ? 24 : 12;

template <int NV>
constexpr int max_rows() {
  return kAccRegs / NV > 0 ? kAccRegs / NV : 1;
}

template <int MR, int NV>
static inline void micro_kernel(int64_t K, const float* const* a, const float* b, int64_t ldb,
                                const float* bias, float* c, int64_t ldc) {
  vf acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = bias ? load(bias + v * VL) : splat(0.0f);
  }
  for (int64_t k = 0; k < K; ++k) {
    vf bv[NV];
    const float* bk = b + k * ldb;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = load(bk + v * VL);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const vf av = splat(a[i][k]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] += av * bv[v];
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) store(c + i * ldc + v * VL, acc[i][v]);
  }
}

// Any row count 1..max_rows<NV>() with one call; dispatches to the fixed-size kernel.
template <int NV, int MR = max_rows<NV>()>
static inline void rows_kernel(int rows, int64_t K, const float* const* a, const float* b,
                               int64_t ldb, const float* bias, float* c, int64_t ldc) {
  if constexpr (MR > 1) {
    if (rows < MR) {
      rows_kernel<NV, MR - 1>(rows, K, a, b, ldb, bias, c, ldc);
      return;
    }
  }
  micro_kernel<MR, NV>(K, a, b, ldb, bias, c, ldc);
}

// C = A·B (+ bias) for `rows` rows, row r of A at a_rows[r]; C row r at c + r*ldc.
// NV vectors of columns; B panel [K][ldb]. Rows are taken in tiles of max_rows<NV>().
template <int NV>
static inline void rows_times_panel(int64_t rows, int64_t K, const float* const* a_rows,
                                    const float* b, int64_t ldb, const float* bias, float* c,
                                    int64_t ldc) {
  constexpr int MR = max_rows<NV>();
  for (int64_t r0 = 0; r0 < rows; r0 += MR) {
    const int n = static_cast<int>(rows - r0 < MR ? rows - r0 : MR);
    rows_kernel<NV>(n, K, a_rows + r0, b, ldb, bias, c + r0 * ldc, ldc);
  }
}

// Same, with the number of column vectors chosen at run time (1..4).
static inline void rows_times_panel_nv(int nv, int64_t rows, int64_t K, const float* const* a_rows,
                                       const float* b, int64_t ldb, const float* bias, float* c,
                                       int64_t ldc) {
  switch (nv) {
    case 1:
      rows_times_panel<1>(rows, K, a_rows, b, ldb, bias, c, ldc);
      break;
    case 2:
      rows_times_panel<2>(rows, K, a_rows, b, ldb, bias, c, ldc);
      break;
    case 3:
      rows_times_panel<3>(rows, K, a_rows, b, ldb, bias, c, ldc);
      break;
    default:
      rows_times_panel<4>(rows, K, a_rows, b, ldb, bias, c, ldc);
      break;
  }
}

}  // namespace PYLSTM_ISA
}  // namespace pylstm
