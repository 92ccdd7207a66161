// The CUDA backend's entry for Python: no Network class of its own. make_backend builds a
// CudaNetwork and hands it over as a 'pylstm.Backend' capsule; Network(...) wraps that capsule
// in pylstm._core.Network, the one binding over every backend (forward, forward_device,
// streams, unpack, last_strategies, persistent_refusal).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "../src/cuda_network.hpp"
#include "backend_capsule.hpp"
#include "parse_network.hpp"
#include "register.hpp"

namespace py = pybind11;

namespace pylstm {
namespace cuda {
namespace {

py::capsule make_backend(const py::list& layers, const std::string& precision, int device,
                         const std::string& strategy) {
  std::shared_ptr<const Backend> backend;
  {
    // The parsed description lives only while the weights are uploaded.
    const NetworkDesc desc = parse_network(layers);
    py::gil_scoped_release release;
    backend = std::make_shared<CudaNetwork>(desc, precision, device, strategy);
  }
  return backend_capsule(std::move(backend));
}

}  // namespace

void register_network(py::module_& m) {
  m.def("make_backend", &make_backend, py::arg("layers"), py::arg("precision") = "fp32",
        py::arg("device") = 0, py::arg("strategy") = "auto",
        "A canonical network (list of layer dicts) uploaded to a GPU, as a 'pylstm.Backend' "
        "capsule for pylstm._core.Network.from_capsule.");
  m.def(
      "Network",
      [](const py::list& layers, const std::string& precision, int device,
         const std::string& strategy) {
        return py::module_::import("pylstm._core")
            .attr("Network")
            .attr("from_capsule")(make_backend(layers, precision, device, strategy));
      },
      py::arg("layers"), py::arg("precision") = "fp32", py::arg("device") = 0,
      py::arg("strategy") = "auto",
      "make_backend wrapped in a pylstm._core.Network: forward() takes numpy arrays (copied to "
      "the device and back), forward_device() device arrays, _core.Stream streams with the "
      "state kept on the device.");
}

}  // namespace cuda
}  // namespace pylstm
