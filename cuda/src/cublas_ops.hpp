// cuBLAS: error checking, an owned handle, and the one product shape the backend needs.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "cuda_check.hpp"
#include "kernel_params.hpp"

namespace pylstm {
namespace cuda {

inline const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
    default:
      return "unknown cuBLAS status";
  }
}

[[noreturn]] void throw_cublas(cublasStatus_t s, const char* call, const char* file, int line);

}  // namespace cuda
}  // namespace pylstm

#define PYLSTM_CUBLAS_CHECK(call)                                          \
  do {                                                                     \
    const cublasStatus_t pylstm_st_ = (call);                              \
    if (pylstm_st_ != CUBLAS_STATUS_SUCCESS) {                             \
      ::pylstm::cuda::throw_cublas(pylstm_st_, #call, __FILE__, __LINE__); \
    }                                                                      \
  } while (0)

namespace pylstm {
namespace cuda {

// A cuBLAS handle with its own workspace, so that the products it runs can be captured in a
// CUDA graph (no allocation inside cuBLAS during a capture) and so that two handles never share
// scratch memory. One per Workspace (workspace.hpp): never used by two threads at once.
class Cublas {
 public:
  Cublas();
  ~Cublas();
  Cublas(const Cublas&) = delete;
  Cublas& operator=(const Cublas&) = delete;

  // Directs the following products to `stream` (and re-attaches the workspace, which
  // cublasSetStream resets).
  void set_stream(cudaStream_t stream);

  // Row-major Y[m][n] = sum_k X[m][k] * W[n][k] for `batch` independent problems whose
  // operands are sX, sW and sY elements apart: X and W of type `ct`, Y float32, float32
  // accumulation (no TF32: CUBLAS_COMPUTE_32F under the default math mode).
  void gemm_xwt(DType ct, int64_t m, int64_t n, int64_t k, const void* X, int64_t ldx, int64_t sX,
                const void* W, int64_t ldw, int64_t sW, float* Y, int64_t ldy, int64_t sY,
                int64_t batch);

 private:
  cublasHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
};

// `ptr` advanced by `elements` elements of type `t`.
inline const void* offset(const void* ptr, int64_t elements, DType t) {
  return static_cast<const char*>(ptr) + elements * dtype_size(t);
}
inline void* offset(void* ptr, int64_t elements, DType t) {
  return static_cast<char*>(ptr) + elements * dtype_size(t);
}

}  // namespace cuda
}  // namespace pylstm
