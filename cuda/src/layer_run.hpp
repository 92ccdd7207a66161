// Running one layer over a whole sequence, by one of two strategies:
//
//  * persistent (small batches): per block of steps, the input projection through cuBLAS, then
//    one cooperative launch of the persistent kernel for all the block's steps;
//  * step loop (large batches): per step, the recurrent product through cuBLAS (both
//    directions in one strided-batched call) and one fused gate kernel (two of each for an LSTM
//    with projection or a GRU with the reset before the product). The loop, input projections
//    included, is captured in a CUDA graph per call shape and replayed.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "device_layer.hpp"
#include "kernel_params.hpp"
#include "workspace.hpp"

namespace pylstm {
namespace cuda {

enum class Strategy { Auto, Persistent, Graph, Steps };

// What a layer needs for one call: its input rows, its buffers, and how many steps one input
// projection covers.
struct LayerCall {
  const DeviceLayer* layer = nullptr;
  int index = 0;  // layer index (graph cache key)
  DType ct = DType::F32;
  const void* x = nullptr;  // [T][B][I] compute type
  StepBuffers S;            // every field but xp_t0 (set per block of steps)
  int block_steps = 1;      // steps per input projection (xp holds this many)
};

// Input projections of steps [s0, s1) for every direction into S.xp (sets S.xp_t0).
void input_projection(Cublas& cublas, const LayerCall& c, int s0, int s1, StepBuffers* S);

// The step loop on `stream`, launch by launch (also what a graph captures).
void enqueue_step_loop(Cublas& cublas, const LayerCall& c, cudaStream_t stream);

// The step loop through a cached CUDA graph, captured when a call shape comes a second time;
// direct launches the first time and for very long sequences. Returns "graph" or "steps".
const char* run_step_loop_graph(Workspace& ws, const LayerCall& c, cudaStream_t stream);

// The persistent strategy with `plan` (from plan_persistent).
void run_persistent(Cublas& cublas, const LayerCall& c, const PersistentPlan& plan,
                    cudaStream_t stream);

}  // namespace cuda
}  // namespace pylstm
