#include "workspace.hpp"

namespace pylstm {
namespace cuda {
namespace {

// Graphs kept per workspace (one per layer and call shape); all are dropped past this.
constexpr size_t kMaxGraphs = 64;

}  // namespace

Workspace::Workspace(int device) : device_(device) {
  // The caller made `device` current (the cuBLAS handle above is created on it too).
  try {
    PYLSTM_CUDA_CHECK(cudaStreamCreateWithFlags(&own_stream_, cudaStreamNonBlocking));
    PYLSTM_CUDA_CHECK(cudaStreamCreateWithFlags(&capture_stream_, cudaStreamNonBlocking));
    PYLSTM_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  } catch (...) {
    if (own_stream_ != nullptr) (void)cudaStreamDestroy(own_stream_);
    if (capture_stream_ != nullptr) (void)cudaStreamDestroy(capture_stream_);
    throw;
  }
}

Workspace::~Workspace() {
  (void)cudaEventSynchronize(done_);  // the arena may still be in use by a queued call
  drop_graphs();
  (void)cudaEventDestroy(done_);
  (void)cudaStreamDestroy(capture_stream_);
  (void)cudaStreamDestroy(own_stream_);
}

char* Workspace::arena(size_t bytes) {
  if (bytes > arena_.size()) {
    PYLSTM_CUDA_CHECK(cudaEventSynchronize(done_));
    drop_graphs();
    arena_.reset();
    arena_ = DeviceBuffer(align_up(bytes + bytes / 4, 1 << 20));  // some room to grow
  }
  return arena_.as<char>();
}

void Workspace::begin(cudaStream_t stream) {
  PYLSTM_CUDA_CHECK(cudaStreamWaitEvent(stream, done_, 0));
}

void Workspace::end(cudaStream_t stream) { PYLSTM_CUDA_CHECK(cudaEventRecord(done_, stream)); }

cudaGraphExec_t Workspace::graph(const GraphKey& key) const {
  const auto it = graphs_.find(key);
  return it == graphs_.end() ? nullptr : it->second;
}

void Workspace::store_graph(const GraphKey& key, cudaGraphExec_t exec) {
  if (graphs_.size() >= kMaxGraphs) {
    PYLSTM_CUDA_CHECK(cudaEventSynchronize(done_));
    drop_graphs();
  }
  graphs_[key] = exec;
}

int Workspace::seen(const GraphKey& key) {
  if (seen_.size() >= 4 * kMaxGraphs) seen_.clear();
  return ++seen_[key];
}

void Workspace::drop_graphs() noexcept {
  for (auto& kv : graphs_) (void)cudaGraphExecDestroy(kv.second);
  graphs_.clear();
}

}  // namespace cuda
}  // namespace pylstm
