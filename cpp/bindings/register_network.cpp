// _core.Network: a canonical network (list of layer dicts, see pylstm/network.py) packed for the
// CPU, and its forward pass on numpy arrays.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "host_arrays.hpp"
#include "parse_network.hpp"
#include "py_network.hpp"
#include "pylstm/backend.hpp"
#include "register.hpp"

namespace py = pybind11;

namespace pylstm {

PyNetwork::PyNetwork(const py::list& layers, const std::string& isa, const std::string& precision)
    : desc_(parse_network(layers)) {
  backend_ = make_cpu_backend(desc_, isa, precision);
  for (const LayerDesc& L : desc_.layers) {
    h_floats_ += L.num_directions() * L.output_size();
    c_floats_ += L.num_directions() * L.hidden_size;
  }
}

void PyNetwork::forward(const py::array& x, const py::array& y, const py::object& mask,
                        const py::object& h0, const py::object& c0, const py::object& h_n,
                        const py::object& c_n) const {
  const ForwardArgs args = host_forward_args(x, y, mask, h0, c0, h_n, c_n, desc_.input_size(),
                                             desc_.output_size(), h_floats_, c_floats_);
  py::gil_scoped_release release;
  backend_->forward(args);
}

void register_network(py::module_& m) {
  py::class_<PyNetwork>(m, "Network")
      .def(py::init<const py::list&, const std::string&, const std::string&>(), py::arg("layers"),
           py::arg("isa") = "auto", py::arg("precision") = "fp32")
      .def("forward", &PyNetwork::forward, py::arg("x"), py::arg("y"), py::arg("mask") = py::none(),
           py::arg("h0") = py::none(), py::arg("c0") = py::none(), py::arg("h_n") = py::none(),
           py::arg("c_n") = py::none())
      .def("workspace_bytes", &PyNetwork::workspace_bytes, py::arg("steps"), py::arg("batch"),
           "Scratch bytes a forward call on `steps` steps of `batch` sequences uses.")
      .def_property_readonly("backend", &PyNetwork::backend_name)
      .def_property_readonly("input_size", &PyNetwork::input_size)
      .def_property_readonly("output_size", &PyNetwork::output_size);
}

}  // namespace pylstm
