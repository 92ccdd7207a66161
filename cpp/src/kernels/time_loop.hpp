// The time loop for one layer, run by every member of a thread team (thread_pool.hpp):
//
//   for each block of time steps:
//       input projection of the block for every direction: one GEMM, all threads   (barrier)
//       [kJoinPieces pieces, a barrier after each, in a job that started on its caller alone]
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
#include "kernels/panel_sweep.hpp"
#include "kernels/rnn_cell.hpp"

namespace pylstm {
namespace PYLSTM_ISA {

// LSTM rows whose gates are computed together (lstm_cell.hpp): 2 measured as fast as 3 or 4.
constexpr int kGateRows = 2;
// Pieces of a block's input projection in a job that started on its caller alone (run()).
constexpr int kJoinPieces = 8;

// Rows of the batch per work item: the whole batch when there are enough (direction, chunk)
// items to keep every thread busy, else the batch is cut so that there are.
inline int64_t rows_per_item(int64_t batch, int64_t unit_items, int team_size, int tile_rows) {
  if (unit_items >= 2 * team_size || batch <= tile_rows) return std::max<int64_t>(batch, 1);
  const int64_t blocks = (2 * team_size + unit_items - 1) / unit_items;
  int64_t rows = (batch + blocks - 1) / blocks;
  rows = (rows + tile_rows - 1) / tile_rows * tile_rows;
  return std::max<int64_t>(rows, tile_rows);
}

template <CellKind CELL, typename WT>
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
        hs_(state_stride(L)) {}

  void run() {
    init_states();
    team_.barrier();
    // A job that started on its caller alone projects in kJoinPieces pieces (of the weights'
    // columns: each piece reads its own), with a barrier after each, where workers that woke
    // meanwhile join (a whole block would leave them idle until it is done). Every member
    // knows started_alone, so all pass the same barriers.
    const int pieces = team_.started_alone ? kJoinPieces : 1;
    for (int64_t s0 = 0; s0 < T_; s0 += s_.block_steps) {
      const int64_t s1 = std::min(T_, s0 + s_.block_steps);
      for (int piece = 0; piece < pieces; ++piece) {
        input_projection(s0, s1, piece, pieces);
        team_.barrier();
      }
      for (int64_t step = s0; step < s1; ++step) recurrent_step(step, s0);
    }
    final_states();
  }

 private:
  const PackedLayer& L_;
  const LayerIO& io_;
  const LayerScratch& s_;
  const Team& team_;
  const int64_t T_, B_, GU_, hs_;

  bool projected() const { return CELL == CellKind::LSTM && L_.P > 0; }
  bool gru_two_phase() const { return CELL == CellKind::GRU && !L_.linear_before_reset; }

  float* h_buf(int64_t d, int64_t parity) const { return s_.h + (d * 2 + parity) * B_ * hs_; }
  float* c_buf(int64_t d) const { return s_.c + d * B_ * L_.Hp; }
  float* aux_buf(int64_t d) const { return s_.aux + d * B_ * L_.Hp; }
  float* rh_buf(int64_t d) const { return s_.rh + d * B_ * hs_; }
  // Input projections, chunk-major: [D][chunks][block_steps * B][G*U], so that the rows a step
  // reads for one chunk are contiguous (row-major [row][G*Hp] would put them G*Hp apart).
  float* xp_chunk(int64_t d, int64_t u) const {
    return s_.xp + (d * L_.chunks + u) * s_.block_steps * B_ * GU_;
  }
  int64_t time_of(int64_t d, int64_t step) const {
    return L_.dirs[d].reverse ? T_ - 1 - step : step;
  }
  bool valid(int64_t t, int64_t b) const { return !io_.mask || io_.mask[t * B_ + b]; }
  // The state this step starts from is all zeros (the first step, no h0): its recurrent
  // products are exactly zero (the weights are finite: network.cpp refuses others, as
  // 0 * inf = NaN), and a one-step call from a zero state reads only the input weights.
  bool from_zero_state(int64_t step) const { return step == 0 && !io_.h0; }

