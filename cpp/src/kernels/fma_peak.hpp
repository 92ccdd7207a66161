// The instruction set's fp32 multiply-add peak on one core: kPeakChains independent chains of
// vector FMAs, enough to keep every FMA port busy through the FMA latency on the CPUs we know
// (2 ports x 4 cycles = 8 in flight; 12 leave headroom and still fit in the 16 registers of
// AVX2). The bench divides pylstm's GFLOP/s by it (fma_peak.cpp): how close to the machine a
// row runs, whatever the CPU.
#pragma once

#include "kernels/simd.hpp"

namespace pylstm {
namespace PYLSTM_ISA {

constexpr int kPeakChains = 12;

// Runs `rounds` rounds of kPeakChains vector FMAs; returns the flops done. *seed: in, a value
// the compiler cannot know (else it folds the chains); out, one that depends on every chain.
static int64_t fma_chains(int64_t rounds, float* seed) {
  const float x = *seed;
  vf acc[kPeakChains];
  for (int i = 0; i < kPeakChains; ++i) acc[i] = splat(x + static_cast<float>(i));
  const vf factor = splat(x * 0.5f), addend = splat(x * 0.25f);
  for (int64_t r = 0; r < rounds; ++r) {
#pragma GCC unroll 12
    for (int i = 0; i < kPeakChains; ++i) acc[i] = acc[i] * factor + addend;
  }
  vf total = acc[0];
  for (int i = 1; i < kPeakChains; ++i) total += acc[i];
  float s = 0.f;
  for (int l = 0; l < VL; ++l) s += total[l];
  *seed = s;
  return rounds * kPeakChains * VL * 2;
}

}  // namespace PYLSTM_ISA
}  // namespace pylstm
