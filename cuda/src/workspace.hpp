// A workspace: everything one forward pass needs besides the weights, reused from call to call.
// The network keeps a pool of them; a call leases one, so concurrent calls (from several host
// threads) never share buffers, cuBLAS scratch or graphs.
//
// Ordering across streams: a call may run on any stream. Before it enqueues work, its stream
// waits for the event that the workspace's previous call recorded at its end (begin/end), so
// that two calls on different streams never overlap on the same buffers.
#pragma once

#include <cuda_runtime_api.h>

#include <map>
#include <tuple>

#include "cublas_ops.hpp"
#include "device.hpp"

namespace pylstm {
namespace cuda {

// What a captured step loop depends on besides the workspace's buffers.
struct GraphKey {
  int layer = 0;
  int64_t steps = 0, batch = 0;
  bool mask = false;
  bool operator<(const GraphKey& o) const {
    return std::tie(layer, steps, batch, mask) < std::tie(o.layer, o.steps, o.batch, o.mask);
  }
};

class Workspace {
 public:
  explicit Workspace(int device);
  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  // The arena, at least `bytes` long. Growing it waits for this workspace's previous call and
  // drops its graphs (they point into the old arena).
  char* arena(size_t bytes);

  void begin(cudaStream_t stream);  // `stream` waits for this workspace's previous call
  void end(cudaStream_t stream);    // marks the end of this call's work on `stream`

  cudaStream_t own_stream() const { return own_stream_; }          // for host-array calls
  cudaStream_t capture_stream() const { return capture_stream_; }  // graph capture only
  Cublas& cublas() { return cublas_; }

  // Instantiated graphs of step loops; null when absent.
  cudaGraphExec_t graph(const GraphKey& key) const;
  void store_graph(const GraphKey& key, cudaGraphExec_t exec);
  // How often a call shape was seen (counting this time): a loop is captured on its second
  // run, so that one-off shapes (a new sequence length every call) never pay for a capture.
  int seen(const GraphKey& key);

 private:
  int device_;
  cudaStream_t own_stream_ = nullptr;
  cudaStream_t capture_stream_ = nullptr;
  cudaEvent_t done_ = nullptr;
  Cublas cublas_;
  DeviceBuffer arena_;
  std::map<GraphKey, cudaGraphExec_t> graphs_;
  std::map<GraphKey, int> seen_;

  void drop_graphs() noexcept;
};

}  // namespace cuda
}  // namespace pylstm
