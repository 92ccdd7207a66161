// How a backend built in another extension module (pylstm._cuda, pylstm._cuda_emu) reaches the
// one binding of _core: a PyCapsule named "pylstm.Backend" that owns a heap-allocated
// std::shared_ptr<const pylstm::Backend>. Both sides compile this header with the same compiler
// against the same backend.hpp, so the object (and its vtable) crosses the module boundary
// as is; the backend's code stays in the module that made it (extension modules are never
// unloaded).
#pragma once

#include <pybind11/pybind11.h>

#include <memory>
#include <stdexcept>
#include <utility>

#include "pylstm/backend.hpp"

namespace pylstm {

constexpr const char* kBackendCapsule = "pylstm.Backend";

inline pybind11::capsule backend_capsule(std::shared_ptr<const Backend> backend) {
  auto* held = new std::shared_ptr<const Backend>(std::move(backend));
  return pybind11::capsule(held, kBackendCapsule, [](PyObject* cap) {
    delete static_cast<std::shared_ptr<const Backend>*>(PyCapsule_GetPointer(cap, kBackendCapsule));
  });
}

// The backend a capsule of backend_capsule() holds (shared); std::invalid_argument otherwise.
inline std::shared_ptr<const Backend> backend_from_capsule(const pybind11::handle& obj) {
  if (!PyCapsule_CheckExact(obj.ptr()) || !PyCapsule_IsValid(obj.ptr(), kBackendCapsule)) {
    throw std::invalid_argument("expected a pylstm.Backend capsule (from a backend module)");
  }
  return *static_cast<std::shared_ptr<const Backend>*>(
      PyCapsule_GetPointer(obj.ptr(), kBackendCapsule));
}

}  // namespace pylstm
