// Sweeps of a layer's weight panels for the time loop (time_loop.hpp): the panels of a packed
// weight matrix, and a product of a few rows with a run of chunks followed by a callback per
// block of product rows (the fused gates).
#pragma once

#include <algorithm>

#include "kernels/gemm.hpp"
#include "kernels/kernel_set.hpp"

namespace pylstm {
namespace PYLSTM_ISA {

// Rows of the batch whose recurrent products are computed before their gates run: the product
// buffer stays in L1 (kRecRows x up to 4 vectors per row). A multiple of every tile height.
constexpr int kRecRows = 48;
static_assert(kRecRows % max_rows<4>() == 0 && kRecRows % max_rows<3>() == 0, "tile heights");
constexpr int kRecFloats = kRecRows * 4 * VL;

// The panels of weight matrix `wp` (weights of type WT), from column `col` of each panel;
// panels are `panel_elems` apart, `ldb` elements per k, `cols` columns (and scales) per panel.
template <typename WT>
static inline PanelArgs<WT> panels_of(const WeightPanels& wp, int64_t col, int64_t panel_elems,
                                      int64_t ldb) {
  PanelArgs<WT> p;
  p.b = wp.data(static_cast<WT*>(nullptr)) + col;
  p.ldb = ldb;
  p.b_stride = panel_elems;
  p.scale = wp.scales() ? wp.scales() + col : nullptr;
  p.scale_stride = ldb;  // a panel has ldb columns, hence ldb scales
  return p;
}

// C = A · panel_u for chunks u in [u0, u1) and `rows` rows of A, then fn(u, i0, n, c) for each
// block of product rows: rows [i0, i0 + n) of chunk u, row i at c + (i - i0) * NV * VL. Few
// rows: several chunks per kernel call; many rows: one chunk at a time, in blocks of kRecRows
// rows. `first` describes chunk 0's panel. `backward`: the chunks last to first (the time loop
// alternates directions from step to step, so that the panels a step read last, still in
// cache, are the next step's first; each chunk's products are the same either way).
template <int NV, typename WT, typename RowFn>
static inline void sweep_chunks(int64_t u0, int64_t u1, int64_t rows, const StridedRows& a,
                                int64_t K, const PanelArgs<WT>& first, RowFn fn,
                                bool backward = false) {
  constexpr int W = NV * VL;
  alignas(64) float rec[kRecFloats];
  auto chunk = [&](int64_t u) {
    PanelArgs<WT> p = first.panel(u);
    p.c = rec;
    p.ldc = W;
    p.c_stride = rows * W;
    return p;
  };
  if (rows <= max_multi_panel_rows<NV>()) {
    const int r = static_cast<int>(rows);
    for (int64_t left = u1 - u0; left > 0;) {
      const int n = multi_panel_group<NV>(r, static_cast<int>(left));
      const int64_t u = backward ? u0 + left - n : u1 - left;
      multi_panel_kernel<NV>(r, n, K, a, chunk(u));  // all n chunks: one group
      for (int c = 0; c < n; ++c) fn(u + c, int64_t{0}, rows, rec + c * rows * W);
      left -= n;
    }
    return;
  }
  const int64_t step = backward ? -1 : 1;
  for (int64_t u = backward ? u1 - 1 : u0; u >= u0 && u < u1; u += step) {
    for (int64_t r0 = 0; r0 < rows; r0 += kRecRows) {
      const int64_t n = std::min<int64_t>(kRecRows, rows - r0);
      PanelArgs<WT> p = chunk(u);
      const int64_t next = u + step;
      if (r0 == 0 && next >= u0 && next < u1) {  // the next chunk's panel, during the first rows
        p.prefetch = reinterpret_cast<const char*>(first.panel(next).b);
        p.prefetch_lines = K * first.ldb * static_cast<int64_t>(sizeof(WT)) / 64;
      }
      panel_product<NV>(n, K, a.from(r0), p);
      fn(u, r0, n, static_cast<const float*>(rec));
    }
  }
}

// sweep_chunks for A = 0 (a step from a zero state): fn gets zero products without a read of
// the panels. The kernels give exactly +0 there too when the weights are finite (+0 * w
// accumulated onto +0), so the results are bit-identical.
template <int NV, typename RowFn>
static inline void zero_chunks(int64_t u0, int64_t u1, int64_t rows, RowFn fn) {
  alignas(64) static const float zeros[kRecFloats] = {};
  for (int64_t u = u0; u < u1; ++u) {
    for (int64_t r0 = 0; r0 < rows; r0 += kRecRows) {
      fn(u, r0, std::min<int64_t>(kRecRows, rows - r0), zeros);
    }
  }
}

// A block callback for sweep_chunks<NV> from a per-row one: fn(u, i, c_row) for each row.
template <int NV, typename RowFn>
static inline auto each_row(RowFn fn) {
  return [fn](int64_t u, int64_t i0, int64_t n, const float* c) {
    for (int64_t i = 0; i < n; ++i) fn(u, i0 + i, c + i * NV * VL);
  };
}

}  // namespace PYLSTM_ISA
}  // namespace pylstm
