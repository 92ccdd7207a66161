// The CUDA backend's streams and unpacking (backend.hpp): a stream's state lives in device
// memory between steps; a step copies its inputs in and its outputs out, never the state.
#include <memory>

#include "cuda_network.hpp"

namespace pylstm {
namespace cuda {
namespace {

// h [L*D, B, Hout] and c [L*D, B, H] blocks, float32, on the network's device. Copies to and
// from the host are synchronous (state reads and writes are rare: restoring a pickled stream,
// the C API's get/set).
class CudaState final : public StreamState {
 public:
  CudaState(const NetworkSizes& sizes, int64_t batch, int device)
      : StreamState(sizes, batch), device_(device) {
    DeviceGuard guard(device_);
    h_ = DeviceBuffer(static_cast<size_t>(sizes.h_floats * batch) * sizeof(float));
    c_ = DeviceBuffer(static_cast<size_t>(sizes.c_floats * batch) * sizeof(float));
    if (h_.size() > 0) PYLSTM_CUDA_CHECK(cudaMemset(h_.get(), 0, h_.size()));
    if (c_.size() > 0) PYLSTM_CUDA_CHECK(cudaMemset(c_.get(), 0, c_.size()));
  }
  ~CudaState() override {
    try {
      DeviceGuard guard(device_);
      h_.reset();
      c_.reset();
    } catch (...) {  // the CUDA runtime may already be gone at interpreter exit
    }
  }

  float* h() { return h_.as<float>(); }
  float* c() { return c_.as<float>(); }

 private:
  int device_;
  DeviceBuffer h_, c_;

  float* at(Which which, int64_t offset) const {
    return (which == Which::H ? h_ : c_).as<float>(static_cast<size_t>(offset) * sizeof(float));
  }
  void copy_out(Which which, int64_t offset, int64_t count, float* dst) const override {
    DeviceGuard guard(device_);
    PYLSTM_CUDA_CHECK(cudaMemcpy(dst, at(which, offset), static_cast<size_t>(count) * sizeof(float),
                                 cudaMemcpyDeviceToHost));
  }
  void copy_in(Which which, int64_t offset, int64_t count, const float* src) override {
    DeviceGuard guard(device_);
    PYLSTM_CUDA_CHECK(cudaMemcpy(at(which, offset), src, static_cast<size_t>(count) * sizeof(float),
                                 cudaMemcpyHostToDevice));
  }
  void zero(Which which, int64_t offset, int64_t count) override {
    DeviceGuard guard(device_);
    PYLSTM_CUDA_CHECK(cudaMemset(at(which, offset), 0, static_cast<size_t>(count) * sizeof(float)));
  }
};

}  // namespace

std::unique_ptr<StreamState> CudaNetwork::open_state(int64_t batch) const {
  if (batch < 1) throw std::invalid_argument("batch_size must be >= 1");
  auto state = std::make_unique<CudaState>(sizes_, batch, device_);
  adopt(*state);
  return state;
}

void CudaNetwork::step(StreamState& state, int64_t steps, Rows<const float> x,
                       Rows<float> y) const {
  CudaState& s = own<CudaState>(state);
  ForwardArgs args;
  args.steps = steps;
  args.batch = s.batch();
  args.x = x;
  args.y = y;
  forward_host(args, s.h(), s.c());
}

NetworkDesc CudaNetwork::unpack() const {
  DeviceGuard guard(device_);
  cudaStream_t stream = nullptr;
  PYLSTM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  NetworkDesc net;
  try {
    for (const DeviceLayer& L : layers_) net.layers.push_back(download_layer(L, ct_, stream));
  } catch (...) {
    (void)cudaStreamDestroy(stream);
    throw;
  }
  (void)cudaStreamDestroy(stream);
  return net;
}

}  // namespace cuda
}  // namespace pylstm
