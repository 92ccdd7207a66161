// _cuda.Network: a canonical network (list of layer dicts) on one GPU. forward() takes numpy
// arrays exactly like _core.Network.forward; forward_device() takes device pointers that
// pylstm/device_arrays.py extracted from CuPy arrays / torch tensors, and the caller's stream.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <limits>
#include <memory>
#include <stdexcept>
#include <string>

#include "../src/cuda_network.hpp"
#include "host_arrays.hpp"
#include "parse_network.hpp"
#include "register.hpp"

namespace py = pybind11;

namespace pylstm {
namespace cuda {
namespace {

DType parse_dtype(const std::string& s, const char* what) {
  if (s == "float32") return DType::F32;
  if (s == "float16") return DType::F16;
  if (s == "bfloat16") return DType::BF16;
  throw py::type_error(std::string(what) + " must be float32, float16 or bfloat16, got " + s);
}

// (ptr, dtype, T, B, F, stride_t, stride_b): a device [T, B, F] array, feature axis contiguous.
struct RowsDesc {
  DeviceRows rows;
  int64_t T = 0, B = 0, F = 0;
};

RowsDesc device_rows(const py::tuple& t, const char* name) {
  if (t.size() != 7) {
    throw std::invalid_argument(std::string(name) +
                                ": expected (ptr, dtype, T, B, F, stride_t, stride_b)");
  }
  RowsDesc d;
  d.rows.data = reinterpret_cast<const void*>(t[0].cast<uintptr_t>());
  d.rows.dtype = parse_dtype(t[1].cast<std::string>(), name);
  d.T = t[2].cast<int64_t>();
  d.B = t[3].cast<int64_t>();
  d.F = t[4].cast<int64_t>();
  d.rows.stride_t = t[5].cast<int64_t>();
  d.rows.stride_b = t[6].cast<int64_t>();
  if (d.T < 0 || d.B < 0 || d.F < 0) throw std::invalid_argument(std::string(name) + ": bad shape");
  if (d.rows.data == nullptr && d.T * d.B * d.F > 0) {
    throw std::invalid_argument(std::string(name) + ": null device pointer");
  }
  return d;
}

const void* device_ptr(const py::object& o) {
  return o.is_none() ? nullptr : reinterpret_cast<const void*>(o.cast<uintptr_t>());
}

class PyCudaNetwork {
 public:
  PyCudaNetwork(const py::list& layers, const std::string& precision, int device,
                const std::string& strategy) {
    NetworkDesc desc = parse_network(layers);
    py::gil_scoped_release release;
    net_ = std::make_unique<CudaNetwork>(desc, precision, device, strategy);
  }

  void forward(const py::array& x, const py::array& y, const py::object& mask, const py::object& h0,
               const py::object& c0, const py::object& h_n, const py::object& c_n) {
    if (x.ndim() == 3) check_sizes(x.shape(0), x.shape(1));  // before the other checks
    const ForwardArgs args =
        host_forward_args(x, y, mask, h0, c0, h_n, c_n, net_->input_size(), net_->output_size(),
                          net_->h_floats(), net_->c_floats());
    py::gil_scoped_release release;
    net_->forward_host(args);
  }

  void forward_device(const py::tuple& x, const py::tuple& y, const py::object& mask,
                      const py::object& h0, const py::object& c0, const py::object& h_n,
                      const py::object& c_n, const std::string& state_dtype, uintptr_t stream) {
    const RowsDesc xd = device_rows(x, "x");
    const RowsDesc yd = device_rows(y, "y");
    if (xd.F != net_->input_size()) {
      throw std::invalid_argument("x: expected " + std::to_string(net_->input_size()) +
                                  " features, got " + std::to_string(xd.F));
    }
    if (yd.T != xd.T || yd.B != xd.B || yd.F != net_->output_size()) {
      throw std::invalid_argument("y: wrong shape");
    }
    check_sizes(xd.T, xd.B);
    DeviceCall call;
    call.steps = xd.T;
    call.batch = xd.B;
    call.x = xd.rows;
    call.y = yd.rows;
    call.mask = static_cast<const uint8_t*>(device_ptr(mask));
    call.state_dtype = parse_dtype(state_dtype, "state_dtype");
    call.h0 = device_ptr(h0);
    call.c0 = device_ptr(c0);
    call.h_n = const_cast<void*>(device_ptr(h_n));
    call.c_n = const_cast<void*>(device_ptr(c_n));
    py::gil_scoped_release release;
    net_->forward_device(call, reinterpret_cast<cudaStream_t>(stream));
  }

  CudaNetwork& net() { return *net_; }

 private:
  std::unique_ptr<CudaNetwork> net_;

  static void check_sizes(int64_t steps, int64_t batch) {
    if (steps > std::numeric_limits<int>::max() / 2 ||
        batch > std::numeric_limits<int>::max() / 2) {
      throw std::invalid_argument("sequence length and batch size must fit in 31 bits");
    }
  }
};

}  // namespace

void register_network(py::module_& m) {
  py::class_<PyCudaNetwork>(m, "Network")
      .def(py::init<const py::list&, const std::string&, int, const std::string&>(),
           py::arg("layers"), py::arg("precision") = "fp32", py::arg("device") = 0,
           py::arg("strategy") = "auto")
      .def("forward", &PyCudaNetwork::forward, py::arg("x"), py::arg("y"),
           py::arg("mask") = py::none(), py::arg("h0") = py::none(), py::arg("c0") = py::none(),
           py::arg("h_n") = py::none(), py::arg("c_n") = py::none(),
           "numpy arrays as _core.Network.forward: copied to the device and back; returns when "
           "y (and h_n, c_n) are written.")
      .def("forward_device", &PyCudaNetwork::forward_device, py::arg("x"), py::arg("y"),
           py::arg("mask") = py::none(), py::arg("h0") = py::none(), py::arg("c0") = py::none(),
           py::arg("h_n") = py::none(), py::arg("c_n") = py::none(),
           py::arg("state_dtype") = "float32", py::arg("stream") = 0,
           "Device arrays: x, y as (ptr, dtype, T, B, F, stride_t, stride_b) with element "
           "strides; mask (uint8 [T, B]) and states (contiguous, state_dtype) as pointers or "
           "None. Enqueued on `stream` (a cudaStream_t as int; 0 = legacy default stream); "
           "returns without waiting.")
      .def(
          "workspace_bytes",
          [](PyCudaNetwork& n, int64_t steps, int64_t batch) {
            return n.net().workspace_bytes(steps, batch);
          },
          py::arg("steps"), py::arg("batch"),
          "Device scratch bytes a forward call on `steps` steps of `batch` sequences uses.")
      .def_property_readonly("backend", [](PyCudaNetwork& n) { return n.net().name(); })
      .def_property_readonly("input_size", [](PyCudaNetwork& n) { return n.net().input_size(); })
      .def_property_readonly("output_size", [](PyCudaNetwork& n) { return n.net().output_size(); })
      .def_property_readonly("device", [](PyCudaNetwork& n) { return n.net().device(); })
      .def_property_readonly("last_strategies",
                             [](PyCudaNetwork& n) { return n.net().last_strategies(); })
      .def(
          "persistent_refusal",
          [](PyCudaNetwork& n, int layer, int batch) {
            py::gil_scoped_release release;
            return n.net().persistent_refusal(layer, batch);
          },
          py::arg("layer"), py::arg("batch"),
          "Why the persistent kernel cannot run this layer at this batch size ('' if it can).");
}

}  // namespace cuda
}  // namespace pylstm
