// The time loop for one layer, run by every member of a thread team (thread_pool.hpp):
//
//   for each block of time steps:
//       input projection of the block for every direction: one GEMM, all threads   (barrier)
//       for each step:  recurrent GEMM + fused gates per (direction, chunk, rows) item  (barrier)
//                       [LSTM projection, or GRU with reset before the product: a second
//                        phase over the same items]                                      (barrier)
//
// Both directions of a bidirectional layer advance together, so one barrier serves both. Items
// are split statically, so each thread streams the same slice of the recurrent weights every
// step and keeps it in its own cache.
#pragma once

#include <algorithm>
#include <cstring>

#include "kernels/gemm.hpp"
#include "kernels/gru_cell.hpp"
#include "kernels/kernel_set.hpp"
#include "kernels/lstm_cell.hpp"
#include "kernels/rnn_cell.hpp"

namespace pylstm {
namespace PYLSTM_ISA {

// Largest micro-kernel tile: rows × (G*U) floats, over every cell kind.
constexpr int kMaxTileFloats = 8 * 4 * 4 * VL;

// Rows of the batch per work item, so that (units items × row blocks) keeps every thread busy.
inline int64_t rows_per_item(int64_t batch, int64_t unit_items, int team_size, int tile_rows) {
  if (unit_items >= 2 * team_size || batch <= tile_rows) return std::max<int64_t>(batch, 1);
  const int64_t blocks = (2 * team_size + unit_items - 1) / unit_items;
  int64_t rows = (batch + blocks - 1) / blocks;
  rows = (rows + tile_rows - 1) / tile_rows * tile_rows;
  return std::max<int64_t>(rows, tile_rows);
}

template <CellKind CELL>
class LayerRun {
 public:
  static constexpr int NV = CELL == CellKind::GRU ? 3 : 4;  // column vectors per chunk
  static constexpr int MR = max_rows<NV>();

  LayerRun(const PackedLayer& L, const LayerIO& io, const LayerScratch& s, const Team& team)
      : L_(L),
        io_(io),
        s_(s),
        team_(team),
        T_(io.steps),
        B_(io.batch),
        GU_(L.G * L.U),
        GC_(L.gate_cols()),
        hs_(state_stride(L)) {}

  void run() {
    init_states();
    team_.barrier();
    for (int64_t s0 = 0; s0 < T_; s0 += s_.block_steps) {
      const int64_t s1 = std::min(T_, s0 + s_.block_steps);
      input_projection(s0, s1);
      team_.barrier();
      for (int64_t step = s0; step < s1; ++step) recurrent_step(step, s0);
    }
    final_states();
  }

 private:
  const PackedLayer& L_;
  const LayerIO& io_;
  const LayerScratch& s_;
  const Team& team_;
  const int64_t T_, B_, GU_, GC_, hs_;

  bool projected() const { return CELL == CellKind::LSTM && L_.P > 0; }
  bool gru_two_phase() const { return CELL == CellKind::GRU && !L_.linear_before_reset; }

  float* h_buf(int64_t d, int64_t parity) const { return s_.h + (d * 2 + parity) * B_ * hs_; }
  float* c_buf(int64_t d) const { return s_.c + d * B_ * L_.Hp; }
  float* aux_buf(int64_t d) const { return s_.aux + d * B_ * L_.Hp; }
  float* rh_buf(int64_t d) const { return s_.rh + d * B_ * hs_; }
  float* xp_buf(int64_t d) const { return s_.xp + d * s_.block_steps * B_ * GC_; }
  int64_t time_of(int64_t d, int64_t step) const {
    return L_.dirs[d].reverse ? T_ - 1 - step : step;
  }
  bool valid(int64_t t, int64_t b) const { return !io_.mask || io_.mask[t * B_ + b]; }

