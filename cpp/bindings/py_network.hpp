// The C++ objects behind _core.Network and _core.Stream, shared by their binding files.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>

#include "pylstm/backend.hpp"

namespace pylstm {

// A canonical network (list of layer dicts, see pylstm/network.py) packed for the CPU.
class PyNetwork {
 public:
  PyNetwork(const pybind11::list& layers, const std::string& isa, const std::string& precision);

  // x: [T, B, I]; y: [T, B, O] (written); mask: uint8 [T, B]; states contiguous
  // [sum_l D_l, B, Hout] / [sum_l D_l, B, H].
  void forward(const pybind11::array& x, const pybind11::array& y, const pybind11::object& mask,
               const pybind11::object& h0, const pybind11::object& c0, const pybind11::object& h_n,
               const pybind11::object& c_n) const;

  std::string backend_name() const { return backend_->name(); }
  int64_t input_size() const { return desc_.input_size(); }
  int64_t output_size() const { return desc_.output_size(); }
  // Floats per batch row of the h and c state arrays.
  int64_t h_floats() const { return h_floats_; }
  int64_t c_floats() const { return c_floats_; }
  std::shared_ptr<const Backend> backend() const { return backend_; }
  const NetworkDesc& desc() const { return desc_; }
  size_t workspace_bytes(int64_t T, int64_t B) const { return backend_->workspace_bytes(T, B); }

 private:
  NetworkDesc desc_;
  std::shared_ptr<const Backend> backend_;
  int64_t h_floats_ = 0, c_floats_ = 0;
};

// What the C API (register_capi.cpp) uses of a _core.Stream: its step on rows and its carried
// state in place, no Python objects (so callable without the GIL). Not thread-safe: one caller
// at a time per stream, as for step() from Python.
class RawStream {
 public:
  virtual ~RawStream() = default;
  // x: [steps, B, I] rows, y: [steps, B, O] rows (written); steps >= 1; the state carries over.
  virtual void step_rows(int64_t steps, Rows<const float> x, Rows<float> y) = 0;
  virtual int64_t batch() const = 0;
  // The carried state: h_floats() * B and c_floats() * B floats of the stream's network.
  virtual float* h_state() = 0;
  virtual float* c_state() = 0;
};

// The RawStream of a _core.Stream object, or nullptr for any other object.
RawStream* raw_stream(const pybind11::handle& core);

}  // namespace pylstm
