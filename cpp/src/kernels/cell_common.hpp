// Helpers shared by the cell kernels (lstm_cell.hpp, gru_cell.hpp, rnn_cell.hpp).
#pragma once

#include "kernels/activations.hpp"
#include "packing.hpp"

namespace pylstm {
namespace PYLSTM_ISA {

// ONNX `clip`: bounds every activation input to [-clip, clip]; clip <= 0 means no clipping.
static inline vf clipped(vf x, float clip) {
  return clip > 0.f ? vmin(vmax(x, splat(-clip)), splat(clip)) : x;
}

static inline vf gate_input(const float* xp, const float* rec, int64_t offset) {
  return load(xp + offset) + load(rec + offset);
}

}  // namespace PYLSTM_ISA
}  // namespace pylstm
