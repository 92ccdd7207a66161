// Element-wise data movement: the caller's strided [T, B, F] arrays to and from the backend's
// contiguous buffers, and type conversions (float32, float16, bfloat16) of states and weights.
// The element types are run-time arguments (a uniform branch per element costs nothing next to
// the memory traffic), which keeps this file to three small kernels.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "cuda_check.hpp"
#include "kernels.hpp"
#include "launch.cuh"

namespace pylstm {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

__device__ __forceinline__ float load_as_float(const void* p, int type, int64_t i) {
  switch (type) {
    case static_cast<int>(DType::F32):
      return static_cast<const float*>(p)[i];
    case static_cast<int>(DType::F16):
      return __half2float(static_cast<const __half*>(p)[i]);
    default:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  }
}

__device__ __forceinline__ void store_float(void* p, int type, int64_t i, float v) {
  switch (type) {
    case static_cast<int>(DType::F32):
      static_cast<float*>(p)[i] = v;
      break;
    case static_cast<int>(DType::F16):
      static_cast<__half*>(p)[i] = __float2half_rn(v);
      break;
    default:
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
      break;
  }
}

__global__ void gather_rows_kernel(const void* src, int src_type, int64_t stride_t,
                                   int64_t stride_b, int64_t B, int64_t F, int64_t n, void* dst,
                                   int dst_type) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t f = i % F;
    const int64_t row = i / F;
    const int64_t b = row % B;
    const int64_t t = row / B;
    store_float(dst, dst_type, i, load_as_float(src, src_type, t * stride_t + b * stride_b + f));
  }
}

__global__ void scatter_rows_kernel(const void* src, int src_type, int64_t B, int64_t F, int64_t n,
                                    void* dst, int dst_type, int64_t stride_t, int64_t stride_b) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t f = i % F;
    const int64_t row = i / F;
    const int64_t b = row % B;
    const int64_t t = row / B;
    store_float(dst, dst_type, t * stride_t + b * stride_b + f, load_as_float(src, src_type, i));
  }
}

__global__ void convert_kernel(const void* src, int src_type, void* dst, int dst_type, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    store_float(dst, dst_type, i, load_as_float(src, src_type, i));
  }
}

unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>(kMaxBlocks, (n + kThreads - 1) / kThreads));
}

}  // namespace

void launch_gather_rows(const void* src, DType src_type, int64_t stride_t, int64_t stride_b,
                        int64_t T, int64_t B, int64_t F, void* dst, DType dst_type,
                        cudaStream_t stream) {
  const int64_t n = T * B * F;
  if (n == 0) return;
  PYLSTM_LAUNCH(gather_rows_kernel, blocks_for(n), kThreads, 0, stream)(
      src, static_cast<int>(src_type), stride_t, stride_b, B, F, n, dst,
      static_cast<int>(dst_type));
  PYLSTM_CUDA_CHECK_LAUNCH("gather_rows_kernel");
}

void launch_scatter_rows(const void* src, DType src_type, int64_t T, int64_t B, int64_t F,
                         void* dst, DType dst_type, int64_t stride_t, int64_t stride_b,
                         cudaStream_t stream) {
  const int64_t n = T * B * F;
  if (n == 0) return;
  PYLSTM_LAUNCH(scatter_rows_kernel, blocks_for(n), kThreads, 0, stream)(
      src, static_cast<int>(src_type), B, F, n, dst, static_cast<int>(dst_type), stride_t,
      stride_b);
  PYLSTM_CUDA_CHECK_LAUNCH("scatter_rows_kernel");
}

void launch_convert(const void* src, DType src_type, void* dst, DType dst_type, int64_t n,
                    cudaStream_t stream) {
  if (n == 0) return;
  PYLSTM_LAUNCH(convert_kernel, blocks_for(n), kThreads, 0, stream)(
      src, static_cast<int>(src_type), dst, static_cast<int>(dst_type), n);
  PYLSTM_CUDA_CHECK_LAUNCH("convert_kernel");
}

}  // namespace cuda
}  // namespace pylstm
