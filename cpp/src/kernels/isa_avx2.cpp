// Kernels compiled for AVX2 + FMA (flags in CMakeLists.txt).
#define PYLSTM_VL 8
#define PYLSTM_ISA isa_avx2
#include "kernels/fma_peak.hpp"
#include "kernels/time_loop.hpp"

namespace pylstm {

const KernelSet& kernels_avx2() {
  static const KernelSet set{"avx2", PYLSTM_VL, &isa_avx2::run_layer, &isa_avx2::fma_chains};
  return set;
}

}  // namespace pylstm
