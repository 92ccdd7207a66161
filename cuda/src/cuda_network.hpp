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

// One forward pass on device memory: pylstm::DeviceArgs (backend.hpp); its stream is a
// cudaStream_t.
using DeviceCall = DeviceArgs;

// Parses "fp32"/"float32", "fp16"/"float16", "bf16"/"bfloat16"; std::invalid_argument
// otherwise (naming what CUDA offers).
DType parse_cuda_precision(const std::string& name);

Strategy parse_strategy(const std::string& name);

// The CUDA backend of backend.hpp. Streams (open_state / step) keep their state in device
// memory: a step copies its inputs in and its outputs out, nothing else.
class CudaNetwork final : public Backend {
 public:
  // Uploads the weights to `device`. strategy: "auto" (by batch size), "persistent" (wherever
  // the persistent kernel fits), "graph" (step loop in CUDA graphs), "steps" (step loop,
  // launched directly). Keeps no host copy of the weights.
  CudaNetwork(const NetworkDesc& net, const std::string& precision, int device,
              const std::string& strategy);
  ~CudaNetwork() override;

  std::string name() const override;
  int device() const override { return device_; }
  DType compute_type() const { return ct_; }
  // Device scratch bytes of a call on device arrays (besides weights, inputs and outputs).
  size_t workspace_bytes(int64_t steps, int64_t batch) const override;

  // Host float32 arrays in and out; returns when the outputs are written.
  void forward(const ForwardArgs& args) const override;
  // Enqueues the forward pass on args.stream (null = the legacy default stream) and returns.
  void forward_device(const DeviceArgs& args) const override;

  std::unique_ptr<StreamState> open_state(int64_t batch) const override;
  void step(StreamState& state, int64_t steps, Rows<const float> x, Rows<float> y) const override;
  NetworkDesc unpack() const override;

  // The strategy each layer used in the last call ("persistent", "graph" or "steps").
  std::vector<std::string> last_strategies() const override;
  // Why the persistent kernel cannot run layer `layer` at this batch size ("" when it can).
  std::string persistent_refusal(int layer, int batch) const override;

 private:
  struct Layout;

  int device_;
  DType ct_;
  Strategy strategy_;
  int persistent_max_batch_;
  int persistent_max_blocks_;
  size_t xp_bytes_;  // input projections are computed for blocks of steps of this many bytes
  std::vector<DeviceLayer> layers_;

  mutable std::mutex mutex_;  // guards everything below
  mutable std::vector<std::unique_ptr<Workspace>> idle_;
  mutable std::map<std::pair<int, int>, std::pair<bool, PersistentPlan>> plans_;
  mutable std::map<std::pair<int, int>, std::string> refusals_;
  mutable std::vector<std::string> last_strategies_;

  // Which host-array buffers a call stages in the arena besides its own: none (device
  // arrays), the sequences and mask (a stream's step: its states are on the device already),
  // or those and the states.
  enum class Staging { None, Sequences, All };
  Layout plan_layout(int64_t T, int64_t B, Staging staging) const;
  void run(Workspace& ws, char* base, const Layout& lay, const DeviceCall& call,
           cudaStream_t stream) const;
  // Host arrays in and out. The states are the host arrays of `args`, or, when state_h is not
  // null, float32 device arrays (h_floats * B and c_floats * B, a stream's) read and written
  // in place.
  void forward_host(const ForwardArgs& args, float* state_h, float* state_c) const;
  bool persistent_plan(int layer, int batch, PersistentPlan* plan) const;
  std::unique_ptr<Workspace> take_workspace() const;
  void give_back(std::unique_ptr<Workspace> ws) const;
};

}  // namespace cuda
}  // namespace pylstm
