// Host emulation of the CUDA built-ins the kernels use, so that the backend (kernels, launchers,
// orchestration) can be compiled by a host compiler and checked on machines without a GPU
// (CMake option PYLSTM_CUDA_EMULATION builds pylstm._cuda_emu; tests/test_cuda_emulation.py).
//
// A kernel launch runs every thread of the grid: barrier-free kernels one thread after the
// other, cooperative launches (the persistent kernel) with one OS thread per CUDA thread, real
// barriers for __syncthreads and the grid barrier, and warp shuffles exchanged through memory.
// Shared memory starts filled with 0xff bytes (NaN as floats), so that reading what was never
// written shows. Not for speed: small layers and a handful of blocks.
#pragma once

#include <cuda_runtime.h>  // the real types (dim3, uint4, ...) and declarations
#include <math.h>          // expf, tanhf, ... in the global namespace, as device code calls them

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __noinline__
#undef __launch_bounds__
#undef __shared__
#undef __align__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

namespace pylstm {
namespace emu {

struct BlockSync;
struct GridSync;

struct ThreadState {
  uint3 thread_idx{0, 0, 0};
  uint3 block_idx{0, 0, 0};
  dim3 block_dim{1, 1, 1};
  dim3 grid_dim{1, 1, 1};
  unsigned char* smem = nullptr;
  BlockSync* block = nullptr;  // null outside cooperative launches
  GridSync* grid = nullptr;
};

ThreadState& tls();

// Host <-> device copies made so far (cudaMemcpy and cudaMemcpyAsync by their kind), for tests
// that check what crosses the bus (_cuda_emu.copy_counts()).
struct CopyCounts {
  std::atomic<unsigned long long> h2d_calls{0}, h2d_bytes{0}, d2h_calls{0}, d2h_bytes{0};
};
CopyCounts& copy_counts();
void count_copy(cudaMemcpyKind kind, size_t bytes);
void syncthreads();
void grid_sync();
float shfl_xor(float v, int lane_mask);
inline unsigned char* shared_memory() { return tls().smem; }

// Runs `body` for every thread of the grid, one after the other (no barriers allowed).
void run_sequential(dim3 grid, dim3 block, const std::function<void()>& body);
// Runs `body` on one OS thread per CUDA thread, with barriers; smem bytes per block.
void run_cooperative(dim3 grid, dim3 block, size_t smem, const std::function<void()>& body);
// Executes `op` now, or records it when `stream` is being captured into a graph.
void enqueue(cudaStream_t stream, std::function<void()> op);

template <typename... P>
auto launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t /*smem*/, cudaStream_t stream) {
  return [=](auto... args) {
    enqueue(stream, [=] { run_sequential(grid, block, [&] { kernel(args...); }); });
  };
}

template <typename... P>
auto launch_cooperative(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                        cudaStream_t stream) {
  return [=](auto... args) {
    enqueue(stream, [=] { run_cooperative(grid, block, smem, [&] { kernel(args...); }); });
  };
}

}  // namespace emu
}  // namespace pylstm

#define threadIdx (::pylstm::emu::tls().thread_idx)
#define blockIdx (::pylstm::emu::tls().block_idx)
#define blockDim (::pylstm::emu::tls().block_dim)
#define gridDim (::pylstm::emu::tls().grid_dim)

inline void __syncthreads() { ::pylstm::emu::syncthreads(); }
inline float __shfl_xor_sync(unsigned /*mask*/, float v, int lane_mask) {
  return ::pylstm::emu::shfl_xor(v, lane_mask);
}
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
template <typename T>
inline T __ldcg(const T* p) {
  return *p;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
using std::max;
using std::min;
