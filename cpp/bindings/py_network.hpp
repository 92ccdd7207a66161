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
  size_t workspace_bytes(int64_t T, int64_t B) const { return backend_->workspace_bytes(T, B); }

 private:
  NetworkDesc desc_;
  std::shared_ptr<const Backend> backend_;
  int64_t h_floats_ = 0, c_floats_ = 0;
};

}  // namespace pylstm
