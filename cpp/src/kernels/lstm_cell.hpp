// LSTM gate nonlinearities and state update for R batch rows and one chunk of U units.
// Inputs are the pre-activations of the chunk laid out [gate][U] (packing.hpp), canonical gate
// order i, f, g, o.
#pragma once

#include "kernels/cell_common.hpp"

namespace pylstm {
namespace PYLSTM_ISA {

// For each row r < R: xp[r]: input projection + bias [4][U]; rec[r]: recurrent product [4][U];
// c[r]: cell state [U] (updated in place); h_out[r]: o * h(c') [U]. unit0: index of the chunk's
// first unit (for peepholes). Several rows at once give the out-of-order core independent
// chains to overlap: one row's gates are a long chain of dependent operations (exp, reciprocal,
// then tanh of the new cell state), short of work to fill the vector units.
template <int R, typename ACTS>
PYLSTM_INLINE void lstm_rows(const PackedLayer& L, const PackedDirection& P, ACTS acts,
                             int64_t unit0, const float* const* xp, const float* const* rec,
                             float* const* c, float* const* h_out) {
  const int64_t U = L.U;
  const float* peep = P.peephole.empty() ? nullptr : P.peephole.data() + unit0;
  for (int64_t j = 0; j < U; j += VL) {
    vf c_prev[R], pi[R], pf[R], pg[R], po[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      c_prev[r] = load(c[r] + j);
      pi[r] = gate_input(xp[r], rec[r], 0 * U + j);
      pf[r] = gate_input(xp[r], rec[r], 1 * U + j);
      pg[r] = gate_input(xp[r], rec[r], 2 * U + j);
      po[r] = gate_input(xp[r], rec[r], 3 * U + j);
      if (peep) {
        pi[r] += load(peep + j) * c_prev[r];
        pf[r] += load(peep + L.Hp + j) * c_prev[r];
      }
    }
    vf c_new[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const vf i = acts.f(clipped(pi[r], L.clip));
      const vf f = L.input_forget ? 1.0f - i : acts.f(clipped(pf[r], L.clip));
      const vf g = acts.g(clipped(pg[r], L.clip));
      c_new[r] = f * c_prev[r] + i * g;
      if (peep) po[r] += load(peep + 2 * L.Hp + j) * c_new[r];
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const vf o = acts.f(clipped(po[r], L.clip));
      store(c[r] + j, c_new[r]);
      // C_t is not clipped (ONNX Runtime clips gate inputs only)
      store(h_out[r] + j, o * acts.h(c_new[r]));
    }
  }
}

}  // namespace PYLSTM_ISA
}  // namespace pylstm
