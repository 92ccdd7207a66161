// Register-blocked matrix products against packed panels (packing.hpp).
//
//   C_c[i][v*VL + lane] = bias_c + sum_k A_i[k] * B_c[k*ldb + v*VL + lane]
//        i < MR rows, v < NV column vectors, c < NC panels ("chunks") side by side
//
// A is given as row pointers, so the same kernel reads time-major, batch-first or state rows
// without copies. Every output element is a sequential sum over k, whatever the thread count,
// tile shape or number of rows, so results do not depend on how work is divided (nor on the
// batch size: a sequence gives the same bits alone or in a batch).
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/simd.hpp"
#include "packing.hpp"

namespace pylstm {
namespace PYLSTM_ISA {

// Accumulator registers a micro-kernel may use (of 32 zmm with AVX-512, 16 otherwise).
constexpr int kAccRegs = VL == 16 ? 24 : 12;

template <int NV>
constexpr int max_rows() {
  return kAccRegs / NV > 0 ? kAccRegs / NV : 1;
}

// Rows of A: evenly spaced (state buffers) or listed one by one (inputs of any layout).
struct StridedRows {
  const float* base;
  int64_t stride;
  const float* operator[](int64_t i) const { return base + i * stride; }
  StridedRows from(int64_t r) const { return {base + r * stride, stride}; }
};
struct ListedRows {
  const float* const* rows;
  const float* operator[](int64_t i) const { return rows[i]; }
  ListedRows from(int64_t r) const { return {rows + r}; }
};

// VL weights widened to floats: fp32 as is, bfloat16 shifted into the high half, int8 converted
// (its per-column scale is applied to the sums).
static inline vf load_weights(const float* p) { return load(p); }
static inline vf load_weights(const bf16_t* p) {
  return widen_bf16(reinterpret_cast<const uint16_t*>(p));
}
static inline vf load_weights(const int8_t* p) { return widen_i8(p); }

// Where a kernel reads its B panels (weights of type WT) and writes its C tiles:
//   C = (A · B) * scale + bias, scale and bias per column (either may be absent).
template <typename WT>
struct PanelArgs {
  const WT* b;                   // first panel, [K][ldb]
  int64_t ldb;                   // elements between consecutive k of a panel
  int64_t b_stride = 0;          // elements between panels (NC > 1)
  const float* scale = nullptr;  // int8 column scales of the first panel
  int64_t scale_stride = 0;      // floats between the scales of consecutive panels
  const float* bias = nullptr;   // [NV*VL] of the first panel
  int64_t bias_stride = 0;       // floats between the biases of consecutive panels
  float* c = nullptr;            // first tile, rows ldc apart
  int64_t ldc = 0;
  int64_t c_stride = 0;  // floats between the tiles of consecutive panels
  // Memory to pull into L2 meanwhile, one 64-byte line per k: the next panel, so that the
  // panels of a large layer, which stream from L3 every step, arrive while this one is used.
  const char* prefetch = nullptr;
  int64_t prefetch_lines = 0;

