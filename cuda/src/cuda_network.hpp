// The CUDA backend: a canonical network (network.hpp) with its weights on one GPU, and its
// forward pass on device arrays (any stream) or on host arrays (copied in and out).
#pragma once

#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "device_layer.hpp"
#include "layer_run.hpp"
#include "pylstm/backend.hpp"
#include "pylstm/network.hpp"
#include "workspace.hpp"

namespace pylstm {
namespace cuda {

// A [T, B, F] device array whose feature axis is contiguous; strides in elements.
struct DeviceRows {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int64_t stride_t = 0;
  int64_t stride_b = 0;
};

// One forward pass on device memory. States are contiguous [sum_l D_l, B, Hout_l] (h) and
// [sum_l D_l, B, H_l] (c) blocks as in pylstm::ForwardArgs, of type state_dtype; null = zeros
// in / not wanted out. The mask is a contiguous uint8 [T, B] device array (null: all valid).
struct DeviceCall {
  int64_t steps = 0, batch = 0;
  DeviceRows x;
  DeviceRows y;  // written
  const uint8_t* mask = nullptr;
  DType state_dtype = DType::F32;
  const void* h0 = nullptr;
  const void* c0 = nullptr;
  void* h_n = nullptr;
  void* c_n = nullptr;
};

// Parses "fp32"/"float32", "fp16"/"float16", "bf16"/"bfloat16"; std::invalid_argument
// otherwise (naming what CUDA offers).
DType parse_cuda_precision(const std::string& name);

Strategy parse_strategy(const std::string& name);

class CudaNetwork {
 public:
  // Uploads the weights to `device`. strategy: "auto" (by batch size), "persistent" (wherever
  // the persistent kernel fits), "graph" (step loop in CUDA graphs), "steps" (step loop,
  // launched directly).
  CudaNetwork(const NetworkDesc& net, const std::string& precision, int device,
              const std::string& strategy);
  ~CudaNetwork();

  // Enqueues the forward pass on `stream` (0 = the legacy default stream) and returns.
  void forward_device(const DeviceCall& call, cudaStream_t stream);
  // Host float32 arrays in and out; returns when the outputs are written.
  void forward_host(const ForwardArgs& args);

  std::string name() const;
  int device() const { return device_; }
  DType compute_type() const { return ct_; }
  int64_t input_size() const { return desc_.input_size(); }
  int64_t output_size() const { return desc_.output_size(); }
  int64_t h_floats() const { return h_floats_; }  // state floats per sequence
  int64_t c_floats() const { return c_floats_; }
  // Device scratch bytes of a call on device arrays (besides weights, inputs and outputs).
  size_t workspace_bytes(int64_t steps, int64_t batch) const;
  // The strategy each layer used in the last call ("persistent", "graph" or "steps").
  std::vector<std::string> last_strategies() const;
  // Why the persistent kernel cannot run layer `layer` at this batch size ("" when it can).
  std::string persistent_refusal(int layer, int batch);

 private:
  struct Layout;
  class Lease;

  NetworkDesc desc_;
  int device_;
  DType ct_;
  Strategy strategy_;
  int persistent_max_batch_;
  int persistent_max_blocks_;
  size_t xp_bytes_;  // input projections are computed for blocks of steps of this many bytes
  std::vector<DeviceLayer> layers_;
  int64_t h_floats_ = 0, c_floats_ = 0;

  mutable std::mutex mutex_;  // guards everything below
  std::vector<std::unique_ptr<Workspace>> idle_;
  std::map<std::pair<int, int>, std::pair<bool, PersistentPlan>> plans_;
  std::map<std::pair<int, int>, std::string> refusals_;
  std::vector<std::string> last_strategies_;

  Layout plan_layout(int64_t T, int64_t B, bool staging) const;
  void run(Workspace& ws, char* base, const Layout& lay, const DeviceCall& call,
           cudaStream_t stream);
  bool persistent_plan(int layer, int batch, PersistentPlan* plan);
  std::unique_ptr<Workspace> take_workspace();
  void give_back(std::unique_ptr<Workspace> ws);
};

}  // namespace cuda
}  // namespace pylstm
