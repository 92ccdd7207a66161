// The C++ objects behind _core.Network and _core.Stream, shared by their binding files. Both
// wrap any Backend (backend.hpp): the CPU one built here, or one a backend module (_cuda) hands
// over in a capsule (backend_capsule.hpp).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>

#include "pylstm/backend.hpp"

namespace pylstm {

class PyNetwork {
 public:
  explicit PyNetwork(std::shared_ptr<const Backend> backend);
  // A canonical network (list of layer dicts, see Layer.to_core()) packed for the CPU.
  PyNetwork(const pybind11::list& layers, const std::string& isa, const std::string& precision);

  // x: [T, B, I]; y: [T, B, O] (written); mask: uint8 [T, B]; states contiguous
  // [sum_l D_l, B, Hout] / [sum_l D_l, B, H].
  void forward(const pybind11::array& x, const pybind11::array& y, const pybind11::object& mask,
               const pybind11::object& h0, const pybind11::object& c0, const pybind11::object& h_n,
               const pybind11::object& c_n) const;
  // x, y: (ptr, dtype, T, B, F, stride_t, stride_b) device arrays; mask, states: device pointers
  // or None; stream: a cudaStream_t as an integer.
  void forward_device(const pybind11::tuple& x, const pybind11::tuple& y,
                      const pybind11::object& mask, const pybind11::object& h0,
                      const pybind11::object& c0, const pybind11::object& h_n,
                      const pybind11::object& c_n, const std::string& state_dtype,
                      uintptr_t stream) const;

  const Backend& backend() const { return *backend_; }
  std::shared_ptr<const Backend> shared_backend() const { return backend_; }
  int64_t input_size() const { return backend_->input_size(); }
  int64_t output_size() const { return backend_->output_size(); }
  // Floats per batch row of the h and c state arrays.
  int64_t h_floats() const { return backend_->h_floats(); }
  int64_t c_floats() const { return backend_->c_floats(); }

 private:
  std::shared_ptr<const Backend> backend_;
};

// What the C API (register_capi.cpp) uses of a _core.Stream: its step on rows and its carried
// state, no Python objects (so callable without the GIL). Not thread-safe: one caller at a
// time per stream, as for step() from Python.
class RawStream {
 public:
  virtual ~RawStream() = default;
  // x: [steps, B, I] rows, y: [steps, B, O] rows (written); steps >= 1; the state carries over.
  virtual void step_rows(int64_t steps, Rows<const float> x, Rows<float> y) = 0;
  virtual int64_t batch() const = 0;
  // The carried state as host floats: h_floats() * B and c_floats() * B of the stream's
  // network (StreamState::get/set/reset; c null: not wanted / zeros).
  virtual StreamState& state() = 0;
};

// The RawStream of a _core.Stream object, or nullptr for any other object.
RawStream* raw_stream(const pybind11::handle& core);

}  // namespace pylstm