  // The panels from the u-th on.
  PanelArgs panel(int64_t u) const {
    PanelArgs q = *this;
    q.b += u * b_stride;
    if (q.scale) q.scale += u * scale_stride;
    if (q.bias) q.bias += u * bias_stride;
    if (q.c) q.c += u * c_stride;
    return q;
  }
  // The same panels, starting `cols` columns further right.
  PanelArgs shifted(int64_t cols) const {
    PanelArgs q = *this;
    q.b += cols;
    q.c += cols;
    if (q.scale) q.scale += cols;
    if (q.bias) q.bias += cols;
    return q;
  }
};

template <int MR, int NV, int NC, typename Rows, typename WT>
static inline void micro_kernel(int64_t K, const Rows& a, const PanelArgs<WT>& p) {
  vf acc[NC][MR][NV];
#pragma GCC unroll 8
  for (int c = 0; c < NC; ++c) {
#pragma GCC unroll 24
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[c][i][v] = splat(0.0f);
    }
  }
  // Register budget: the accumulators plus either the NV weight vectors of a panel row
  // (held while each row's broadcast is used once) or the MR broadcasts (held while each
  // weight vector is used once), whichever is fewer, so that nothing spills.
  constexpr bool kHoldWeights = NC == 1 && NV <= MR;
  for (int64_t k = 0; k < K; ++k) {
    if (k < p.prefetch_lines) __builtin_prefetch(p.prefetch + k * 64, 0, 2);
    if constexpr (kHoldWeights) {
      vf bv[NV];
      const WT* bk = p.b + k * p.ldb;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) bv[v] = load_weights(bk + v * VL);
#pragma GCC unroll 24
      for (int i = 0; i < MR; ++i) {
        const vf av = splat(a[i][k]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[0][i][v] += av * bv[v];
      }
    } else {
      vf av[MR];
#pragma GCC unroll 24
      for (int i = 0; i < MR; ++i) av[i] = splat(a[i][k]);
#pragma GCC unroll 8
      for (int c = 0; c < NC; ++c) {
        const WT* bk = p.b + c * p.b_stride + k * p.ldb;
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          const vf bv = load_weights(bk + v * VL);
#pragma GCC unroll 24
          for (int i = 0; i < MR; ++i) acc[c][i][v] += av[i] * bv;
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < NC; ++c) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const vf scale = p.scale ? load(p.scale + c * p.scale_stride + v * VL) : splat(1.0f);
      const vf bias = p.bias ? load(p.bias + c * p.bias_stride + v * VL) : splat(0.0f);
#pragma GCC unroll 24
      for (int i = 0; i < MR; ++i) {
        store(p.c + c * p.c_stride + i * p.ldc + v * VL, acc[c][i][v] * scale + bias);
      }
    }
  }
}

// One panel, any row count 1..max_rows<NV>() with one call.
template <int NV, int MR = max_rows<NV>(), typename Rows, typename WT>
static inline void rows_kernel(int rows, int64_t K, const Rows& a, const PanelArgs<WT>& p) {
  if constexpr (MR > 1) {
    if (rows < MR) {
      rows_kernel<NV, MR - 1>(rows, K, a, p);
      return;
    }
  }
  micro_kernel<MR, NV, 1>(K, a, p);
}

// Several panels at once for very few rows: more independent accumulators, so the FMA latency
// is hidden when one or two rows alone would leave the FMA units waiting.
template <int NV, int MR, int NC = kAccRegs / (MR * NV), typename Rows, typename WT>
static inline void chunks_kernel(int chunks, int64_t K, const Rows& a, const PanelArgs<WT>& p) {
  if constexpr (NC > 1) {
    if (chunks < NC) {
      chunks_kernel<NV, MR, NC - 1>(chunks, K, a, p);
      return;
    }
  }
  micro_kernel<MR, NV, NC>(K, a, p);
}

// Rows at which several panels per call pay off: at most half the accumulators per panel.
template <int NV>
constexpr int max_multi_panel_rows() {
  return kAccRegs / (2 * NV);
}

// How many of `chunks` panels multi_panel_kernel does in one call for `rows` rows (the first
// of balanced groups).
template <int NV>
constexpr int multi_panel_group(int rows, int chunks) {
  const int per_call = std::max(1, kAccRegs / (rows * NV));
  const int groups = (chunks + per_call - 1) / per_call;
  return (chunks + groups - 1) / groups;
}

// `rows` (1..max_multi_panel_rows<NV>()) rows against up to kAccRegs/(rows*NV) panels; returns
// how many panels it did.
template <int NV, int MR = max_multi_panel_rows<NV>(), typename Rows, typename WT>
static inline int multi_panel_kernel(int rows, int chunks, int64_t K, const Rows& a,
                                     const PanelArgs<WT>& p) {
  if constexpr (MR > 1) {
    if (rows < MR) return multi_panel_kernel<NV, MR - 1>(rows, chunks, K, a, p);
  }
  constexpr int NC = kAccRegs / (MR * NV);
  // Balanced groups: 8 panels as 4 + 4 rather than 6 + 2 (2 panels leave too few accumulators
  // to hide the FMA latency).
  const int groups = (chunks + NC - 1) / NC;
  const int n = (chunks + groups - 1) / groups;
  chunks_kernel<NV, MR, NC>(n, K, a, p);
  return n;
}

// C = A·B (·scale + bias) for `rows` rows of A against one panel of NV column vectors.
// Up to twice the rows a full-width tile holds: all rows in one sweep of the panel, in two
// passes of NV/2 vectors if needed (the panel is read once rather than once per tile); more:
// tiles of max_rows<NV>() rows, the last one taking the remainder.
template <int NV, typename Rows, typename WT>
static inline void panel_product(int64_t rows, int64_t K, const Rows& a_rows,
                                 const PanelArgs<WT>& p) {
  if constexpr (NV % 2 == 0) {
    if (rows * NV > kAccRegs && rows * (NV / 2) <= kAccRegs) {
      for (int half = 0; half < 2; ++half) {
        rows_kernel<NV / 2>(static_cast<int>(rows), K, a_rows, p.shifted(half * (NV / 2) * VL));
      }
      return;
    }
  }
  constexpr int MR = max_rows<NV>();
  const int64_t tiles = (rows + MR - 1) / MR;
  const int64_t prefetch_per_tile = (p.prefetch_lines + tiles - 1) / tiles;
  for (int64_t r0 = 0, tile = 0; r0 < rows; r0 += MR, ++tile) {
    const int n = static_cast<int>(rows - r0 < MR ? rows - r0 : MR);
    PanelArgs<WT> q = p;
    q.c += r0 * p.ldc;
    if (p.prefetch) {  // the tiles share the prefetching
      const int64_t first = tile * prefetch_per_tile;
      q.prefetch = p.prefetch + first * 64;
      q.prefetch_lines =
          std::max<int64_t>(0, std::min(prefetch_per_tile, p.prefetch_lines - first));
    }
    rows_kernel<NV>(n, K, a_rows.from(r0), q);
  }
}

}  // namespace PYLSTM_ISA
}  // namespace pylstm
