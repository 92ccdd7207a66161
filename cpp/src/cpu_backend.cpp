// The CPU backend: packs the weights for the kernels of the best instruction set at load, then
// runs every layer of a forward pass inside one thread-pool team.
#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include "aligned.hpp"
#include "dispatch.hpp"
#include "kernels/kernel_set.hpp"
#include "pylstm/backend.hpp"
#include "thread_pool.hpp"

namespace pylstm {
namespace {

// Input projections are computed for blocks of time steps whose pre-activations fit in this
// many floats (4 MB): small enough to be read back from cache during the steps (16 MB blocks
// measured 5-10% slower at B=64), large enough to keep the projection GEMM efficient.
constexpr int64_t kProjectionBlockFloats = int64_t{1} << 20;
// Below this many multiply-adds per step, or per call, a second thread costs more (waking it,
// a barrier per step) than it saves.
constexpr int64_t kMinStepMacsPerThread = 16 * 1024;
constexpr int64_t kMinCallMacs = 256 * 1024;

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Where one layer's buffers sit in the call's workspace (offsets in floats).
struct ScratchPlan {
  int64_t block_steps = 1;
  int64_t xp = 0, h = 0, c = 0, aux = 0, rh = 0;
  int64_t total = 0;

  LayerScratch bind(float* base) const {
    LayerScratch s;
    s.block_steps = block_steps;
    s.xp = base + xp;
    s.h = base + h;
    s.c = base + c;
    s.aux = base + aux;
    s.rh = base + rh;
    return s;
  }
};

ScratchPlan plan_layer(const PackedLayer& L, int64_t T, int64_t B) {
  ScratchPlan p;
  const int64_t D = L.D(), hs = state_stride(L);
  const int64_t per_step = std::max<int64_t>(1, D * B * L.gate_cols());
  p.block_steps =
      std::clamp<int64_t>(kProjectionBlockFloats / per_step, 1, std::max<int64_t>(T, 1));
  int64_t offset = 0;
  auto place = [&offset](int64_t& slot, int64_t floats) {
    slot = offset;
    offset += round_up(floats, 16);  // keep every buffer 64-byte aligned
  };
  place(p.xp, D * p.block_steps * B * L.gate_cols());
  place(p.h, D * 2 * B * hs);
  place(p.c, D * B * L.Hp);
  place(p.aux, D * B * L.Hp);
  place(p.rh, D * B * hs);
  p.total = offset;
  return p;
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(const NetworkDesc& net, const std::string& isa, Precision precision)
      : kernels_(select_kernels(isa)) {
    validate(net);
    for (const LayerDesc& L : net.layers) {
      layers_.push_back(pack_layer(L, kernels_.vector_floats, precision));
    }
  }

  std::string name() const override { return std::string("cpu/") + kernels_.name; }

  size_t workspace_bytes(int64_t T, int64_t B) const override {
    return static_cast<size_t>(plan_call(T, B).total_floats()) * sizeof(float);
  }

  void forward(const ForwardArgs& a) const override {
    const int64_t T = a.steps, B = a.batch;
    const size_t nl = layers_.size();
    const CallPlan call = plan_call(T, B);
    const std::vector<ScratchPlan>& plans = call.layers;

    std::unique_ptr<ScratchBuffer> scratch = take_scratch();
    float* base = scratch->reserve(static_cast<size_t>(call.total_floats()));
    float* inter[2] = {base + call.layer_floats, base + call.layer_floats + call.inter_floats};

    std::vector<LayerIO> ios(nl);
    int64_t h_off = 0, c_off = 0;
    for (size_t l = 0; l < nl; ++l) {
      const PackedLayer& L = layers_[l];
      LayerIO& io = ios[l];
      io.steps = T;
      io.batch = B;
      io.mask = a.mask;
      if (l == 0) {
        io.x = a.x;
      } else {
        const int64_t cols = layers_[l - 1].D() * layers_[l - 1].Hout;
        io.x = Rows<const float>{inter[(l - 1) % 2], B * cols, cols};
      }
      if (l + 1 == nl) {
        io.y = a.y;
      } else {
        const int64_t cols = L.D() * L.Hout;
        io.y = Rows<float>{inter[l % 2], B * cols, cols};
      }
      io.h0 = a.h0 ? a.h0 + h_off : nullptr;
      io.c0 = a.c0 ? a.c0 + c_off : nullptr;
      io.h_n = a.h_n ? a.h_n + h_off : nullptr;
      io.c_n = a.c_n ? a.c_n + c_off : nullptr;
      h_off += L.D() * B * L.Hout;
      c_off += L.D() * B * L.H;
    }

    ThreadPool::global().run(team_size(T, B), [&](const Team& team) {
      for (size_t l = 0; l < nl; ++l) {
        const LayerScratch s = plans[l].bind(base);
        kernels_.run_layer(layers_[l], ios[l], s, team);
        team.barrier();
      }
    });
    give_back_scratch(std::move(scratch));
  }

 private:
  const KernelSet& kernels_;
  std::vector<PackedLayer> layers_;
  mutable std::mutex scratch_mutex_;
  mutable std::vector<std::unique_ptr<ScratchBuffer>> idle_scratch_;
  mutable std::atomic<uint64_t> fork_epoch_{fork_epoch()};

  // In a forked child, scratch_mutex_ may have been held by a parent thread at the fork (it
  // would stay locked forever) and idle_scratch_ be mid-update: when try_lock fails, both are
  // made anew (the parent's list is left unfreed).
  void repair_after_fork() const {
    const uint64_t now = fork_epoch();
    if (fork_epoch_.load(std::memory_order_acquire) == now) return;
    std::lock_guard<std::mutex> repair(fork_repair_mutex());
    if (fork_epoch_.load(std::memory_order_acquire) == now) return;
    if (scratch_mutex_.try_lock()) {
      scratch_mutex_.unlock();
    } else {
      new (&scratch_mutex_) std::mutex();
      new (&idle_scratch_) std::vector<std::unique_ptr<ScratchBuffer>>();
    }
    fork_epoch_.store(now, std::memory_order_release);
  }

  // The workspace of one call: the largest layer's buffers (layers run one after the other),
  // then up to two intermediate sequences between layers.
  struct CallPlan {
    std::vector<ScratchPlan> layers;
    int64_t layer_floats = 0, inter_floats = 0;
    int inter_buffers = 0;
    int64_t total_floats() const { return layer_floats + inter_buffers * inter_floats; }
  };

  CallPlan plan_call(int64_t T, int64_t B) const {
    CallPlan c;
    int64_t inter_cols = 0;
    const size_t nl = layers_.size();
    for (size_t l = 0; l < nl; ++l) {
      c.layers.push_back(plan_layer(layers_[l], T, B));
      c.layer_floats = std::max(c.layer_floats, c.layers.back().total);
      if (l + 1 < nl) inter_cols = std::max(inter_cols, layers_[l].D() * layers_[l].Hout);
    }
    c.inter_floats = round_up(T * B * inter_cols, 16);
    c.inter_buffers = nl > 2 ? 2 : static_cast<int>(nl) - 1;
    return c;
  }

  int team_size(int64_t T, int64_t B) const {
    int64_t step_macs = 0, call_macs = 0;
    for (const PackedLayer& L : layers_) {
      step_macs = std::max(step_macs, L.D() * B * L.gate_cols() * std::max(L.Hout, L.I));
      call_macs += T * L.D() * B * L.gate_cols() * (L.Hout + L.I);
    }
    if (call_macs < kMinCallMacs) return 1;
    const int64_t useful = std::max<int64_t>(1, step_macs / kMinStepMacsPerThread);
    const int team = static_cast<int>(std::min<int64_t>(useful, ThreadPool::global().num_threads()));
    return ThreadPool::global().team_for(team, call_macs);
  }

  // Workspaces are reused between calls; concurrent calls each get their own.
  std::unique_ptr<ScratchBuffer> take_scratch() const {
    repair_after_fork();
    std::lock_guard<std::mutex> lock(scratch_mutex_);
    if (idle_scratch_.empty()) return std::make_unique<ScratchBuffer>();
    auto s = std::move(idle_scratch_.back());
    idle_scratch_.pop_back();
    return s;
  }
  void give_back_scratch(std::unique_ptr<ScratchBuffer> s) const {
    std::lock_guard<std::mutex> lock(scratch_mutex_);
    idle_scratch_.push_back(std::move(s));
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const NetworkDesc& net, const std::string& isa,
                                          const std::string& precision) {
  return std::make_unique<CpuBackend>(net, isa, parse_precision(precision));
}

}  // namespace pylstm
