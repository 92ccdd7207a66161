// Error handling of the CUDA backend: every CUDA runtime call goes through PYLSTM_CUDA_CHECK
// (cuBLAS calls through PYLSTM_CUBLAS_CHECK, cublas_ops.hpp), which throws CudaError, a
// std::runtime_error that the _cuda module turns into pylstm.DeviceError. Nothing here aborts.
#pragma once

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace pylstm {
namespace cuda {

class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void throw_cuda(cudaError_t err, const char* call, const char* file, int line) {
  // Clears a non-sticky error so that the next call does not report it again; a sticky one
  // (an illegal address, a trap) stays and every later call fails with it, as CUDA intends.
  (void)cudaGetLastError();
  throw CudaError(std::string("CUDA error ") + cudaGetErrorName(err) + " (" +
                  cudaGetErrorString(err) + ") in " + call + " at " + file + ":" +
                  std::to_string(line));
}

}  // namespace cuda
}  // namespace pylstm

#define PYLSTM_CUDA_CHECK(call)                                           \
  do {                                                                    \
    const cudaError_t pylstm_err_ = (call);                               \
    if (pylstm_err_ != cudaSuccess) {                                     \
      ::pylstm::cuda::throw_cuda(pylstm_err_, #call, __FILE__, __LINE__); \
    }                                                                     \
  } while (0)

// After a kernel launch (`kernel` a string literal): a bad configuration or a missing kernel image
// for this GPU shows up here.
#define PYLSTM_CUDA_CHECK_LAUNCH(kernel)                                                \
  do {                                                                                  \
    const cudaError_t pylstm_err_ = cudaGetLastError();                                 \
    if (pylstm_err_ != cudaSuccess) {                                                   \
      ::pylstm::cuda::throw_cuda(pylstm_err_, "launch of " kernel, __FILE__, __LINE__); \
    }                                                                                   \
  } while (0)
