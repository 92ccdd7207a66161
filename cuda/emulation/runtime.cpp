// Host emulation of the CUDA runtime and cuBLAS calls the backend makes (see emulation.hpp):
// device memory is host memory, streams run everything at once (in order), events are no-ops,
// graph capture records the operations and a graph launch replays them, and the products are
// plain loops with cuBLAS's column-major semantics, checked argument by argument.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <barrier>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "emulation.hpp"

struct CUstream_st {
  int id = 0;
};
struct CUevent_st {
  int id = 0;
};
struct CUgraph_st {
  std::vector<std::function<void()>> ops;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> ops;
};
struct cublasContext {
  cudaStream_t stream = nullptr;
};

namespace pylstm {
namespace emu {

struct BlockSync {
  explicit BlockSync(int threads) : barrier(threads), warp_vals(threads) {
    for (int w = 0; w < (threads + 31) / 32; ++w) {
      warps.push_back(std::make_unique<std::barrier<>>(std::min(32, threads - 32 * w)));
    }
  }
  std::barrier<> barrier;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  std::vector<float> warp_vals;
  std::vector<unsigned char> smem;
};

struct GridSync {
  explicit GridSync(int threads) : barrier(threads) {}
  std::barrier<> barrier;
};

namespace {

cudaStream_t g_capturing = nullptr;
std::vector<std::function<void()>>* g_recording = nullptr;
std::mutex g_mutex;
cudaError_t g_last_error = cudaSuccess;

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

}  // namespace

CopyCounts& copy_counts() {
  static CopyCounts counts;
  return counts;
}

void count_copy(cudaMemcpyKind kind, size_t bytes) {
  CopyCounts& c = copy_counts();
  if (kind == cudaMemcpyHostToDevice) {
    c.h2d_calls += 1;
    c.h2d_bytes += bytes;
  } else if (kind == cudaMemcpyDeviceToHost) {
    c.d2h_calls += 1;
    c.d2h_bytes += bytes;
  }
}

ThreadState& tls() {
  thread_local ThreadState state;
  return state;
}

void syncthreads() {
  BlockSync* b = tls().block;
  if (b == nullptr) throw std::logic_error("__syncthreads outside a cooperative emulated launch");
  b->barrier.arrive_and_wait();
}

void grid_sync() {
  GridSync* g = tls().grid;
  if (g == nullptr) throw std::logic_error("grid sync outside a cooperative emulated launch");
  g->barrier.arrive_and_wait();
}

float shfl_xor(float v, int lane_mask) {
  ThreadState& t = tls();
  if (t.block == nullptr) throw std::logic_error("warp shuffle outside a cooperative launch");
  const int tid = static_cast<int>(t.thread_idx.x);
  const int warp = tid / 32, lane = tid % 32;
  std::barrier<>& wb = *t.block->warps[warp];
  t.block->warp_vals[tid] = v;
  wb.arrive_and_wait();
  const float r = t.block->warp_vals[warp * 32 + (lane ^ lane_mask)];
  wb.arrive_and_wait();
  return r;
}

void run_sequential(dim3 grid, dim3 block, const std::function<void()>& body) {
  ThreadState& t = tls();
  const ThreadState saved = t;
  t.block = nullptr;
  t.grid = nullptr;
  t.grid_dim = grid;
  t.block_dim = block;
  for (unsigned bx = 0; bx < grid.x; ++bx) {
    for (unsigned tx = 0; tx < block.x; ++tx) {
      t.block_idx = uint3{bx, 0, 0};
      t.thread_idx = uint3{tx, 0, 0};
      body();
    }
  }
  t = saved;
}

void run_cooperative(dim3 grid, dim3 block, size_t smem, const std::function<void()>& body) {
  const int threads = static_cast<int>(block.x), blocks = static_cast<int>(grid.x);
  GridSync gs(threads * blocks);
  std::vector<std::unique_ptr<BlockSync>> bs;
  for (int b = 0; b < blocks; ++b) {
    bs.push_back(std::make_unique<BlockSync>(threads));
    bs.back()->smem.assign(std::max<size_t>(smem, 16), 0xff);  // NaN floats: unwritten shows
  }
  std::mutex error_mutex;
  std::exception_ptr error;
  std::vector<std::thread> pool;
  for (int b = 0; b < blocks; ++b) {
    for (int tx = 0; tx < threads; ++tx) {
      pool.emplace_back([&, b, tx] {
        ThreadState& t = tls();
        t.grid_dim = grid;
        t.block_dim = block;
        t.block_idx = uint3{static_cast<unsigned>(b), 0, 0};
        t.thread_idx = uint3{static_cast<unsigned>(tx), 0, 0};
        t.block = bs[b].get();
        t.grid = &gs;
        t.smem = bs[b]->smem.data();
        try {
          body();
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mutex);
          error = std::current_exception();
          std::abort();  // the other threads would wait at a barrier forever
        }
      });
    }
  }
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

void enqueue(cudaStream_t stream, std::function<void()> op) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_capturing != nullptr && stream == g_capturing) {
    g_recording->push_back(std::move(op));
    return;
  }
  op();
}