  void init_states() {
    if (!team_.leads()) return;
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
    if (!team_.leads()) return;
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

  // This member's share of piece `piece` of `pieces` of the items [0, n).
  void piece_range(int64_t n, int piece, int pieces, int64_t& begin, int64_t& end) const {
    const int64_t lo = n * piece / pieces, hi = n * (piece + 1) / pieces;
    team_.range(hi - lo, begin, end);
    begin += lo;
    end += lo;
  }

  // xp[d][(step - s0)*B + b] = x(time_of(d, step), b) · W_d + bias_d, for steps [s0, s1):
  // piece `piece` of `pieces` of its (direction, chunk, row block) items.
  void input_projection(int64_t s0, int64_t s1, int piece, int pieces) const {
    const int64_t rows = (s1 - s0) * B_;
    if (rows == 0) return;  // an empty batch
    // Panels of every chunk, with their bias, writing the chunk-major xp (chunks one xp chunk
    // apart, so that several chunks can share a kernel call when there are very few rows).
    auto panels = [&](int64_t d) {
      const PackedDirection& P = L_.dirs[d];
      PanelArgs<WT> p = panels_of<WT>(P.w, 0, L_.I * GU_, GU_);
      p.bias = P.bias.data();
      p.bias_stride = GU_;
      p.c = xp_chunk(d, 0);
      p.ldc = GU_;
      p.c_stride = xp_chunk(d, 1) - xp_chunk(d, 0);
      return p;
    };
    auto row_ptr = [&](int64_t d, int64_t r) { return io_.x.row(time_of(d, s0 + r / B_), r % B_); };
    if (rows <= max_multi_panel_rows<NV>()) {  // e.g. one streaming step: chunks side by side
      const float* a[max_multi_panel_rows<NV>()];
      int64_t begin, end;
      piece_range(L_.D() * L_.chunks, piece, pieces, begin, end);
      for (int64_t item = begin; item < end;) {
        const int64_t d = item / L_.chunks, u = item % L_.chunks;
        for (int64_t r = 0; r < rows; ++r) a[r] = row_ptr(d, r);
        const int64_t run = std::min(end - item, L_.chunks - u);
        item += multi_panel_kernel<NV>(static_cast<int>(rows), static_cast<int>(run), L_.I,
                                       ListedRows{a}, panels(d).panel(u));
      }
      return;
    }
    const int64_t block = 16 * MR;
    const int64_t row_blocks = (rows + block - 1) / block;
    const int64_t per_dir = L_.chunks * row_blocks;
    int64_t begin, end;
    piece_range(L_.D() * per_dir, piece, pieces, begin, end);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t d = item / per_dir;
      const int64_t u = (item % per_dir) / row_blocks;
      const int64_t rb = item % row_blocks;
      const PanelArgs<WT> chunk = panels(d).panel(u);
      const int64_t r_end = std::min(rows, (rb + 1) * block);
      for (int64_t r0 = rb * block; r0 < r_end; r0 += MR) {
        const int n = static_cast<int>(std::min<int64_t>(MR, r_end - r0));
        const float* a[MR];
        for (int i = 0; i < n; ++i) a[i] = row_ptr(d, r0 + i);
        PanelArgs<WT> p = chunk;
        p.c += r0 * GU_;
        rows_kernel<NV>(n, L_.I, ListedRows{a}, p);
      }
    }
  }

  // Output of direction d at (t, b), columns [col0, col0 + n) of that direction.
  float* y_at(int64_t d, int64_t t, int64_t b, int64_t col0) const {
    return io_.y.row(t, b) + d * L_.Hout + col0;
  }

