// The persistent kernel (persistent_kernel.cuh) instantiated for bfloat16 (fp32 accumulation)
// weights and activations; one file per compute type so that they compile in parallel.
#include "kernels.hpp"
#include "persistent_kernel.cuh"

namespace pylstm {
namespace cuda {

const void* persistent_kernel_bf16(int nb) { return persistent::kernel_for<__nv_bfloat16>(nb); }

void launch_persistent_bf16(const LayerParams& L, const StepBuffers& S, const PersistentPlan& plan,
                            int s0, int s1, cudaStream_t stream) {
  persistent::launch<__nv_bfloat16>(L, S, plan, s0, s1, stream);
}

}  // namespace cuda
}  // namespace pylstm
