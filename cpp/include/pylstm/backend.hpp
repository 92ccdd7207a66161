// The backend seam: a network packed for one device. The CPU backend lives in cpp/src, the CUDA
// backend in cuda/ (its own module, loaded on demand). Inputs are validated before they get here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

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

class Backend {
 public:
  virtual ~Backend() = default;
  // Runs the whole network. Safe to call from several threads at once.
  virtual void forward(const ForwardArgs& args) const = 0;
  // Human-readable description of the code path, e.g. "cpu/avx512".
  virtual std::string name() const = 0;
  // Bytes of scratch memory a forward call on T steps of B sequences uses (besides weights,
  // inputs and outputs).
  virtual size_t workspace_bytes(int64_t /*T*/, int64_t /*B*/) const { return 0; }
};

// isa: "auto" (best the CPU supports), "avx512", "avx2" or "generic"; throws
// std::invalid_argument for an unknown name and std::runtime_error if the CPU lacks it.
// precision: how weights are stored: "fp32", "bf16" or "int8" (compute is fp32 either way).
std::unique_ptr<Backend> make_cpu_backend(const NetworkDesc& net, const std::string& isa,
                                          const std::string& precision = "fp32");

}  // namespace pylstm
