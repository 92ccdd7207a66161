// Checked access to optional host float32 arrays passed from Python (state blocks): shared by
// _core and _cuda.
#pragma once

#include <pybind11/numpy.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace pylstm {

// The data of `o`, a C-contiguous float32 array of exactly `count` elements (writeable unless T
// is const), or nullptr when `o` is None. Throws pybind11::type_error / std::invalid_argument
// naming the argument.
template <typename T>
T* contiguous_or_null(const pybind11::object& o, int64_t count, const char* name) {
  namespace py = pybind11;
  if (o.is_none()) return nullptr;
  auto a = py::cast<py::array>(o);
  if (!py::isinstance<py::array_t<float>>(a)) {
    throw py::type_error(std::string(name) + " must be a float32 array");
  }
  if (!(a.flags() & py::array::c_style) || a.size() != count) {
    throw std::invalid_argument(std::string(name) + ": expected a C-contiguous array of " +
                                std::to_string(count) + " floats");
  }
  if constexpr (!std::is_const_v<T>) {
    if (!a.writeable()) throw std::invalid_argument(std::string(name) + " must be writeable");
  }
  return static_cast<T*>(const_cast<void*>(a.data()));
}

}  // namespace pylstm
