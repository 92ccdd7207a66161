// The backend seam: a network packed for one device. Every backend (the CPU one in cpp/src, the
// CUDA one in cuda/, its own module loaded on demand) implements this interface, and one binding
// (cpp/bindings: _core.Network, _core.Stream, the C API) serves them all. Inputs are validated
// before they get here.
//
// Shapes, per call of T steps of B sequences (L layers, D_l directions of layer l):
//   x        [T, B, input_size]                 y  [T, B, output_size]
//   h state  [sum_l D_l, B, Hout_l] blocks      c  [sum_l D_l, B, H_l] blocks
//            (h_floats() / c_floats() floats per sequence; one block per layer and direction)
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "pylstm/dtype.hpp"
#include "pylstm/network.hpp"

namespace pylstm {

// Rows of a [T, B, F] array whose feature axis is contiguous: row (t, b) starts at
// data + t*stride_t + b*stride_b (strides in elements). Covers time-major and batch-first.
template <typename T>
struct Rows {
  T* data = nullptr;
  int64_t stride_t = 0;
  int64_t stride_b = 0;
  T* row(int64_t t, int64_t b) const { return data + t * stride_t + b * stride_b; }
};

// A forward pass on host float32 arrays.
struct ForwardArgs {
  int64_t steps = 0;    // T
  int64_t batch = 0;    // B
  Rows<const float> x;  // [T, B, input_size]
  // [T, B] (row t*batch + b), nonzero = valid step; nullptr: every step valid.
  const uint8_t* mask = nullptr;
  // Initial states, contiguous [L*D, B, Hout] and [L*D, B, H] (LSTM only); nullptr: zeros.
  const float* h0 = nullptr;
  const float* c0 = nullptr;
  Rows<float> y;  // [T, B, output_size]
  // Final states, contiguous, same shapes as h0/c0; nullptr: not wanted.
  float* h_n = nullptr;
  float* c_n = nullptr;
};

// A [T, B, F] device array whose feature axis is contiguous; strides in elements.
struct DeviceRows {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int64_t stride_t = 0;
  int64_t stride_b = 0;
};

// A forward pass on device memory, enqueued on `stream`. States are contiguous blocks as in
// ForwardArgs, of type state_dtype; null = zeros in / not wanted out. The mask is a contiguous
// uint8 [T, B] device array (null: all valid).
struct DeviceArgs {
  int64_t steps = 0, batch = 0;
  DeviceRows x;
  DeviceRows y;  // written
  const uint8_t* mask = nullptr;
  DType state_dtype = DType::F32;
  const void* h0 = nullptr;
  const void* c0 = nullptr;
  void* h_n = nullptr;
  void* c_n = nullptr;
  void* stream = nullptr;  // a cudaStream_t, opaque here; nullptr = the legacy default stream
};

// What the binding needs to know of a packed network (the weights stay inside the backend).
struct NetworkSizes {
  int64_t input_size = 0;
  int64_t output_size = 0;
  int64_t h_floats = 0;  // state floats per sequence: sum over layers of D * Hout
  int64_t c_floats = 0;  //                            sum over layers of D * H
  bool lstm = false;     // some layer is an LSTM (has a cell state)
  int num_layers = 0;
  // Floats per sequence of each state block, in order (layer 0 direction 0, ...).
  std::vector<int64_t> h_blocks, c_blocks;

  static NetworkSizes of(const NetworkDesc& net);
};

// The carried state of a stream of B sequences, in the memory of its backend's device (host
// memory for the CPU backend, device memory for CUDA). Opened by Backend::open_state and only
// stepped by that backend. Not thread-safe: one caller at a time.
//
// get/set/reset copy between it and host floats: the whole state (row < 0; h: h_floats * B
// floats laid out [L*D, B, Hout], c likewise) or one sequence's (row = b: h_floats floats
// laid out [L*D, Hout], c likewise).
class StreamState {
 public:
  StreamState(const NetworkSizes& sizes, int64_t batch) : sizes_(sizes), batch_(batch) {}
  virtual ~StreamState() = default;
  StreamState(const StreamState&) = delete;
  StreamState& operator=(const StreamState&) = delete;

