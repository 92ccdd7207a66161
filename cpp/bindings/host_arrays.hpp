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
  // Signed arithmetic: a reversed axis has a negative stride (sizeof is unsigned, and dividing
  // by it would turn -16 bytes into 2^62 - 4 elements; UBSan caught the overflow that followed).
  constexpr py::ssize_t float_size = static_cast<py::ssize_t>(sizeof(float));
  if (a.strides(0) % float_size || a.strides(1) % float_size) {
    throw std::invalid_argument(std::string(name) + ": strides must be whole floats");
  }
  if constexpr (!std::is_const_v<T>) {
    if (!a.writeable()) throw std::invalid_argument(std::string(name) + " must be writeable");
  }
  T* data = static_cast<T*>(const_cast<void*>(a.data()));
  return Rows<T>{data, static_cast<int64_t>(a.strides(0) / float_size),
                 static_cast<int64_t>(a.strides(1) / float_size)};
}

// The arguments of a forward over host arrays, checked: x [T, B, input_size], y [T, B,
// output_size] (written), mask uint8 [T, B] or None, states contiguous (h_floats / c_floats
// per sequence) or None.
inline ForwardArgs host_forward_args(const pybind11::array& x, const pybind11::array& y,
                                     const pybind11::object& mask, const pybind11::object& h0,
                                     const pybind11::object& c0, const pybind11::object& h_n,
                                     const pybind11::object& c_n, int64_t input_size,
                                     int64_t output_size, int64_t h_floats, int64_t c_floats) {
  namespace py = pybind11;
  if (x.ndim() != 3) throw std::invalid_argument("x must be 3-D [T, B, I]");
  ForwardArgs args;
  args.steps = x.shape(0);
  args.batch = x.shape(1);
  args.x = rows_of<const float>(x, args.steps, args.batch, input_size, "x");
  args.y = rows_of<float>(y, args.steps, args.batch, output_size, "y");
  if (!mask.is_none()) {
    auto m = py::cast<py::array>(mask);
    if (!py::isinstance<py::array_t<uint8_t>>(m) || !(m.flags() & py::array::c_style) ||
        m.size() != args.steps * args.batch) {
      throw std::invalid_argument("mask must be a C-contiguous uint8 array [T, B]");
    }
    args.mask = static_cast<const uint8_t*>(m.data());
  }
  const int64_t B = args.batch;
  args.h0 = contiguous_or_null<const float>(h0, h_floats * B, "h0");
  args.c0 = contiguous_or_null<const float>(c0, c_floats * B, "c0");
  args.h_n = contiguous_or_null<float>(h_n, h_floats * B, "h_n");
  args.c_n = contiguous_or_null<float>(c_n, c_floats * B, "c_n");
  return args;
}

// `chunk` as a float32 numpy array: float32 numpy arrays as they are (the fast path of a
// streaming step), float16 and float64 numpy arrays converted here; everything else (bfloat16,
// torch tensors, lists, wrong dtypes) through pylstm.runtime.validation.as_float_array, which
// converts or raises pylstm's TypeError.
inline pybind11::array float32_array(const pybind11::handle& chunk) {
  if (pybind11::isinstance<pybind11::array_t<float>>(chunk))
    return pybind11::reinterpret_borrow<pybind11::array>(chunk);
  if (pybind11::isinstance<pybind11::array>(chunk)) {
    const pybind11::dtype dtype = pybind11::reinterpret_borrow<pybind11::array>(chunk).dtype();
    if (dtype.kind() == 'f' && (dtype.itemsize() == 2 || dtype.itemsize() == 8)) {
      return pybind11::array_t<float, pybind11::array::forcecast>::ensure(chunk);
    }
  }
  return pybind11::module_::import("pylstm.runtime.validation")
      .attr("as_float_array")(chunk, "chunk")
      .cast<pybind11::array>();
}

}  // namespace pylstm
