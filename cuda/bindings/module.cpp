// pylstm._cuda: the CUDA backend, imported only when a model asks for device="cuda" (or when
// pylstm.info() lists devices). Bindings convert arguments and release the GIL; nothing else.
// CudaError (every failed CUDA or cuBLAS call) becomes pylstm.DeviceError.
#include <cublas_v2.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "../src/cuda_check.hpp"
#include "../src/device.hpp"
#include "register.hpp"
#ifdef PYLSTM_EMULATION
#include "emulation.hpp"
#endif

namespace py = pybind11;

namespace {

int cublas_version() {
  int major = 0, minor = 0, patch = 0;
  if (cublasGetProperty(MAJOR_VERSION, &major) != CUBLAS_STATUS_SUCCESS ||
      cublasGetProperty(MINOR_VERSION, &minor) != CUBLAS_STATUS_SUCCESS ||
      cublasGetProperty(PATCH_LEVEL, &patch) != CUBLAS_STATUS_SUCCESS) {
    return 0;
  }
  return major * 10000 + minor * 100 + patch;
}

}  // namespace

// The same bindings also make pylstm._cuda_emu, the host emulation (cuda/emulation).
#ifndef PYLSTM_CUDA_MODULE
#define PYLSTM_CUDA_MODULE _cuda
#endif

PYBIND11_MODULE(PYLSTM_CUDA_MODULE, m) {
  using namespace pylstm::cuda;
  m.doc() = "pylstm CUDA backend (use the pylstm package with device='cuda', not this module)";

  // DeviceError lives in pylstm.errors; keep a reference for the translator.
  static py::handle device_error =
      py::object(py::module_::import("pylstm.errors").attr("DeviceError")).release();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const CudaError& e) {
      PyErr_SetString(device_error.ptr(), e.what());
    }
  });

  m.def(
      "device_count",
      [] {
        std::string reason;
        return device_count(&reason);
      },
      "Number of CUDA devices (0 without a driver or a GPU).");
  m.def(
      "device_status",
      [] {
        std::string reason;
        const int n = device_count(&reason);
        return n > 0 ? std::string() : reason;
      },
      "Why there is no usable CUDA device ('' when there is one).");
  m.def(
      "device_names",
      [] {
        std::vector<std::string> names;
        std::string reason;
        const int n = device_count(&reason);
        for (int i = 0; i < n; ++i) names.push_back(device_info(i).name);
        return names;
      },
      "Names of the CUDA devices, in device order.");
  m.def(
      "device_properties",
      [](int device) {
        const DeviceInfo& d = device_info(device);
        py::dict out;
        out["name"] = d.name;
        out["compute_capability"] = py::make_tuple(d.major, d.minor);
        out["multiprocessors"] = d.sms;
        out["cooperative_launch"] = d.cooperative_launch;
        out["shared_memory_per_block_optin"] = d.smem_per_block_optin;
        return out;
      },
      py::arg("device"), "What the backend reads from a device.");
  m.def(
      "pointer_device",
      [](uintptr_t ptr) {
        cudaPointerAttributes attr{};
        PYLSTM_CUDA_CHECK(cudaPointerGetAttributes(&attr, reinterpret_cast<const void*>(ptr)));
        const bool on_device =
            attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
        return on_device ? attr.device : -1;
      },
      py::arg("ptr"), "The device whose memory `ptr` points into, or -1 for host memory.");
  m.def(
      "versions",
      [] {
        py::dict out;
        out["cuda_runtime"] = runtime_version();
        out["cuda_driver"] = driver_version();
        out["cublas"] = cublas_version();
        out["built_with_cuda"] = CUDART_VERSION;
        return out;
      },
      "CUDA runtime (linked statically), driver and cuBLAS versions as integers (0: absent).");
  pylstm::cuda::register_network(m);
#ifdef PYLSTM_EMULATION
  m.def(
      "copy_counts",
      [] {
        const pylstm::emu::CopyCounts& c = pylstm::emu::copy_counts();
        py::dict out;
        out["h2d_calls"] = c.h2d_calls.load();
        out["h2d_bytes"] = c.h2d_bytes.load();
        out["d2h_calls"] = c.d2h_calls.load();
        out["d2h_bytes"] = c.d2h_bytes.load();
        return out;
      },
      "Host <-> device copies the emulated runtime made so far (calls and bytes per "
      "direction).");
#endif
}
