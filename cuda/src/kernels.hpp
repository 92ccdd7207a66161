// Host-callable launchers of every kernel of the CUDA backend (the kernels themselves live in
// the .cu files named below). Each checks its launch and throws CudaError; none synchronizes.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernel_params.hpp"

namespace pylstm {
namespace cuda {

// convert_kernels.cu ---------------------------------------------------------------------------

// dst[t][b][f] (contiguous, dst_type) = src[t*stride_t + b*stride_b + f] (src_type); strides in
// elements, may be negative.
void launch_gather_rows(const void* src, DType src_type, int64_t stride_t, int64_t stride_b,
                        int64_t T, int64_t B, int64_t F, void* dst, DType dst_type,
                        cudaStream_t stream);

// dst[t*stride_t + b*stride_b + f] (dst_type) = src[t][b][f] (contiguous, src_type).
void launch_scatter_rows(const void* src, DType src_type, int64_t T, int64_t B, int64_t F,
                         void* dst, DType dst_type, int64_t stride_t, int64_t stride_b,
                         cudaStream_t stream);

// dst[i] = src[i] for n contiguous elements, converting the type.
void launch_convert(const void* src, DType src_type, void* dst, DType dst_type, int64_t n,
                    cudaStream_t stream);

// gate_kernels.cu (the step loop: one launch per phase and step, after the cuBLAS products) ---

// First phase of step `step` for every (direction, sequence, unit); reads S.rec.
void launch_phase1(DType ct, const LayerParams& L, const StepBuffers& S, int step,
                   cudaStream_t stream);
// LSTM projection: emits h' = S.proj_out for every (direction, sequence, output).
void launch_proj_phase2(DType ct, const LayerParams& L, const StepBuffers& S, int step,
                        cudaStream_t stream);
// GRU with the reset before the product: n and h' from S.rec's n columns (= Rn·(r*h)).
void launch_gru_phase2(DType ct, const LayerParams& L, const StepBuffers& S, int step,
                       cudaStream_t stream);

// persistent_{f32,f16,bf16}.cu --------------------------------------------------------------

// The persistent kernel for compute type ct and nb batch rows per product pass (1, 4 or 8), as
// a function pointer for the occupancy and attribute queries.
const void* persistent_kernel(DType ct, int nb);

// Runs steps [s0, s1) of a layer in one cooperative launch of D * plan.blocks_per_dir blocks.
void launch_persistent(DType ct, const LayerParams& L, const StepBuffers& S,
                       const PersistentPlan& plan, int s0, int s1, cudaStream_t stream);

// One declaration per compute type, defined in its own file (compiled in parallel).
const void* persistent_kernel_f32(int nb);
const void* persistent_kernel_f16(int nb);
const void* persistent_kernel_bf16(int nb);
void launch_persistent_f32(const LayerParams& L, const StepBuffers& S, const PersistentPlan& plan,
                           int s0, int s1, cudaStream_t stream);
void launch_persistent_f16(const LayerParams& L, const StepBuffers& S, const PersistentPlan& plan,
                           int s0, int s1, cudaStream_t stream);
void launch_persistent_bf16(const LayerParams& L, const StepBuffers& S, const PersistentPlan& plan,
                            int s0, int s1, cudaStream_t stream);

}  // namespace cuda
}  // namespace pylstm
