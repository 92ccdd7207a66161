#include "persistent_plan.hpp"

#include <algorithm>
#include <mutex>
#include <set>
#include <utility>

#include "kernels.hpp"

namespace pylstm {
namespace cuda {
namespace {

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Lets `fn` use all the shared memory a block may opt in to, once per (device, kernel). Always
// the device's maximum, so that concurrent plans never lower each other's limit.
void allow_max_smem(const void* fn, const DeviceInfo& dev) {
  static std::mutex mutex;
  static std::set<std::pair<int, const void*>> done;
  std::lock_guard<std::mutex> lock(mutex);
  if (done.count({dev.index, fn}) != 0) return;
  PYLSTM_CUDA_CHECK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         dev.smem_per_block_optin));
  done.insert({dev.index, fn});
}

}  // namespace

const void* persistent_kernel(DType ct, int nb) {
  switch (ct) {
    case DType::F16:
      return persistent_kernel_f16(nb);
    case DType::BF16:
      return persistent_kernel_bf16(nb);
    default:
      return persistent_kernel_f32(nb);
  }
}

void launch_persistent(DType ct, const LayerParams& L, const StepBuffers& S,
                       const PersistentPlan& plan, int s0, int s1, cudaStream_t stream) {
  switch (ct) {
    case DType::F16:
      launch_persistent_f16(L, S, plan, s0, s1, stream);
      break;
    case DType::BF16:
      launch_persistent_bf16(L, S, plan, s0, s1, stream);
      break;
    default:
      launch_persistent_f32(L, S, plan, s0, s1, stream);
      break;
  }
}

bool plan_persistent(const LayerParams& L, int batch, DType ct, const DeviceInfo& dev,
                     int max_blocks, PersistentPlan* plan, std::string* why) {
  if (!dev.cooperative_launch) {
    *why = "the device does not support cooperative launches";
    return false;
  }
  if (batch < 1 || batch > kPersistentMaxBatch) {
    *why =
        "batch " + std::to_string(batch) + " is outside 1.." + std::to_string(kPersistentMaxBatch);
    return false;
  }
  PersistentPlan p;
  p.nb = batch == 1 ? 1 : batch <= 4 ? 4 : 8;
  const void* fn = persistent_kernel(ct, p.nb);
  allow_max_smem(fn, dev);

  const int es = dtype_size(ct);
  const int blocks = max_blocks > 0 ? std::min(max_blocks, dev.sms) : dev.sms;
  const int per_dir = std::max(1, blocks / L.D);
  // At least 8 weight rows per block when the layer has them (a row per warp).
  const int min_upb = std::min(L.H, ceil_div(8, L.G));
  p.upb = std::max(ceil_div(L.H, per_dir), min_upb);
  p.blocks_per_dir = ceil_div(L.H, p.upb);
  p.ppb = L.P > 0 ? ceil_div(L.P, p.blocks_per_dir) : 0;
  p.hs_ld = std::max(L.ldr, L.P > 0 ? L.ldp : 0);

  const size_t w_bytes = align_up(static_cast<size_t>(L.G) * p.upb * L.ldr * es, 16);
  const size_t p_bytes = align_up(static_cast<size_t>(p.ppb) * L.ldp * es, 16);
  const size_t hs_bytes = align_up(static_cast<size_t>(p.nb) * p.hs_ld * sizeof(float), 16);
  const size_t rows = std::max(L.G * p.upb, p.ppb);
  const size_t pre_bytes = align_up(rows * batch * sizeof(float), 16);
  const size_t part_bytes =
      align_up(static_cast<size_t>(kPersistentThreads) * p.nb * sizeof(float), 16);
  const size_t limit = static_cast<size_t>(dev.smem_per_block_optin);

  auto fits = [&](bool in_smem) {
    p.weights_in_smem = in_smem ? 1 : 0;
    size_t off = 0;
    p.off_w = static_cast<int>(off);
    off += in_smem ? w_bytes : 0;
    p.off_p = static_cast<int>(off);
    off += in_smem ? p_bytes : 0;
    p.off_hs = static_cast<int>(off);
    off += hs_bytes;
    p.off_pre = static_cast<int>(off);
    off += pre_bytes;
    p.off_part = static_cast<int>(off);
    off += in_smem ? part_bytes : 0;
    if (off > limit) return false;
    p.smem_bytes = static_cast<int>(off);
    int per_sm = 0;
    PYLSTM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, kPersistentThreads,
                                                                    p.smem_bytes));
    return per_sm >= 1 && L.D * p.blocks_per_dir <= per_sm * dev.sms;
  };
  if (!fits(true) && !fits(false)) {
    *why = "the per-block state (" + std::to_string(hs_bytes + pre_bytes) +
           " bytes) or the block count does not fit the device";
    return false;
  }
  *plan = p;
  return true;
}

}  // namespace cuda
}  // namespace pylstm
