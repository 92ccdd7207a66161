// Weights converted once, at load, from the canonical layout (network.hpp) into the layout the
// CPU kernels stream: hidden units are cut into chunks of U units, and for each chunk the
// columns of all gates sit side by side, k-major:
//
//     panel(chunk u)[k][g*U + j] = W[g*H + u*U + j][k]      (zero where u*U + j >= H)
//
// so one micro-kernel call yields every gate of U units for a few batch rows, and the gate
// nonlinearities run on it while it is still in registers/L1. The same layout is used for the
// input projection (W, all time steps in one GEMM) and the recurrent step (R).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "aligned.hpp"
#include "pylstm/network.hpp"

namespace pylstm {

struct PackedDirection {
  bool reverse = false;
  std::array<Activation, 3> act{};
  AlignedFloats w;         // chunks × [I][G*U]
  AlignedFloats r;         // chunks × [Hout][G*U]
  AlignedFloats bias;      // chunks × [G*U]: input + recurrent bias, except GRU n (see bias_rn)
  AlignedFloats bias_rn;   // [Hp] GRU linear_before_reset: recurrent bias of n (inside r*(...))
  AlignedFloats peephole;  // [3][Hp] i, f, o; empty when the layer has none
  AlignedFloats proj;      // proj_chunks × [H][Up]
};

struct PackedLayer {
  CellKind cell = CellKind::LSTM;
  int G = 4;
  int64_t I = 0, H = 0, P = 0, Hout = 0;
  int64_t U = 0, chunks = 0, Hp = 0;  // units per chunk, chunk count, padded H
  int64_t Up = 0, proj_chunks = 0;    // projection: outputs per chunk, chunk count
  float clip = 0.f;
  bool input_forget = false;
  bool linear_before_reset = true;
  MaskedOutput masked_output = MaskedOutput::Zero;
  std::vector<PackedDirection> dirs;

  int64_t D() const { return static_cast<int64_t>(dirs.size()); }
  int64_t gate_cols() const { return G * Hp; }  // columns of the pre-activation rows
};

// vector_floats: floats per SIMD vector of the kernels that will run this layer.
PackedLayer pack_layer(const LayerDesc& layer, int vector_floats);

}  // namespace pylstm