  int64_t batch() const { return batch_; }
  // The backend that opened it (for Backend::step to check).
  const void* owner() const { return owner_; }

  void get(float* h, float* c, int64_t row = -1) const;        // h, c may be null (not wanted)
  void set(const float* h, const float* c, int64_t row = -1);  // c null: zeros
  void reset(int64_t row = -1);                                // zeros

 protected:
  enum class Which { H, C };
  // Primitive copies on the state memory; offsets and counts in floats of the whole h or c.
  virtual void copy_out(Which which, int64_t offset, int64_t count, float* dst) const = 0;
  virtual void copy_in(Which which, int64_t offset, int64_t count, const float* src) = 0;
  virtual void zero(Which which, int64_t offset, int64_t count) = 0;

  const NetworkSizes& sizes_;  // the backend's (outlives its states)
  int64_t batch_;
  const void* owner_ = nullptr;

 private:
  friend class Backend;
  template <typename Fn>
  void for_blocks(Which which, int64_t row, Fn fn) const;
};

class Backend {
 public:
  virtual ~Backend() = default;

  const NetworkSizes& sizes() const { return sizes_; }
  int64_t input_size() const { return sizes_.input_size; }
  int64_t output_size() const { return sizes_.output_size; }
  int64_t h_floats() const { return sizes_.h_floats; }
  int64_t c_floats() const { return sizes_.c_floats; }

  // Human-readable description of the code path, e.g. "cpu/avx512".
  virtual std::string name() const = 0;
  // Bytes of scratch memory a forward call on T steps of B sequences uses (besides weights,
  // inputs and outputs): host memory on the CPU, device memory on CUDA.
  virtual size_t workspace_bytes(int64_t /*T*/, int64_t /*B*/) const { return 0; }
  // The device the weights live on; -1 for the host.
  virtual int device() const { return -1; }

  // Runs the whole network on host arrays; returns when the outputs are written. Safe to call
  // from several threads at once.
  virtual void forward(const ForwardArgs& args) const = 0;
  // Enqueues the whole network on device arrays and returns. The CPU backend throws
  // std::invalid_argument ("needs a CUDA backend").
  virtual void forward_device(const DeviceArgs& args) const;

  // Streaming with an external state: open_state(B) makes a zero state for B sequences; step
  // runs `steps` >= 1 steps of x [steps, B, input_size] host rows, writes y [steps, B,
  // output_size] host rows, and carries the state over (it stays in the device's memory).
  virtual std::unique_ptr<StreamState> open_state(int64_t batch) const = 0;
  virtual void step(StreamState& state, int64_t steps, Rows<const float> x,
                    Rows<float> y) const = 0;

  // The canonical network rebuilt from the packed weights (reduced precisions widened back to
  // float32; biases as bias_w = the folded bias, bias_r = zeros except the GRU
  // linear_before_reset recurrent bias of n). Packing it again with the same precision gives
  // the same packed weights, hence bit-identical outputs.
  virtual NetworkDesc unpack() const = 0;

  // Diagnostics of backends with several code paths per layer (CUDA): how each layer ran in
  // the last call, and why the persistent kernel cannot run `layer` at `batch` ("" when it
  // can). The CPU backend has one path: an empty list, and a refusal naming itself.
  virtual std::vector<std::string> last_strategies() const { return {}; }
  virtual std::string persistent_refusal(int layer, int batch) const;

 protected:
  NetworkSizes sizes_;
  // Stamps a state opened by this backend (StreamState::owner).
  void adopt(StreamState& state) const { state.owner_ = this; }
  // The state, checked to be this backend's.
  template <typename S>
  S& own(StreamState& state) const {
    check_owner(state);
    return static_cast<S&>(state);
  }

 private:
  void check_owner(const StreamState& state) const;
};

// isa: "auto" (best the CPU supports), "avx512", "avx2" or "generic"; throws
// std::invalid_argument for an unknown name and std::runtime_error if the CPU lacks it.
// precision: how weights are stored: "fp32", "bf16" or "int8" (compute is fp32 either way).
std::unique_ptr<Backend> make_cpu_backend(const NetworkDesc& net, const std::string& isa,
                                          const std::string& precision = "fp32");

}  // namespace pylstm