  void init_states() {
    if (team_.id != 0) return;
    const int64_t D = L_.D();
    for (int64_t d = 0; d < D; ++d) {
      for (int64_t b = 0; b < B_; ++b) {
        float* h = h_buf(d, 0) + b * hs_;
        std::fill(h, h + hs_, 0.f);
        if (io_.h0) std::memcpy(h, io_.h0 + (d * B_ + b) * L_.Hout, L_.Hout * sizeof(float));
        if (CELL == CellKind::LSTM) {
          float* c = c_buf(d) + b * L_.Hp;
          std::fill(c, c + L_.Hp, 0.f);
          if (io_.c0) std::memcpy(c, io_.c0 + (d * B_ + b) * L_.H, L_.H * sizeof(float));
        }
      }
    }
  }

  void final_states() const {
    if (team_.id != 0) return;
    for (int64_t d = 0; d < L_.D(); ++d) {
      for (int64_t b = 0; b < B_; ++b) {
        if (io_.h_n) {
          std::memcpy(io_.h_n + (d * B_ + b) * L_.Hout, h_buf(d, T_ & 1) + b * hs_,
                      L_.Hout * sizeof(float));
        }
        if (CELL == CellKind::LSTM && io_.c_n) {
          std::memcpy(io_.c_n + (d * B_ + b) * L_.H, c_buf(d) + b * L_.Hp, L_.H * sizeof(float));
        }
      }
    }
  }

  // xp[d][(step - s0)*B + b] = x(time_of(d, step), b) · W_d + bias_d, for steps [s0, s1).
  void input_projection(int64_t s0, int64_t s1) const {
    const int64_t rows = (s1 - s0) * B_;
    const int64_t block = 16 * MR;
    const int64_t row_blocks = (rows + block - 1) / block;
    const int64_t per_dir = L_.chunks * row_blocks;
    int64_t begin, end;
    team_.range(L_.D() * per_dir, begin, end);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t d = item / per_dir;
      const int64_t u = (item % per_dir) / row_blocks;
      const int64_t rb = item % row_blocks;
      const PackedDirection& P = L_.dirs[d];
      float* xp = xp_buf(d);
      const int64_t r_end = std::min(rows, (rb + 1) * block);
      for (int64_t r0 = rb * block; r0 < r_end; r0 += MR) {
        const int n = static_cast<int>(std::min<int64_t>(MR, r_end - r0));
        const float* a[MR];
        for (int i = 0; i < n; ++i) {
          const int64_t r = r0 + i;
          a[i] = io_.x.row(time_of(d, s0 + r / B_), r % B_);
        }
        rows_kernel<NV>(n, L_.I, a, P.w.data() + u * L_.I * GU_, GU_, P.bias.data() + u * GU_,
                        xp + r0 * GC_ + u * GU_, GC_);
      }
    }
  }

  // Output of direction d at (t, b), columns [col0, col0 + n) of that direction.
  float* y_at(int64_t d, int64_t t, int64_t b, int64_t col0) const {
    return io_.y.row(t, b) + d * L_.Hout + col0;
  }

  void emit(int64_t d, int64_t t, int64_t b, int64_t col0, int64_t n, const float* h) const {
    std::memcpy(y_at(d, t, b, col0), h, n * sizeof(float));
  }

  // A masked step: the state is carried over; the output is zero or repeats the previous one.
  void carry(int64_t d, int64_t step, int64_t b, int64_t col0, int64_t width) const {
    const int64_t par = step & 1;
    std::memcpy(h_buf(d, par ^ 1) + b * hs_ + col0, h_buf(d, par) + b * hs_ + col0,
                width * sizeof(float));
    const int64_t n = std::min(width, L_.Hout - col0);
    float* out = y_at(d, time_of(d, step), b, col0);
    if (L_.masked_output == MaskedOutput::Hold && step > 0) {
      std::memcpy(out, y_at(d, time_of(d, step - 1), b, col0), n * sizeof(float));
    } else {
      std::fill(out, out + n, 0.f);
    }
  }

