// The fused gate kernels of the step loop (large batches): after cuBLAS has computed a step's
// recurrent products for every sequence, one thread per (direction, sequence, unit) runs the
// cell arithmetic of cell_math.cuh. One instantiation per compute type.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "cell_math.cuh"
#include "cuda_check.hpp"
#include "kernels.hpp"
#include "launch.cuh"
#include "pylstm/network.hpp"

namespace pylstm {
namespace cuda {

// The kernels number activations as pylstm::ActKind does (device_layer.cpp copies the enum).
#define PYLSTM_SAME_ACT(kind) \
  static_assert(static_cast<int>(ActKind::kind) == kAct##kind, "activation numbering")
PYLSTM_SAME_ACT(Sigmoid);
PYLSTM_SAME_ACT(Tanh);
PYLSTM_SAME_ACT(Relu);
PYLSTM_SAME_ACT(Affine);
PYLSTM_SAME_ACT(LeakyRelu);
PYLSTM_SAME_ACT(ThresholdedRelu);
PYLSTM_SAME_ACT(ScaledTanh);
PYLSTM_SAME_ACT(HardSigmoid);
PYLSTM_SAME_ACT(Elu);
PYLSTM_SAME_ACT(Softsign);
PYLSTM_SAME_ACT(Softplus);
PYLSTM_SAME_ACT(Selu);
PYLSTM_SAME_ACT(Silu);
PYLSTM_SAME_ACT(Gelu);
PYLSTM_SAME_ACT(GeluTanh);
PYLSTM_SAME_ACT(Exponential);
PYLSTM_SAME_ACT(Relu6);
PYLSTM_SAME_ACT(HardSilu);
PYLSTM_SAME_ACT(HardTanh);
PYLSTM_SAME_ACT(Mish);
PYLSTM_SAME_ACT(LogSigmoid);
PYLSTM_SAME_ACT(TanhShrink);
PYLSTM_SAME_ACT(Celu);
#undef PYLSTM_SAME_ACT

namespace {

constexpr int kThreads = 256;
constexpr size_t kMaxBlocks = 65535;

template <typename CT>
__global__ void __launch_bounds__(kThreads) phase1_kernel(LayerParams L, StepBuffers S, int step) {
  const int H = L.H;
  const size_t GH = static_cast<size_t>(L.G) * H;
  const int ng = (L.cell == kCellGRU && !L.lbr) ? 2 : L.G;
  const size_t n = static_cast<size_t>(L.D) * S.B * H;
  for (size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int j = static_cast<int>(idx % H);
    const size_t rest = idx / H;
    const int b = static_cast<int>(rest % S.B);
    const int d = static_cast<int>(rest / S.B);
    const StepCtx k = step_ctx(L, S, d, step);
    const float* rr = S.rec + (static_cast<size_t>(d) * S.B + b) * GH + j;
    float rec[4];
#pragma unroll
    for (int g = 0; g < 4; ++g) rec[g] = g < ng ? rr[static_cast<size_t>(g) * H] : 0.0f;
    phase1_unit<CT>(L, S, k, b, j, rec);
  }
}

template <typename CT>
__global__ void __launch_bounds__(kThreads)
    proj_phase2_kernel(LayerParams L, StepBuffers S, int step) {
  const int P = L.P;
  const size_t n = static_cast<size_t>(L.D) * S.B * P;
  for (size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int p = static_cast<int>(idx % P);
    const size_t rest = idx / P;
    const int b = static_cast<int>(rest % S.B);
    const int d = static_cast<int>(rest / S.B);
    const StepCtx k = step_ctx(L, S, d, step);
    phase2_proj<CT>(L, S, k, b, p, S.proj_out[idx]);  // proj_out is [D][B][P]: idx itself
  }
}

template <typename CT>
__global__ void __launch_bounds__(kThreads)
    gru_phase2_kernel(LayerParams L, StepBuffers S, int step) {
  const int H = L.H;
  const size_t GH = static_cast<size_t>(L.G) * H;
  const size_t n = static_cast<size_t>(L.D) * S.B * H;
  for (size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int j = static_cast<int>(idx % H);
    const size_t rest = idx / H;
    const int b = static_cast<int>(rest % S.B);
    const int d = static_cast<int>(rest / S.B);
    const StepCtx k = step_ctx(L, S, d, step);
    const float rec_n =
        S.rec[(static_cast<size_t>(d) * S.B + b) * GH + 2 * static_cast<size_t>(H) + j];
    phase2_gru<CT>(L, S, k, b, j, rec_n);
  }
}

unsigned blocks_for(size_t n) {
  return static_cast<unsigned>(std::min(kMaxBlocks, (n + kThreads - 1) / kThreads));
}

template <template <typename> class Launch>
void dispatch(DType ct, const LayerParams& L, const StepBuffers& S, int step, cudaStream_t stream) {
  switch (ct) {
    case DType::F32:
      Launch<float>::run(L, S, step, stream);
      break;
    case DType::F16:
      Launch<__half>::run(L, S, step, stream);
      break;
    case DType::BF16:
      Launch<__nv_bfloat16>::run(L, S, step, stream);
      break;
  }
}

template <typename CT>
struct Phase1 {
  static void run(const LayerParams& L, const StepBuffers& S, int step, cudaStream_t stream) {
    const size_t n = static_cast<size_t>(L.D) * S.B * L.H;
    if (n == 0) return;
    PYLSTM_LAUNCH(phase1_kernel<CT>, blocks_for(n), kThreads, 0, stream)(L, S, step);
    PYLSTM_CUDA_CHECK_LAUNCH("phase1_kernel");
  }
};

template <typename CT>
struct ProjPhase2 {
  static void run(const LayerParams& L, const StepBuffers& S, int step, cudaStream_t stream) {
    const size_t n = static_cast<size_t>(L.D) * S.B * L.P;
    if (n == 0) return;
    PYLSTM_LAUNCH(proj_phase2_kernel<CT>, blocks_for(n), kThreads, 0, stream)(L, S, step);
    PYLSTM_CUDA_CHECK_LAUNCH("proj_phase2_kernel");
  }
};

template <typename CT>
struct GruPhase2 {
  static void run(const LayerParams& L, const StepBuffers& S, int step, cudaStream_t stream) {
    const size_t n = static_cast<size_t>(L.D) * S.B * L.H;
    if (n == 0) return;
    PYLSTM_LAUNCH(gru_phase2_kernel<CT>, blocks_for(n), kThreads, 0, stream)(L, S, step);
    PYLSTM_CUDA_CHECK_LAUNCH("gru_phase2_kernel");
  }
};

}  // namespace

void launch_phase1(DType ct, const LayerParams& L, const StepBuffers& S, int step,
                   cudaStream_t stream) {
  dispatch<Phase1>(ct, L, S, step, stream);
}

void launch_proj_phase2(DType ct, const LayerParams& L, const StepBuffers& S, int step,
                        cudaStream_t stream) {
  dispatch<ProjPhase2>(ct, L, S, step, stream);
}

void launch_gru_phase2(DType ct, const LayerParams& L, const StepBuffers& S, int step,
                       cudaStream_t stream) {
  dispatch<GruPhase2>(ct, L, S, step, stream);
}

}  // namespace cuda
}  // namespace pylstm