int emulated_sms() { return env_int("PYLSTM_EMU_SMS", 4); }

}  // namespace emu
}  // namespace pylstm

using pylstm::emu::enqueue;

// ---- CUDA runtime ------------------------------------------------------------------------------
extern "C" {

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = pylstm::emu::g_last_error;
  pylstm::emu::g_last_error = cudaSuccess;
  return e;
}
const char* cudaGetErrorName(cudaError_t e) {
  return e == cudaSuccess ? "cudaSuccess" : "cudaErrorEmulated";
}
const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : "emulated error";
}
cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  std::memset(prop, 0, sizeof *prop);
  std::strncpy(prop->name, "pylstm CUDA emulator", sizeof prop->name - 1);
  prop->major = 9;
  prop->minor = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  switch (attr) {
    case cudaDevAttrComputeCapabilityMajor:
      *value = 9;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *value = 0;
      break;
    case cudaDevAttrMultiProcessorCount:
      *value = pylstm::emu::emulated_sms();
      break;
    case cudaDevAttrCooperativeLaunch:
      *value = 1;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = pylstm::emu::env_int("PYLSTM_EMU_SMEM", 232448);
      break;
    default:
      *value = 0;
  }
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (*p == nullptr) return cudaErrorMemoryAllocation;
  std::memset(*p, 0xff, bytes);  // like fresh device memory: garbage (NaN floats)
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  pylstm::emu::count_copy(kind, bytes);
  enqueue(stream, [=] { std::memcpy(dst, src, bytes); });
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  pylstm::emu::count_copy(kind, bytes);
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  enqueue(stream, [=] { std::memset(dst, value, bytes); });
  return cudaSuccess;
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  std::memset(dst, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int) {
  *s = new CUstream_st;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int) {
  *e = new CUevent_st;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned int) { return cudaSuccess; }
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  std::lock_guard<std::mutex> lock(pylstm::emu::g_mutex);
  if (pylstm::emu::g_capturing != nullptr) return cudaErrorIllegalState;
  pylstm::emu::g_capturing = s;
  pylstm::emu::g_recording = new std::vector<std::function<void()>>();
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* graph) {
  std::lock_guard<std::mutex> lock(pylstm::emu::g_mutex);
  if (pylstm::emu::g_capturing != s) return cudaErrorIllegalState;
  *graph = new CUgraph_st{std::move(*pylstm::emu::g_recording)};
  delete pylstm::emu::g_recording;
  pylstm::emu::g_recording = nullptr;
  pylstm::emu::g_capturing = nullptr;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  *exec = new CUgraphExec_st{graph->ops};
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  for (const auto& op : exec->ops) enqueue(stream, op);
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void*, cudaFuncAttribute, int) { return cudaSuccess; }
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, const void*, int, size_t smem) {
  *n = smem <= static_cast<size_t>(pylstm::emu::env_int("PYLSTM_EMU_SMEM", 232448)) ? 1 : 0;
  return cudaSuccess;
}
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void*) {
  std::memset(a, 0, sizeof *a);
  a->type = cudaMemoryTypeDevice;
  return cudaSuccess;
}

}  // extern "C"

