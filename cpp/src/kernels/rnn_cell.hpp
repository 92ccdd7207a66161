// Plain (Elman) RNN update for one batch row and one chunk of U units: h' = f(xp + rec).
#pragma once

#include "kernels/cell_common.hpp"

namespace pylstm {
namespace PYLSTM_ISA {

template <typename ACTS>
PYLSTM_INLINE void rnn_chunk(const PackedLayer& L, ACTS acts, const float* xp, const float* rec,
                             float* h_out) {
  for (int64_t j = 0; j < L.U; j += VL) {
    store(h_out + j, acts.f(clipped(gate_input(xp, rec, j), L.clip)));
  }
}

}  // namespace PYLSTM_ISA
}  // namespace pylstm
