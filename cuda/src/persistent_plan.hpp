// Whether and how the persistent kernel can run a layer on a device: how many blocks, which
// units each owns, whether its weight rows fit in shared memory, and whether that many blocks
// can be resident at once (a cooperative launch requires it).
#pragma once

#include <string>

#include "device.hpp"
#include "kernel_params.hpp"

namespace pylstm {
namespace cuda {

// Fills `plan` and returns true when the persistent kernel can run `layer` at batch size
// `batch`; otherwise returns false with the reason in `why`. `max_blocks` > 0 caps the blocks
// (for tuning; 0 = one per SM).
bool plan_persistent(const LayerParams& layer, int batch, DType ct, const DeviceInfo& dev,
                     int max_blocks, PersistentPlan* plan, std::string* why);

}  // namespace cuda
}  // namespace pylstm