  template <typename ItemFn>
  void for_items(int64_t unit_chunks, ItemFn fn) const {
    const int64_t rows = rows_per_item(B_, L_.D() * unit_chunks, team_.size, MR);
    const int64_t row_blocks = (B_ + rows - 1) / rows;
    const int64_t per_dir = unit_chunks * row_blocks;
    int64_t begin, end;
    team_.range(L_.D() * per_dir, begin, end);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t d = item / per_dir;
      const int64_t u = (item % per_dir) / row_blocks;
      const int64_t m0 = (item % row_blocks) * rows;
      fn(d, u, m0, std::min(B_, m0 + rows));
    }
  }

  void recurrent_step(int64_t step, int64_t s0) const {
    const int64_t par = step & 1;
    const int64_t xrow0 = (step - s0) * B_;
    for_items(L_.chunks, [&](int64_t d, int64_t u, int64_t m0, int64_t m1) {
      gates_for_rows(d, u, m0, m1, step, par, xrow0);
    });
    team_.barrier();
    if (projected()) {
      for_items(L_.proj_chunks, [&](int64_t d, int64_t u, int64_t m0, int64_t m1) {
        project_rows(d, u, m0, m1, step, par);
      });
      team_.barrier();
    } else if (gru_two_phase()) {
      for_items(L_.chunks, [&](int64_t d, int64_t u, int64_t m0, int64_t m1) {
        gru_new_state_rows(d, u, m0, m1, step, par, xrow0);
      });
      team_.barrier();
    }
  }

  // First phase of a step for rows [m0, m1) and units chunk u of direction d.
  void gates_for_rows(int64_t d, int64_t u, int64_t m0, int64_t m1, int64_t step, int64_t par,
                      int64_t xrow0) const {
    const PackedDirection& P = L_.dirs[d];
    const int64_t t = time_of(d, step);
    const int64_t unit0 = u * L_.U;
    const int64_t units = std::min(L_.U, L_.H - unit0);
    const float* hp = h_buf(d, par);
    float* hn = h_buf(d, par ^ 1);
    const float* R = P.r.data() + u * L_.Hout * GU_;
    const float* xp = xp_buf(d) + xrow0 * GC_ + u * GU_;
    alignas(64) float rec[kMaxTileFloats];
    for (int64_t r0 = m0; r0 < m1; r0 += MR) {
      const int n = static_cast<int>(std::min<int64_t>(MR, m1 - r0));
      const float* a[MR];
      for (int i = 0; i < n; ++i) a[i] = hp + (r0 + i) * hs_;
      if (gru_two_phase()) {
        rows_kernel<2>(n, L_.Hout, a, R, GU_, nullptr, rec, GU_);
      } else {
        rows_kernel<NV>(n, L_.Hout, a, R, GU_, nullptr, rec, GU_);
      }
      for (int i = 0; i < n; ++i) {
        const int64_t b = r0 + i;
        const bool two_phase = projected() || gru_two_phase();
        if (!valid(t, b)) {
          if (!two_phase) carry(d, step, b, unit0, L_.U);
          continue;
        }
        const float* x = xp + b * GC_;
        const float* rr = rec + i * GU_;
        float* h_new = hn + b * hs_ + unit0;
        if constexpr (CELL == CellKind::LSTM) {
          float* c = c_buf(d) + b * L_.Hp + unit0;
          lstm_chunk(L_, P, unit0, x, rr, c, projected() ? aux_buf(d) + b * L_.Hp + unit0 : h_new);
        } else if constexpr (CELL == CellKind::GRU) {
          const float* h_old = hp + b * hs_ + unit0;
          if (gru_two_phase()) {
            gru_chunk_gates_rz(L_, P, x, rr, h_old, aux_buf(d) + b * L_.Hp + unit0,
                               rh_buf(d) + b * hs_ + unit0);
          } else {
            gru_chunk_reset_after(L_, P, P.bias_rn.data() + unit0, x, rr, h_old, h_new);
          }
        } else {
          rnn_chunk(L_, P, x, rr, h_new);
        }
        if (!two_phase) emit(d, t, b, unit0, units, h_new);
      }
    }
  }

