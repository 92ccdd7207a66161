// LSTM gate nonlinearities and state update for one batch row and one chunk of U units.
// Inputs are the pre-activations of the chunk laid out [gate][U] (packing.hpp), canonical gate
// order i, f, g, o.
#pragma once

#include "kernels/cell_common.hpp"

namespace pylstm {
namespace PYLSTM_ISA {

// xp: input projection + bias [4][U]; rec: recurrent product [4][U]; c: cell state [U] (updated
// in place); h_out: o * h(c') [U]. unit0: index of the chunk's first unit (for peepholes).
template <typename ACTS>
PYLSTM_INLINE void lstm_chunk(const PackedLayer& L, const PackedDirection& P, ACTS acts,
                              int64_t unit0, const float* xp, const float* rec, float* c,
                              float* h_out) {
  const int64_t U = L.U;
  const float* peep = P.peephole.empty() ? nullptr : P.peephole.data() + unit0;
  for (int64_t j = 0; j < U; j += VL) {
    const vf c_prev = load(c + j);
    vf pi = gate_input(xp, rec, 0 * U + j);
    vf pf = gate_input(xp, rec, 1 * U + j);
    vf pg = gate_input(xp, rec, 2 * U + j);
    vf po = gate_input(xp, rec, 3 * U + j);
    if (peep) {
      pi += load(peep + j) * c_prev;
      pf += load(peep + L.Hp + j) * c_prev;
    }
    const vf i = acts.f(clipped(pi, L.clip));
    const vf f = L.input_forget ? 1.0f - i : acts.f(clipped(pf, L.clip));
    const vf g = acts.g(clipped(pg, L.clip));
    const vf c_new = f * c_prev + i * g;
    if (peep) po += load(peep + 2 * L.Hp + j) * c_new;
    const vf o = acts.f(clipped(po, L.clip));
    store(c + j, c_new);
    store(h_out + j,
          o * acts.h(c_new));  // C_t is not clipped (ONNX Runtime clips gate inputs only)
  }
}

}  // namespace PYLSTM_ISA
}  // namespace pylstm
