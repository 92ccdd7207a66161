// A layer's weights on the device, converted once from the canonical layout (network.hpp) to
// the one the kernels read (kernel_params.hpp): matrices keep their canonical row-major form
// (cuBLAS and the persistent kernel read it as is), padded to aligned rows, stored in the
// compute type; biases are folded as the CPU backend folds them (packing.cpp).
#pragma once

#include <cuda_runtime_api.h>

#include "device.hpp"
#include "kernel_params.hpp"
#include "pylstm/network.hpp"

namespace pylstm {
namespace cuda {

struct DeviceLayer {
  LayerParams params;     // pointers into the buffers below
  DeviceBuffer matrices;  // w, r, proj of every direction, compute type
  DeviceBuffer vectors;   // biases and peepholes, float32
  int64_t gate_cols() const { return static_cast<int64_t>(params.G) * params.H; }
};

// Uploads `layer` (already validated) in compute type `ct`; synchronizes `stream` before
// returning (the host staging buffers are freed on return).
DeviceLayer upload_layer(const LayerDesc& layer, DType ct, cudaStream_t stream);

// The canonical layer back from the device (the inverse of upload_layer, see
// Backend::unpack): matrices widened to float32, the folded bias as bias_w with bias_r zeros
// but for the GRU linear_before_reset recurrent bias of n. Synchronizes `stream`.
LayerDesc download_layer(const DeviceLayer& layer, DType ct, cudaStream_t stream);

}  // namespace cuda
}  // namespace pylstm