  // LSTM projection: h' = proj · (o * h(c')) for output chunk u (Up outputs).
  void project_rows(int64_t d, int64_t u, int64_t m0, int64_t m1, int64_t step, int64_t par) const {
    const PackedDirection& P = L_.dirs[d];
    const int64_t t = time_of(d, step);
    const int64_t col0 = u * L_.Up;
    const int64_t cols = std::min(L_.Up, L_.P - col0);
    float* hn = h_buf(d, par ^ 1);
    for (int64_t r0 = m0; r0 < m1; r0 += MR) {
      const int n = static_cast<int>(std::min<int64_t>(MR, m1 - r0));
      const float* a[max_rows<4>()];
      for (int i = 0; i < n; ++i) a[i] = aux_buf(d) + (r0 + i) * L_.Hp;
      rows_kernel<4>(n, L_.H, a, P.proj.data() + u * L_.H * L_.Up, L_.Up, nullptr,
                     hn + r0 * hs_ + col0, hs_);
      for (int i = 0; i < n; ++i) {
        const int64_t b = r0 + i;
        if (valid(t, b)) {
          emit(d, t, b, col0, cols, hn + b * hs_ + col0);
        } else {
          carry(d, step, b, col0, L_.Up);
        }
      }
    }
  }

  // GRU with the reset before the recurrent product, second phase: n from Rn·(r*h).
  void gru_new_state_rows(int64_t d, int64_t u, int64_t m0, int64_t m1, int64_t step, int64_t par,
                          int64_t xrow0) const {
    const PackedDirection& P = L_.dirs[d];
    const int64_t t = time_of(d, step);
    const int64_t unit0 = u * L_.U;
    const int64_t units = std::min(L_.U, L_.H - unit0);
    const float* hp = h_buf(d, par);
    float* hn = h_buf(d, par ^ 1);
    const float* Rn = P.r.data() + u * L_.Hout * GU_ + 2 * L_.U;
    const float* xp = xp_buf(d) + xrow0 * GC_ + u * GU_ + 2 * L_.U;
    alignas(64) float rec[kMaxTileFloats];
    constexpr int MR1 = max_rows<1>();
    for (int64_t r0 = m0; r0 < m1; r0 += MR1) {
      const int n = static_cast<int>(std::min<int64_t>(MR1, m1 - r0));
      const float* a[MR1];
      for (int i = 0; i < n; ++i) a[i] = rh_buf(d) + (r0 + i) * hs_;
      rows_kernel<1>(n, L_.Hout, a, Rn, GU_, nullptr, rec, L_.U);
      for (int i = 0; i < n; ++i) {
        const int64_t b = r0 + i;
        if (!valid(t, b)) {
          carry(d, step, b, unit0, L_.U);
          continue;
        }
        float* h_new = hn + b * hs_ + unit0;
        gru_chunk_new_state(L_, P, xp + b * GC_, rec + i * L_.U, aux_buf(d) + b * L_.Hp + unit0,
                            hp + b * hs_ + unit0, h_new);
        emit(d, t, b, unit0, units, h_new);
      }
    }
  }
};

static void run_layer(const PackedLayer& layer, const LayerIO& io, const LayerScratch& scratch,
                      const Team& team) {
  switch (layer.cell) {
    case CellKind::LSTM:
      LayerRun<CellKind::LSTM>(layer, io, scratch, team).run();
      break;
    case CellKind::GRU:
      LayerRun<CellKind::GRU>(layer, io, scratch, team).run();
      break;
    case CellKind::RNN:
      LayerRun<CellKind::RNN>(layer, io, scratch, team).run();
      break;
  }
}

}  // namespace PYLSTM_ISA
}  // namespace pylstm
