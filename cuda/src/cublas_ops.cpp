#include "cublas_ops.hpp"

#include <limits>

namespace pylstm {
namespace cuda {
namespace {

// cuBLAS asks for 32 MiB on Hopper (4 MiB before) for its best kernels.
constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::F16:
      return CUDA_R_16F;
    case DType::BF16:
      return CUDA_R_16BF;
    default:
      return CUDA_R_32F;
  }
}

int as_int(int64_t v, const char* what) {
  if (v < 0 || v > std::numeric_limits<int>::max()) {
    throw CudaError(std::string("cuBLAS product too large: ") + what + " = " + std::to_string(v));
  }
  return static_cast<int>(v);
}

}  // namespace

void throw_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  (void)cudaGetLastError();
  throw CudaError(std::string("cuBLAS error ") + cublas_status_name(s) + " (" +
                  std::to_string(static_cast<int>(s)) + ") in " + call + " at " + file + ":" +
                  std::to_string(line));
}

Cublas::Cublas() {
  PYLSTM_CUBLAS_CHECK(cublasCreate(&handle_));
  try {
    PYLSTM_CUBLAS_CHECK(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH));
    PYLSTM_CUDA_CHECK(cudaMalloc(&workspace_, kCublasWorkspaceBytes));
    workspace_bytes_ = kCublasWorkspaceBytes;
  } catch (...) {
    if (workspace_ != nullptr) (void)cudaFree(workspace_);
    (void)cublasDestroy(handle_);
    throw;
  }
}

Cublas::~Cublas() {
  (void)cublasDestroy(handle_);
  if (workspace_ != nullptr) (void)cudaFree(workspace_);
}

void Cublas::set_stream(cudaStream_t stream) {
  PYLSTM_CUBLAS_CHECK(cublasSetStream(handle_, stream));
  PYLSTM_CUBLAS_CHECK(cublasSetWorkspace(handle_, workspace_, workspace_bytes_));
}

void Cublas::gemm_xwt(DType ct, int64_t m, int64_t n, int64_t k, const void* X, int64_t ldx,
                      int64_t sX, const void* W, int64_t ldw, int64_t sW, float* Y, int64_t ldy,
                      int64_t sY, int64_t batch) {
  if (m == 0 || n == 0 || batch == 0) return;
  const float one = 1.0f, zero = 0.0f;
  const cudaDataType_t t = cuda_type(ct);
  // Column-major view: Yᵀ (n x m, ld ldy) = op(W) (n x k) · Xᵀ (k x m), with W stored as the
  // column-major k x n matrix of leading dimension ldw (hence transposed) and Xᵀ as k x m.
  if (batch == 1) {
    PYLSTM_CUBLAS_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, as_int(n, "n"),
                                     as_int(m, "m"), as_int(k, "k"), &one, W, t, as_int(ldw, "ldw"),
                                     X, t, as_int(ldx, "ldx"), &zero, Y, CUDA_R_32F,
                                     as_int(ldy, "ldy"), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  } else {
    PYLSTM_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        handle_, CUBLAS_OP_T, CUBLAS_OP_N, as_int(n, "n"), as_int(m, "m"), as_int(k, "k"), &one, W,
        t, as_int(ldw, "ldw"), sW, X, t, as_int(ldx, "ldx"), sX, &zero, Y, CUDA_R_32F,
        as_int(ldy, "ldy"), sY, as_int(batch, "batch"), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
}

}  // namespace cuda
}  // namespace pylstm
