// Plain structs handed to the CUDA kernels by value: one layer's weights and options, the
// buffers of a call, and the plan of the persistent kernel. Shared by host code (g++) and
// kernels (nvcc), so: no CUDA types, only pointers and numbers.
//
// Device layouts (row-major; "CT" is the compute type: float, half or bfloat16):
//   w        [D][G*H][ldw]  CT   canonical w (network.hpp), rows padded with zeros to ldw
//   r        [D][G*H][ldr]  CT   canonical r, ldr >= Hout
//   proj     [D][P][ldp]    CT   LSTM projection, ldp >= H
//   bias     [D][G*H]       f32  input + recurrent bias, except GRU n with linear_before_reset,
//                                whose recurrent part is bias_rn [D][H] (inside r * (...))
//   peephole [D][3][H]      f32  i, f, o (or none)
//   xp       [D][xp_steps][B][G*H] f32   x·wᵀ of the block of steps being run (no bias)
//   h        [2][D][B][Hout] f32  state, ping-pong: step s reads parity s&1, writes the other
//   hc       [2][D][B][Hout] CT   the same rounded to CT: the operand of the recurrent product
//                                 (the same buffer as h when CT is float)
//   c        [D][B][H]       f32  LSTM cell state, updated in place
//   y        [T][B][D*Hout]  CT   the layer's output, direction d in columns [d*Hout, (d+1)*Hout)
//   mask     [T][B]          u8   nonzero = valid step; null = every step valid
#pragma once

#include <cstddef>
#include <cstdint>

#include "pylstm/dtype.hpp"  // DType (element types; their values are part of this interface)

namespace pylstm {
namespace cuda {

enum CellCode : int { kCellLSTM = 0, kCellGRU = 1, kCellRNN = 2 };

// Leading dimensions of weight matrices are padded to a multiple of this many elements, so that
// every row starts 16-byte aligned (vector loads in the persistent kernel).
constexpr int kWeightPad = 8;

// Largest batch the persistent kernel takes (its per-block scratch holds a row per sequence).
constexpr int kPersistentMaxBatch = 32;

// Threads per block of the persistent kernel.
constexpr int kPersistentThreads = 256;

struct ActParams {
  int kind = 0;  // pylstm::ActKind, same numbering
  float alpha = 0.f;
  float beta = 0.f;
};

struct DirWeights {
  const void* w = nullptr;
  const void* r = nullptr;
  const void* proj = nullptr;
  const float* bias = nullptr;
  const float* bias_rn = nullptr;
  const float* peephole = nullptr;  // null: no peepholes
  ActParams act[3];                 // LSTM f, g, h; GRU f, g; RNN f
  int reverse = 0;
};

struct LayerParams {
  int cell = kCellLSTM;
  int G = 4;
  int I = 0, H = 0, Hout = 0, P = 0;  // P = 0: no projection
  int ldw = 0, ldr = 0, ldp = 0;
  float clip = 0.f;  // <= 0: no clipping
  int input_forget = 0;
  int lbr = 1;   // GRU linear_before_reset
  int hold = 0;  // masked steps repeat the previous output (else zero)
  int D = 1;
  DirWeights dir[2];
};

struct StepBuffers {
  int T = 0, B = 0;
  const float* xp = nullptr;
  int xp_steps = 0;           // steps per direction that xp holds
  int xp_t0[2] = {0, 0};      // time of xp's first row block, per direction
  float* rec = nullptr;       // [D][B][G*H] recurrent products (step-loop path)
  float* proj_out = nullptr;  // [D][B][P] projection products (step-loop path)
  float* h = nullptr;
  void* hc = nullptr;
  float* c = nullptr;
  float* z = nullptr;    // [D][B][H] GRU with reset before the product: z between phases
  void* rhc = nullptr;   // [D][B][Hout] CT: r * h, the operand of the second GRU product
  void* auxc = nullptr;  // [D][B][H] CT: o * h(c'), the operand of the LSTM projection
  void* y = nullptr;
  const uint8_t* mask = nullptr;
};

// How the persistent kernel splits a layer: blocks_per_dir blocks per direction, block k owning
// hidden units [k*upb, (k+1)*upb) and projection outputs [k*ppb, (k+1)*ppb).
struct PersistentPlan {
  int blocks_per_dir = 0;
  int upb = 0;
  int ppb = 0;
  int weights_in_smem = 0;  // else the weights are read from global memory (L2) every step
  int nb = 1;               // batch rows per product pass: 1, 4 or 8
  int smem_bytes = 0;
  // Offsets (bytes) of the shared-memory regions.
  int off_w = 0, off_p = 0, off_hs = 0, off_pre = 0, off_part = 0;
  int hs_ld = 0;  // floats per row of the staged state (>= ldr, and >= ldp with a projection)
};

}  // namespace cuda
}  // namespace pylstm
