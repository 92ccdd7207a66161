// Devices and device memory: what the backend reads from a GPU once (SM count, shared memory,
// cooperative launch), a guard that makes a device current for a scope, and an owning buffer.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

#include "cuda_check.hpp"

namespace pylstm {
namespace cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;
  int sms = 0;
  bool cooperative_launch = false;
  int smem_per_block_optin = 0;  // bytes of shared memory one block may opt in to
};

// Number of CUDA devices; 0 with `reason` set when there is no driver or no device.
int device_count(std::string* reason);

// Cached per device; throws CudaError for a bad index.
const DeviceInfo& device_info(int device);

// Versions as integers (1000*major + 10*minor): the CUDA runtime this module was built with,
// and the driver's (0 without a driver).
int runtime_version();
int driver_version();

// Makes `device` current for the scope and restores the caller's device afterwards (PyTorch
// and CuPy users keep their own notion of the current device).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// Device memory owned by this object (cudaMalloc / cudaFree).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes > 0) PYLSTM_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
  }
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      ptr_ = o.ptr_;
      bytes_ = o.bytes_;
      o.ptr_ = nullptr;
      o.bytes_ = 0;
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  size_t size() const { return bytes_; }
  template <typename T>
  T* as(size_t byte_offset = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(ptr_) + byte_offset);
  }
  void reset() noexcept {
    if (ptr_ != nullptr) (void)cudaFree(ptr_);  // no throwing from destructors
    ptr_ = nullptr;
    bytes_ = 0;
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

inline size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

}  // namespace cuda
}  // namespace pylstm
