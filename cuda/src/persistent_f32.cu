// The persistent kernel (persistent_kernel.cuh) instantiated for 32-bit floats weights and
// activations; one file per compute type so that they compile in parallel.
#include "kernels.hpp"
#include "persistent_kernel.cuh"

namespace pylstm {
namespace cuda {

const void* persistent_kernel_f32(int nb) { return persistent::kernel_for<float>(nb); }

void launch_persistent_f32(const LayerParams& L, const StepBuffers& S, const PersistentPlan& plan,
                           int s0, int s1, cudaStream_t stream) {
  persistent::launch<float>(L, S, plan, s0, s1, stream);
}

}  // namespace cuda
}  // namespace pylstm
