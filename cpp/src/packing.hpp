// Weights converted once, at load, from the canonical layout (network.hpp) into the layout the
// CPU kernels stream: hidden units are cut into chunks of U units, and for each chunk the
// columns of all gates sit side by side, k-major:
//
//     panel(chunk u)[k][g*U + j] = W[g*H + u*U + j][k]      (zero where u*U + j >= H)
//
// so one micro-kernel call yields every gate of U units for a few batch rows, and the gate
// nonlinearities run on it while it is still in registers/L1. The same layout is used for the
// input projection (W, all time steps in one GEMM) and the recurrent step (R).
//
// Weights may be stored in reduced precision (opt-in): bfloat16 (the top 16 bits of the float),
// or int8 with one scale per panel column (= per row of the canonical W: per gate and unit),
// q = round(w / s), s = max|w| / 127. Kernels widen them to float and accumulate in float.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "aligned.hpp"
#include "pylstm/network.hpp"

namespace pylstm {

enum class Precision { F32, BF16, I8 };

// Parses "fp32"/"float32", "bf16"/"bfloat16", "int8"; throws std::invalid_argument.
Precision parse_precision(const std::string& name);

// A bfloat16 value: the high half of a float32.
struct bf16_t {
  uint16_t bits;
};

// Packed panels of one weight matrix in the layer's storage precision.
struct WeightPanels {
  AlignedFloats f32;
  std::vector<bf16_t, AlignedAllocator<bf16_t>> bf16;
  std::vector<int8_t, AlignedAllocator<int8_t>> i8;
  AlignedFloats scale;  // int8 only: one per panel column, chunks × [cols]

  const float* data(float*) const { return f32.data(); }
  const bf16_t* data(bf16_t*) const { return bf16.data(); }
  const int8_t* data(int8_t*) const { return i8.data(); }
  // Per-column scales (int8), or nullptr.
  const float* scales() const { return scale.empty() ? nullptr : scale.data(); }
};

struct PackedDirection {
  bool reverse = false;
  std::array<Activation, 3> act{};
  WeightPanels w;          // chunks × [I][G*U]
  WeightPanels r;          // chunks × [Hout][G*U]
  AlignedFloats bias;      // chunks × [G*U]: input + recurrent bias, except GRU n (see bias_rn)
  AlignedFloats bias_rn;   // [Hp] GRU linear_before_reset: recurrent bias of n (inside r*(...))
  AlignedFloats peephole;  // [3][Hp] i, f, o; empty when the layer has none
  WeightPanels proj;       // proj_chunks × [H][Up]
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
  Precision precision = Precision::F32;
  std::vector<PackedDirection> dirs;

  int64_t D() const { return static_cast<int64_t>(dirs.size()); }
  int64_t gate_cols() const { return G * Hp; }  // columns of the pre-activation rows
};

// vector_floats: floats per SIMD vector of the kernels that will run this layer.
PackedLayer pack_layer(const LayerDesc& layer, int vector_floats, Precision precision);

// The canonical layer back from its panels: weights widened to float32 (int8: q * scale, which
// quantises back to the same q and scale), the folded bias as bias_w with bias_r zeros (but for
// the GRU linear_before_reset recurrent bias of n). pack_layer of the result with the same
// precision and vector width gives the same panels.
LayerDesc unpack_layer(const PackedLayer& layer);

}  // namespace pylstm
