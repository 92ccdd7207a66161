// Helpers shared by the cell kernels (lstm_cell.hpp, gru_cell.hpp, rnn_cell.hpp).
#pragma once

#include "kernels/activations.hpp"
#include "packing.hpp"

namespace pylstm {
namespace PYLSTM_ISA {

// ONNX `clip`: bounds every activation input to [-clip, clip]; clip <= 0 means no clipping.
// NaN stays NaN (bounds first, see vmin/vmax), as in ONNX Runtime.
PYLSTM_INLINE vf clipped(vf x, float clip) {
  return clip > 0.f ? vmin(splat(clip), vmax(splat(-clip), x)) : x;
}

PYLSTM_INLINE vf gate_input(const float* xp, const float* rec, int64_t offset) {
  return load(xp + offset) + load(rec + offset);
}

// A direction's activations as callables: f (gates), g (candidate), h (LSTM output). The
// PyTorch defaults are called directly and inlined; anything else goes through apply().
struct SigmoidFn {
  __attribute__((always_inline)) vf operator()(vf x) const { return v_sigmoid(x); }
};
struct TanhFn {
  __attribute__((always_inline)) vf operator()(vf x) const { return v_tanh(x); }
};
struct AnyFn {
  Activation a;
  vf operator()(vf x) const { return apply(a, x); }
};
template <typename F, typename G, typename H>
struct Acts {
  F f;
  G g;
  H h;
};
using DefaultActs = Acts<SigmoidFn, TanhFn, TanhFn>;
using AnyActs = Acts<AnyFn, AnyFn, AnyFn>;
using TanhActs = Acts<TanhFn, TanhFn, TanhFn>;  // RNN with tanh

inline bool is_plain(const Activation& a, ActKind kind) { return a.kind == kind; }

// Calls fn(acts) with the fastest Acts that computes this direction's activations.
template <typename Fn>
inline void with_acts(CellKind cell, const PackedDirection& P, Fn fn) {
  const bool sig = is_plain(P.act[0], ActKind::Sigmoid);
  const bool tanh_g = is_plain(P.act[1], ActKind::Tanh);
  const bool tanh_h = is_plain(P.act[2], ActKind::Tanh);
  if (cell == CellKind::LSTM && sig && tanh_g && tanh_h) return fn(DefaultActs{});
  if (cell == CellKind::GRU && sig && tanh_g) return fn(DefaultActs{});
  if (cell == CellKind::RNN && is_plain(P.act[0], ActKind::Tanh)) return fn(TanhActs{});
  fn(AnyActs{{P.act[0]}, {P.act[1]}, {P.act[2]}});
}

}  // namespace PYLSTM_ISA
}  // namespace pylstm