// ---- cuBLAS --------------------------------------------------------------------------------
namespace {

float load(const void* p, cudaDataType t, long long i) {
  switch (t) {
    case CUDA_R_32F:
      return static_cast<const float*>(p)[i];
    case CUDA_R_16F:
      return __half2float(static_cast<const __half*>(p)[i]);
    case CUDA_R_16BF:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default:
      throw std::logic_error("emulated cuBLAS: unsupported type");
  }
}

// C (m x n, col-major, ldc) = alpha op(A) op(B) + beta C, float accumulation (double here).
cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                    int k, float alpha, const void* A, cudaDataType at, int lda, long long sA,
                    const void* B, cudaDataType bt, int ldb, long long sB, float beta, void* C,
                    cudaDataType ct, int ldc, long long sC, int batch) {
  if (ct != CUDA_R_32F || at != bt || m < 0 || n < 0 || k < 0 || batch < 0) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  // cuBLAS's checks on leading dimensions.
  if (lda < std::max(1, ta == CUBLAS_OP_N ? m : k) ||
      ldb < std::max(1, tb == CUBLAS_OP_N ? k : n) || ldc < std::max(1, m)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  enqueue(h->stream, [=] {
    for (int p = 0; p < batch; ++p) {
      for (int j = 0; j < n; ++j) {
        for (int i = 0; i < m; ++i) {
          double acc = 0.0;
          for (int l = 0; l < k; ++l) {
            const long long ai = ta == CUBLAS_OP_N ? i + static_cast<long long>(l) * lda
                                                   : l + static_cast<long long>(i) * lda;
            const long long bi = tb == CUBLAS_OP_N ? l + static_cast<long long>(j) * ldb
                                                   : j + static_cast<long long>(l) * ldb;
            acc += static_cast<double>(load(A, at, p * sA + ai)) * load(B, bt, p * sB + bi);
          }
          float* c = static_cast<float*>(C) + p * sC + i + static_cast<long long>(j) * ldc;
          *c = static_cast<float>(alpha * acc + (beta != 0.f ? beta * *c : 0.0));
        }
      }
    }
  });
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

extern "C" {

cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t, void*, size_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasGetProperty(libraryPropertyType, int* v) {
  *v = 0;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void* alpha, const void* A, cudaDataType at,
                            int lda, const void* B, cudaDataType bt, int ldb, const void* beta,
                            void* C, cudaDataType ct, int ldc, cublasComputeType_t,
                            cublasGemmAlgo_t) {
  return gemm(h, ta, tb, m, n, k, *static_cast<const float*>(alpha), A, at, lda, 0, B, bt, ldb, 0,
              *static_cast<const float*>(beta), C, ct, ldc, 0, 1);
}
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta,
                                          cublasOperation_t tb, int m, int n, int k,
                                          const void* alpha, const void* A, cudaDataType at,
                                          int lda, long long sA, const void* B, cudaDataType bt,
                                          int ldb, long long sB, const void* beta, void* C,
                                          cudaDataType ct, int ldc, long long sC, int batch,
                                          cublasComputeType_t, cublasGemmAlgo_t) {
  return gemm(h, ta, tb, m, n, k, *static_cast<const float*>(alpha), A, at, lda, sA, B, bt, ldb, sB,
              *static_cast<const float*>(beta), C, ct, ldc, sC, batch);
}

}  // extern "C"
