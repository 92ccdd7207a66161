#include "device.hpp"

#include <map>
#include <memory>
#include <mutex>

namespace pylstm {
namespace cuda {

int device_count(std::string* reason) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    if (reason != nullptr) {
      const std::string code = std::string(" (") + cudaGetErrorName(err) + ")";
      const int driver = driver_version();
      if (err == cudaErrorInsufficientDriver && driver == 0) {
        *reason = "no NVIDIA driver is installed (libcuda.so.1 not found)" + code;
      } else if (err == cudaErrorInsufficientDriver) {
        *reason = "the NVIDIA driver supports CUDA " + std::to_string(driver / 1000) + "." +
                  std::to_string(driver % 1000 / 10) + ", older than this build's CUDA " +
                  std::to_string(CUDART_VERSION / 1000) + "." +
                  std::to_string(CUDART_VERSION % 1000 / 10) + code;
      } else if (err == cudaErrorNoDevice) {
        *reason = "no CUDA-capable GPU is detected" + code;
      } else {
        *reason = std::string(cudaGetErrorString(err)) + code;
      }
    }
    return 0;
  }
  if (n == 0 && reason != nullptr) *reason = "the NVIDIA driver reports no GPU";
  return n;
}

const DeviceInfo& device_info(int device) {
  static std::mutex mutex;
  static std::map<int, std::unique_ptr<DeviceInfo>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(device);
  if (it != cache.end()) return *it->second;
  std::string reason;
  const int count = device_count(&reason);
  if (device < 0 || device >= count) {
    throw CudaError("CUDA device " + std::to_string(device) + " does not exist (this machine has " +
                    std::to_string(count) + (reason.empty() ? "" : "; " + reason) + ")");
  }
  auto info = std::make_unique<DeviceInfo>();
  info->index = device;
  cudaDeviceProp prop{};
  PYLSTM_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  info->name = prop.name;
  int v = 0;
  PYLSTM_CUDA_CHECK(
      cudaDeviceGetAttribute(&info->major, cudaDevAttrComputeCapabilityMajor, device));
  PYLSTM_CUDA_CHECK(
      cudaDeviceGetAttribute(&info->minor, cudaDevAttrComputeCapabilityMinor, device));
  PYLSTM_CUDA_CHECK(cudaDeviceGetAttribute(&info->sms, cudaDevAttrMultiProcessorCount, device));
  PYLSTM_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrCooperativeLaunch, device));
  info->cooperative_launch = v != 0;
  PYLSTM_CUDA_CHECK(cudaDeviceGetAttribute(&info->smem_per_block_optin,
                                           cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const DeviceInfo& ref = *info;
  cache.emplace(device, std::move(info));
  return ref;
}

int runtime_version() {
  int v = 0;
  if (cudaRuntimeGetVersion(&v) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return v;
}

int driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return v;
}

DeviceGuard::DeviceGuard(int device) {
  int current = 0;
  PYLSTM_CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) {
    PYLSTM_CUDA_CHECK(cudaSetDevice(device));
    previous_ = current;
  }
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) (void)cudaSetDevice(previous_);
}

}  // namespace cuda
}  // namespace pylstm
