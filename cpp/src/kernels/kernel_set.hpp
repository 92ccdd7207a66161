// What one instruction set's kernels offer to the backend, and the per-layer inputs they take.
// ISA-neutral: included by the backend and by every isa_*.cpp.
#pragma once

#include <cstdint>

#include "packing.hpp"
#include "pylstm/backend.hpp"
#include "thread_pool.hpp"

namespace pylstm {

// One layer's view of a forward call.
struct LayerIO {
  int64_t steps = 0, batch = 0;
  Rows<const float> x;            // [T, B, I]
  const uint8_t* mask = nullptr;  // [T, B] or nullptr (all valid)
  const float* h0 = nullptr;      // [D, B, Hout] or nullptr (zeros)
  const float* c0 = nullptr;      // [D, B, H] or nullptr (zeros)
  Rows<float> y;                  // [T, B, D*Hout]
  float* h_n = nullptr;           // [D, B, Hout] or nullptr
  float* c_n = nullptr;           // [D, B, H] or nullptr
};

// Workspace for one layer, carved out by the backend (sizes: layer_scratch_floats()).
struct LayerScratch {
  int64_t block_steps = 1;  // time steps whose input projection is computed at once
  float* xp = nullptr;      // [D][chunks][block_steps*B][G*U]  input projection + bias
  float* h = nullptr;       // [D][2][B][hstride]       hidden state, double-buffered
  float* c = nullptr;       // [D][B][Hp]               LSTM cell state
  float* aux = nullptr;     // [D][B][Hp]               LSTM+proj: o*h(c); GRU (reset first): z
  float* rh = nullptr;      // [D][B][hstride]          GRU (reset first): r*h
};

// Row stride of the hidden-state buffers: Hout rounded up so whole vectors can be stored.
inline int64_t state_stride(const PackedLayer& L) {
  const int64_t w = L.P > 0 ? L.Up : L.U;
  return (L.Hout + w - 1) / w * w;
}

struct KernelSet {
  const char* name;
  int vector_floats;
  // Runs one layer on the whole team (every member calls it).
  void (*run_layer)(const PackedLayer& layer, const LayerIO& io, const LayerScratch& scratch,
                    const Team& team);
  // kPeakChains chains of FMAs for `rounds` rounds; returns the flops done (fma_peak.hpp).
  int64_t (*fma_chains)(int64_t rounds, float* seed);
};

const KernelSet& kernels_generic();
#if defined(PYLSTM_X86)
const KernelSet& kernels_avx2();
const KernelSet& kernels_avx512();
#endif

}  // namespace pylstm