  // Writes n outputs of direction d at (t, b); whole vectors inline (a libc memcpy call per
  // chunk and row costs more than the copy).
  void emit(int64_t d, int64_t t, int64_t b, int64_t col0, int64_t n, const float* h) const {
    float* out = y_at(d, t, b, col0);
    int64_t j = 0;
    for (; j + VL <= n; j += VL) store(out + j, load(h + j));
    for (; j < n; ++j) out[j] = h[j];
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

  // Calls fn(d, u0, u1, m0, m1) for this member's share of (direction, chunk, row block)
  // items, merged into runs of consecutive chunks of one direction and row block. Items are
  // ordered chunk-major, row blocks innermost, so a member keeps the same weight slice;
  // `backward` visits them last to first (see sweep_chunks).
  template <typename RunFn>
  void for_runs(int64_t unit_chunks, bool backward, RunFn fn) const {
    const int64_t rows = rows_per_item(B_, L_.D() * unit_chunks, team_.size, MR);
    const int64_t row_blocks = (B_ + rows - 1) / rows;
    const int64_t per_dir = unit_chunks * row_blocks;
    int64_t begin, end;
    team_.range(L_.D() * per_dir, begin, end);
    auto run = [&](int64_t item, int64_t chunks) {  // `chunks` items from `item`
      const int64_t d = item / per_dir;
      const int64_t u = (item % per_dir) / row_blocks;
      const int64_t rb = item % row_blocks;
      fn(d, u, u + chunks, rb * rows, std::min(B_, (rb + 1) * rows));
    };
    // A run extends over the following (backward: preceding) chunks of its direction when
    // there is one row block.
    for (int64_t left = end - begin, n; left > 0; left -= n) {
      const int64_t edge = backward ? begin + left - 1 : end - left;  // first visited
      const int64_t u = (edge % per_dir) / row_blocks;
      n = row_blocks == 1 ? std::min(backward ? u + 1 : unit_chunks - u, left) : 1;
      run(backward ? edge - n + 1 : edge, n);
    }
  }

  // Odd steps sweep the weights backward (see sweep_chunks).
  static bool backward(int64_t step) { return step & 1; }

  void recurrent_step(int64_t step, int64_t s0) const {
    const int64_t par = step & 1;
    const int64_t xrow0 = (step - s0) * B_;
    for_runs(L_.chunks, backward(step),
             [&](int64_t d, int64_t u0, int64_t u1, int64_t m0, int64_t m1) {
               gates_for_rows(d, u0, u1, m0, m1, step, par, xrow0);
             });
    team_.barrier();
    if (projected()) {
      for_runs(L_.proj_chunks, backward(step),
               [&](int64_t d, int64_t u0, int64_t u1, int64_t m0, int64_t m1) {
                 project_rows(d, u0, u1, m0, m1, step, par);
               });
      team_.barrier();
    } else if (gru_two_phase()) {
      for_runs(L_.chunks, backward(step),
               [&](int64_t d, int64_t u0, int64_t u1, int64_t m0, int64_t m1) {
                 gru_new_state_rows(d, u0, u1, m0, m1, step, par, xrow0);
               });
      team_.barrier();
    }
  }

  // First phase of a step: chunks [u0, u1) of direction d, batch rows [m0, m1).
  void gates_for_rows(int64_t d, int64_t u0, int64_t u1, int64_t m0, int64_t m1, int64_t step,
                      int64_t par, int64_t xrow0) const {
    const PackedDirection& P = L_.dirs[d];
    const float* hp = h_buf(d, par);
    // Half of h_prev was just written by other threads: ask for its lines at once rather than
    // missing on them one by one inside the product (up to 32 KB: what L1 can hold meanwhile).
    const int64_t lines_per_row = (L_.Hout + 15) / 16;
    const int64_t ahead = std::max<int64_t>(1, 512 / lines_per_row);
    for (int64_t b = m0; b < std::min(m1, m0 + ahead); ++b) {
      for (int64_t k = 0; k < L_.Hout; k += 16) __builtin_prefetch(hp + b * hs_ + k);
    }
    with_acts(CELL, P,
              [&](auto acts) { gates_with(acts, P, u0, u1, m0, m1, step, par, xrow0, d); });
  }

  template <typename ACTS>
  void gates_with(ACTS acts, const PackedDirection& P, int64_t u0, int64_t u1, int64_t m0,
                  int64_t m1, int64_t step, int64_t par, int64_t xrow0, int64_t d) const {
    const int64_t t = time_of(d, step);
    const float* hp = h_buf(d, par);
    float* hn = h_buf(d, par ^ 1);
    const bool two_phase = projected() || gru_two_phase();
    const StridedRows a{hp + m0 * hs_, hs_};
    auto row = [&](int64_t u, int64_t i, const float* rr) {
      const int64_t b = m0 + i;
      const int64_t unit0 = u * L_.U;
      if (!valid(t, b)) {
        if (!two_phase) carry(d, step, b, unit0, L_.U);
        return;
      }
      const float* x = xp_chunk(d, u) + (xrow0 + b) * GU_;
      float* h_new = hn + b * hs_ + unit0;
      if constexpr (CELL == CellKind::LSTM) {
        lstm_group<1>(acts, P, d, u, b, xrow0, hn, &rr);
      } else if constexpr (CELL == CellKind::GRU) {
        const float* h_old = hp + b * hs_ + unit0;
        if (gru_two_phase()) {
          gru_chunk_gates_rz(L_, acts, x, rr, h_old, aux_buf(d) + b * L_.Hp + unit0,
                             rh_buf(d) + b * hs_ + unit0);
        } else {
          gru_chunk_reset_after(L_, acts, P.bias_rn.data() + unit0, x, rr, h_old, h_new);
        }
      } else {
        rnn_chunk(L_, acts, x, rr, h_new);
      }
      if (!two_phase) emit(d, t, b, unit0, std::min(L_.U, L_.H - unit0), h_new);
    };
    // LSTM: kGateRows valid rows at a time (see lstm_rows)
    auto rows = [&](int64_t u, int64_t i0, int64_t n, const float* rr) {
      constexpr int64_t W = NV * VL;
      int64_t i = 0;
      if constexpr (CELL == CellKind::LSTM) {
        constexpr int R = kGateRows;
        for (; i + R <= n; i += R) {
          const int64_t b0 = m0 + i0 + i;
          bool all_valid = true;
          for (int k = 0; k < R; ++k) all_valid = all_valid && valid(t, b0 + k);
          if (!all_valid) {
            for (int k = 0; k < R; ++k) row(u, i0 + i + k, rr + (i + k) * W);
            continue;
          }
          const float* rec[R];
          for (int k = 0; k < R; ++k) rec[k] = rr + (i + k) * W;
          lstm_group<R>(acts, P, d, u, b0, xrow0, hn, rec);
          if (!two_phase) {
            for (int k = 0; k < R; ++k) {
              const int64_t unit0 = u * L_.U;
              emit(d, t, b0 + k, unit0, std::min(L_.U, L_.H - unit0), hn + (b0 + k) * hs_ + unit0);
            }
          }
        }
      }
      for (; i < n; ++i) row(u, i0 + i, rr + i * W);
    };
    const PanelArgs<WT> r = panels_of<WT>(P.r, 0, L_.Hout * GU_, GU_);
    if (from_zero_state(step)) {
      if (gru_two_phase()) {
        zero_chunks<2>(u0, u1, m1 - m0, each_row<2>(row));
      } else {
        zero_chunks<NV>(u0, u1, m1 - m0, rows);
      }
    } else if (gru_two_phase()) {  // r and z only: n needs r*h first
      sweep_chunks<2>(u0, u1, m1 - m0, a, L_.Hout, r, each_row<2>(row), backward(step));
    } else {
      sweep_chunks<NV>(u0, u1, m1 - m0, a, L_.Hout, r, rows, backward(step));
    }
  }

  // LSTM gates of chunk u for R consecutive valid rows from b0 (products rec[k]): updates c and
  // writes o * h(c') to the new state, or with a projection to the buffer it projects from.
  template <int R, typename ACTS>
  void lstm_group(ACTS acts, const PackedDirection& P, int64_t d, int64_t u, int64_t b0,
                  int64_t xrow0, float* hn, const float* const* rec) const {
    const int64_t unit0 = u * L_.U;
    const float* x[R];
    float* c[R];
    float* h_out[R];
    for (int k = 0; k < R; ++k) {
      const int64_t b = b0 + k;
      x[k] = xp_chunk(d, u) + (xrow0 + b) * GU_;
      c[k] = c_buf(d) + b * L_.Hp + unit0;
      h_out[k] = projected() ? aux_buf(d) + b * L_.Hp + unit0 : hn + b * hs_ + unit0;
    }
    lstm_rows<R>(L_, P, acts, unit0, x, rec, c, h_out);
  }

  // LSTM projection: h' = proj · (o * h(c')) for output chunks [u0, u1) (Up outputs each).
  void project_rows(int64_t d, int64_t u0, int64_t u1, int64_t m0, int64_t m1, int64_t step,
                    int64_t par) const {
    const PackedDirection& P = L_.dirs[d];
    const int64_t t = time_of(d, step);
    float* hn = h_buf(d, par ^ 1);
    const StridedRows a{aux_buf(d) + m0 * L_.Hp, L_.Hp};
    sweep_chunks<4>(u0, u1, m1 - m0, a, L_.H, panels_of<WT>(P.proj, 0, L_.H * L_.Up, L_.Up),
                    each_row<4>([&](int64_t u, int64_t i, const float* hr) {
                      const int64_t b = m0 + i, col0 = u * L_.Up;
                      if (!valid(t, b)) {
                        carry(d, step, b, col0, L_.Up);
                        return;
                      }
                      std::memcpy(hn + b * hs_ + col0, hr, L_.Up * sizeof(float));
                      emit(d, t, b, col0, std::min(L_.Up, L_.P - col0), hr);
                    }),
                    backward(step));
  }

  // GRU with the reset before the recurrent product, second phase: n from Rn·(r*h).
  void gru_new_state_rows(int64_t d, int64_t u0, int64_t u1, int64_t m0, int64_t m1, int64_t step,
                          int64_t par, int64_t xrow0) const {
    const PackedDirection& P = L_.dirs[d];
    const int64_t t = time_of(d, step);
    const float* hp = h_buf(d, par);
    float* hn = h_buf(d, par ^ 1);
    const StridedRows a{rh_buf(d) + m0 * hs_, hs_};
    with_acts(CELL, P, [&](auto acts) {
      auto row = each_row<1>([&](int64_t u, int64_t i, const float* rn) {
        const int64_t b = m0 + i, unit0 = u * L_.U;
        if (!valid(t, b)) {
          carry(d, step, b, unit0, L_.U);
          return;
        }
        float* h_new = hn + b * hs_ + unit0;
        gru_chunk_new_state(L_, acts, xp_chunk(d, u) + (xrow0 + b) * GU_ + 2 * L_.U, rn,
                            aux_buf(d) + b * L_.Hp + unit0, hp + b * hs_ + unit0, h_new);
        emit(d, t, b, unit0, std::min(L_.U, L_.H - unit0), h_new);
      });
      if (from_zero_state(step)) {  // r * h = 0
        zero_chunks<1>(u0, u1, m1 - m0, row);
      } else {
        sweep_chunks<1>(u0, u1, m1 - m0, a, L_.Hout,
                        panels_of<WT>(P.r, 2 * L_.U, L_.Hout * GU_, GU_), row, backward(step));
      }
    });
  }
};

template <typename WT>
static void run_layer_as(const PackedLayer& layer, const LayerIO& io, const LayerScratch& scratch,
                         const Team& team) {
  switch (layer.cell) {
    case CellKind::LSTM:
      LayerRun<CellKind::LSTM, WT>(layer, io, scratch, team).run();
      break;
    case CellKind::GRU:
      LayerRun<CellKind::GRU, WT>(layer, io, scratch, team).run();
      break;
    case CellKind::RNN:
      LayerRun<CellKind::RNN, WT>(layer, io, scratch, team).run();
      break;
  }
}

static void run_layer(const PackedLayer& layer, const LayerIO& io, const LayerScratch& scratch,
                      const Team& team) {
  switch (layer.precision) {
    case Precision::F32:
      run_layer_as<float>(layer, io, scratch, team);
      break;
    case Precision::BF16:
      run_layer_as<bf16_t>(layer, io, scratch, team);
      break;
    case Precision::I8:
      run_layer_as<int8_t>(layer, io, scratch, team);
      break;
  }
}

}  // namespace PYLSTM_ISA
}  // namespace pylstm
