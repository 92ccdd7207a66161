// The persistent kernel (persistent_kernel.cuh) instantiated for float16 (fp32 accumulation)
// weights and activations; one file per compute type so that they compile in parallel.
#include "kernels.hpp"
#include "persistent_kernel.cuh"

namespace pylstm {
namespace cuda {

const void* persistent_kernel_f16(int nb) { return persistent::kernel_for<__half>(nb); }

void launch_persistent_f16(const LayerParams& L, const StepBuffers& S, const PersistentPlan& plan,
                           int s0, int s1, cudaStream_t stream) {
  persistent::launch<__half>(L, S, plan, s0, s1, stream);
}

}  // namespace cuda
}  // namespace pylstm
