// Kernels compiled for AVX-512 (F, BW, DQ, VL) (flags in CMakeLists.txt).
#define PYLSTM_VL 16
#define PYLSTM_ISA isa_avx512
#include "kernels/fma_peak.hpp"
#include "kernels/time_loop.hpp"

namespace pylstm {

const KernelSet& kernels_avx512() {
  static const KernelSet set{"avx512", PYLSTM_VL, &isa_avx512::run_layer, &isa_avx512::fma_chains};
  return set;
}

}  // namespace pylstm
