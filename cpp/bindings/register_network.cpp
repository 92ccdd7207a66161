// _core.Network: a packed network on any backend (backend.hpp), and its forward pass on numpy
// arrays (any backend) or on device arrays (CUDA). Built for the CPU from layer dicts, or from
// the capsule of a backend module (pylstm._cuda's Network factory calls from_capsule).
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "backend_capsule.hpp"
#include "host_arrays.hpp"
#include "parse_network.hpp"
#include "py_network.hpp"
#include "pylstm/backend.hpp"
#include "register.hpp"

namespace py = pybind11;

namespace pylstm {
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

std::shared_ptr<const Backend> cpu_backend(const py::list& layers, const std::string& isa,
                                           const std::string& precision) {
  // The unpacked description lives only while the weights are packed: the backend keeps its
  // packed copy alone.
  const NetworkDesc desc = parse_network(layers);
  return make_cpu_backend(desc, isa, precision);
}

}  // namespace

PyNetwork::PyNetwork(std::shared_ptr<const Backend> backend) : backend_(std::move(backend)) {}

PyNetwork::PyNetwork(const py::list& layers, const std::string& isa, const std::string& precision)
    : backend_(cpu_backend(layers, isa, precision)) {}

void PyNetwork::forward(const py::array& x, const py::array& y, const py::object& mask,
                        const py::object& h0, const py::object& c0, const py::object& h_n,
                        const py::object& c_n) const {
  const ForwardArgs args = host_forward_args(x, y, mask, h0, c0, h_n, c_n, input_size(),
                                             output_size(), h_floats(), c_floats());
  py::gil_scoped_release release;
  backend_->forward(args);
}

void PyNetwork::forward_device(const py::tuple& x, const py::tuple& y, const py::object& mask,
                               const py::object& h0, const py::object& c0, const py::object& h_n,
                               const py::object& c_n, const std::string& state_dtype,
                               uintptr_t stream) const {
  const RowsDesc xd = device_rows(x, "x");
  const RowsDesc yd = device_rows(y, "y");
  if (xd.F != input_size()) {
    throw std::invalid_argument("x: expected " + std::to_string(input_size()) + " features, got " +
                                std::to_string(xd.F));
  }
  if (yd.T != xd.T || yd.B != xd.B || yd.F != output_size()) {
    throw std::invalid_argument("y: wrong shape");
  }
  DeviceArgs args;
  args.steps = xd.T;
  args.batch = xd.B;
  args.x = xd.rows;
  args.y = yd.rows;
  args.mask = static_cast<const uint8_t*>(device_ptr(mask));
  args.state_dtype = parse_dtype(state_dtype, "state_dtype");
  args.h0 = device_ptr(h0);
  args.c0 = device_ptr(c0);
  args.h_n = const_cast<void*>(device_ptr(h_n));
  args.c_n = const_cast<void*>(device_ptr(c_n));
  args.stream = reinterpret_cast<void*>(stream);
  py::gil_scoped_release release;
  backend_->forward_device(args);
}

void register_network(py::module_& m) {
  py::class_<PyNetwork>(m, "Network")
      .def(py::init<const py::list&, const std::string&, const std::string&>(), py::arg("layers"),
           py::arg("isa") = "auto", py::arg("precision") = "fp32")
      .def_static(
          "from_capsule",
          [](const py::object& capsule) { return PyNetwork(backend_from_capsule(capsule)); },
          py::arg("capsule"),
          "The network a backend module built (a 'pylstm.Backend' capsule, e.g. from "
          "pylstm._cuda.make_backend).")
      .def("forward", &PyNetwork::forward, py::arg("x"), py::arg("y"), py::arg("mask") = py::none(),
           py::arg("h0") = py::none(), py::arg("c0") = py::none(), py::arg("h_n") = py::none(),
           py::arg("c_n") = py::none(),
           "numpy arrays; on a CUDA backend copied to the device and back. Returns when y (and "
           "h_n, c_n) are written.")
      .def("forward_device", &PyNetwork::forward_device, py::arg("x"), py::arg("y"),
           py::arg("mask") = py::none(), py::arg("h0") = py::none(), py::arg("c0") = py::none(),
           py::arg("h_n") = py::none(), py::arg("c_n") = py::none(),
           py::arg("state_dtype") = "float32", py::arg("stream") = 0,
           "Device arrays (CUDA backends only): x, y as (ptr, dtype, T, B, F, stride_t, "
           "stride_b) with element strides; mask (uint8 [T, B]) and states (contiguous, "
           "state_dtype) as pointers or None. Enqueued on `stream` (a cudaStream_t as int; 0 = "
           "legacy default stream); returns without waiting.")
      .def(
          "workspace_bytes",
          [](const PyNetwork& n, int64_t steps, int64_t batch) {
            return n.backend().workspace_bytes(steps, batch);
          },
          py::arg("steps"), py::arg("batch"),
          "Scratch bytes (device memory on CUDA) a forward call on `steps` steps of `batch` "
          "sequences uses.")
      .def(
          "unpack",
          [](const PyNetwork& n) {
            NetworkDesc desc;
            {
              py::gil_scoped_release release;
              desc = n.backend().unpack();
            }
            return network_to_python(desc);
          },
          "The canonical network rebuilt from the packed weights, as the list of layer dicts "
          "Layer.to_core() makes (reduced precisions widened to float32; the folded bias as "
          "bias_w, bias_r zeros but the GRU linear_before_reset recurrent n bias). Packing it "
          "again with the same precision gives bit-identical outputs.")
      .def(
          "persistent_refusal",
          [](const PyNetwork& n, int layer, int batch) {
            py::gil_scoped_release release;
            return n.backend().persistent_refusal(layer, batch);
          },
          py::arg("layer"), py::arg("batch"),
          "Why the CUDA persistent kernel cannot run this layer at this batch size ('' if it "
          "can).")
      .def_property_readonly("backend", [](const PyNetwork& n) { return n.backend().name(); })
      .def_property_readonly("input_size", &PyNetwork::input_size)
      .def_property_readonly("output_size", &PyNetwork::output_size)
      .def_property_readonly("h_floats", &PyNetwork::h_floats)
      .def_property_readonly("c_floats", &PyNetwork::c_floats)
      .def_property_readonly("device", [](const PyNetwork& n) { return n.backend().device(); })
      .def_property_readonly("last_strategies",
                             [](const PyNetwork& n) { return n.backend().last_strategies(); });
}

}  // namespace pylstm
