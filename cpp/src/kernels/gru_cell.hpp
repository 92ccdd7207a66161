// GRU gate nonlinearities and state update for one batch row and one chunk of U units.
// Canonical gate order r, z, n; pre-activations laid out [gate][U] (packing.hpp).
#pragma once

#include "kernels/cell_common.hpp"

namespace pylstm {
namespace PYLSTM_ISA {

// Reset applied after the recurrent product (PyTorch; Keras reset_after=True; ONNX
// linear_before_reset=1): n = g(xn + r * (Rn h + brn)). bias_rn: [U] for this chunk.
template <typename ACTS>
PYLSTM_INLINE void gru_chunk_reset_after(const PackedLayer& L, ACTS acts, const float* bias_rn,
                                         const float* xp, const float* rec, const float* h_prev,
                                         float* h_out) {
  const int64_t U = L.U;
  for (int64_t j = 0; j < U; j += VL) {
    const vf r = acts.f(clipped(gate_input(xp, rec, 0 * U + j), L.clip));
    const vf z = acts.f(clipped(gate_input(xp, rec, 1 * U + j), L.clip));
    const vf pn = load(xp + 2 * U + j) + r * (load(rec + 2 * U + j) + load(bias_rn + j));
    const vf n = acts.g(clipped(pn, L.clip));
    store(h_out + j, (1.0f - z) * n + z * load(h_prev + j));
  }
}

// Reset applied before the recurrent product (ONNX default, Keras reset_after=False), first
// half: r and z from the r,z columns ([2][U] of xp and rec); stores z and r*h for the second.
template <typename ACTS>
PYLSTM_INLINE void gru_chunk_gates_rz(const PackedLayer& L, ACTS acts, const float* xp,
                                      const float* rec, const float* h_prev, float* z_out,
                                      float* rh_out) {
  const int64_t U = L.U;
  for (int64_t j = 0; j < U; j += VL) {
    const vf r = acts.f(clipped(gate_input(xp, rec, 0 * U + j), L.clip));
    const vf z = acts.f(clipped(gate_input(xp, rec, 1 * U + j), L.clip));
    store(z_out + j, z);
    store(rh_out + j, r * load(h_prev + j));
  }
}

// Second half: n = g(xn + Rn (r*h)) with rec_n = Rn (r*h) [U]; h' = (1 - z) n + z h.
template <typename ACTS>
PYLSTM_INLINE void gru_chunk_new_state(const PackedLayer& L, ACTS acts, const float* xp_n,
                                       const float* rec_n, const float* z_in, const float* h_prev,
                                       float* h_out) {
  for (int64_t j = 0; j < L.U; j += VL) {
    const vf n = acts.g(clipped(load(xp_n + j) + load(rec_n + j), L.clip));
    const vf z = load(z_in + j);
    store(h_out + j, (1.0f - z) * n + z * load(h_prev + j));
  }
}

}  // namespace PYLSTM_ISA
}  // namespace pylstm
