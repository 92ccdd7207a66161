// Kernels compiled for portable code (SSE2 on x86-64, NEON-width vectors elsewhere) (flags in
// CMakeLists.txt).
#define PYLSTM_VL 4
#define PYLSTM_ISA isa_generic
#include "kernels/fma_peak.hpp"
#include "kernels/time_loop.hpp"

namespace pylstm {

const KernelSet& kernels_generic() {
  static const KernelSet set{"generic", PYLSTM_VL, &isa_generic::run_layer,
                             &isa_generic::fma_chains};
  return set;
}

}  // namespace pylstm
