// Plain (Elman) RNN update for one batch row and one chunk of U units: h' = f(xp + rec).
#pragma once

#include "kernels/cell_common.hpp"

namespace pylstm {
namespace PYLSTM_ISA {

static inline void rnn_chunk(const PackedLayer& L, const PackedDirection& P, const float* xp,
                             const float* rec, float* h_out) {
  for (int64_t j = 0; j < L.U; j += VL) {
    store(h_out + j, apply(P.act[0], clipped(gate_input(xp, rec, j), L.clip)));
  }
}

}  // namespace PYLSTM_ISA
}  // namespace pylstm
