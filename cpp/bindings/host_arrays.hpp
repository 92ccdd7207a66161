// Checked access to host float32 arrays passed from Python (sequences, state blocks): shared by
// _core and _cuda.
#pragma once

#include <pybind11/numpy.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "pylstm/backend.hpp"

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

// A [T, B, F] float32 array whose last axis is contiguous, as Rows (writeable unless T is
// const). Throws pybind11::type_error / std::invalid_argument naming the argument.
template <typename T>
Rows<T> rows_of(const pybind11::array& a, int64_t steps, int64_t batch, int64_t features,
                const char* name) {
  namespace py = pybind11;
  if (!py::isinstance<py::array_t<float>>(a)) {
    throw py::type_error(std::string(name) + " must be a float32 array");
  }
  if (a.ndim() != 3 || a.shape(0) != steps || a.shape(1) != batch || a.shape(2) != features) {
    throw std::invalid_argument(std::string(name) + ": wrong shape");
  }
  if (a.size() == 0) {
    return Rows<T>{nullptr, 0, 0};  // nothing to read or write (numpy gives 0 strides)
  }
  if (features > 1 && a.strides(2) != static_cast<py::ssize_t>(sizeof(float))) {
    throw std::invalid_argument(std::string(name) + ": the feature axis must be contiguous");
  }
  if (a.strides(0) % sizeof(float) || a.strides(1) % sizeof(float)) {
    throw std::invalid_argument(std::string(name) + ": strides must be whole floats");
  }
  if constexpr (!std::is_const_v<T>) {
    if (!a.writeable()) throw std::invalid_argument(std::string(name) + " must be writeable");
  }
  T* data = static_cast<T*>(const_cast<void*>(a.data()));
  return Rows<T>{data, static_cast<int64_t>(a.strides(0) / sizeof(float)),
                 static_cast<int64_t>(a.strides(1) / sizeof(float))};
}

}  // namespace pylstm
