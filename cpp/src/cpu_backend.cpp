// The CPU backend: packs the weights for the kernels of the best instruction set at load, then
// runs every layer of a forward pass inside one thread-pool team.
#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <vector>

#include "aligned.hpp"
#include "dispatch.hpp"
#include "kernels/kernel_set.hpp"
#include "pylstm/backend.hpp"
#include "pylstm/workspace_plan.hpp"
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
// Outputs at least this large are touched by the team before the layers run (first_touch).
constexpr int64_t kFirstTouchBytes = int64_t{4} << 20;

// A fresh output array of tens of megabytes is new memory (numpy's allocator maps it from the
// OS on every call), and its pages are faulted in (and zeroed by the kernel) where they are
// first written. In the time loop the members write the same pages (each its own columns of
// every row), so the one that comes first pays for the page while the other waits at the
// step's barrier: measured on 2 vCPUs, LSTM B=256 H=512 T=100 (52 MB of output) lost 35-60 ms
// of a 270 ms call to such waits, often enough for the team to give up on its partner. So the
// members first write a zero into every page of their own share of the rows, side by side, and
// no page is faulted in the loop. (Only output elements are written, never the gaps of a
// strided output; the layers' barriers order these writes before the real ones.)
void first_touch(Rows<float> y, int64_t T, int64_t B, int64_t cols, const Team& team) {
  if (team.size <= 1 || T * B * cols * static_cast<int64_t>(sizeof(float)) < kFirstTouchBytes) {
    return;
  }
  constexpr int64_t kPageFloats = 4096 / sizeof(float);
  int64_t begin, end;
  team.range(T * B, begin, end);
  for (int64_t i = begin; i < end; ++i) {
    float* row = y.row(i / B, i % B);
    for (int64_t k = 0; k < cols; k += kPageFloats) row[k] = 0.f;
    row[cols - 1] = 0.f;
  }
}

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

// Every buffer starts on a 64-byte boundary (a cache line, an AVX-512 vector).
constexpr size_t kScratchAlign = 64;

int64_t place(WorkspacePlan& plan, const char* name, int64_t floats) {
  return static_cast<int64_t>(plan.place_elems(name, static_cast<size_t>(floats), sizeof(float)));
}

ScratchPlan plan_layer(const PackedLayer& L, int64_t T, int64_t B) {
  ScratchPlan p;
  const int64_t D = L.D(), hs = state_stride(L);
  const int64_t per_step = std::max<int64_t>(1, D * B * L.gate_cols());
  p.block_steps =
      std::clamp<int64_t>(kProjectionBlockFloats / per_step, 1, std::max<int64_t>(T, 1));
  WorkspacePlan plan(kScratchAlign);
  p.xp = place(plan, "xp", D * p.block_steps * B * L.gate_cols());
  p.h = place(plan, "h", D * 2 * B * hs);
  p.c = place(plan, "c", D * B * L.Hp);
  p.aux = place(plan, "aux", D * B * L.Hp);
  p.rh = place(plan, "rh", D * B * hs);
  p.total = static_cast<int64_t>(plan.total() / sizeof(float));
  return p;
}

// A stream's state in host memory: two copies of h and c, a step reads one and writes the other.
class CpuState final : public StreamState {
 public:
  CpuState(const NetworkSizes& sizes, int64_t batch) : StreamState(sizes, batch) {
    for (int i = 0; i < 2; ++i) {
      h[i].assign(static_cast<size_t>(sizes.h_floats * batch), 0.f);
      c[i].assign(static_cast<size_t>(sizes.c_floats * batch), 0.f);
    }
  }
  std::vector<float> h[2], c[2];
  int cur = 0;

 private:
  float* at(Which which, int64_t offset) {
    return (which == Which::H ? h[cur] : c[cur]).data() + offset;
  }
  const float* at(Which which, int64_t offset) const {
    return (which == Which::H ? h[cur] : c[cur]).data() + offset;
  }
  void copy_out(Which which, int64_t offset, int64_t count, float* dst) const override {
    std::copy(at(which, offset), at(which, offset) + count, dst);
  }
  void copy_in(Which which, int64_t offset, int64_t count, const float* src) override {
    std::copy(src, src + count, at(which, offset));
  }
  void zero(Which which, int64_t offset, int64_t count) override {
    std::fill(at(which, offset), at(which, offset) + count, 0.f);
  }
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(const NetworkDesc& net, const std::string& isa, Precision precision)
      : kernels_(select_kernels(isa)) {
    validate(net);
    sizes_ = NetworkSizes::of(net);
    for (const LayerDesc& L : net.layers) {
      layers_.push_back(pack_layer(L, kernels_.vector_floats, precision));
    }
  }

  std::string name() const override { return std::string("cpu/") + kernels_.name; }

  size_t workspace_bytes(int64_t T, int64_t B) const override {
    return static_cast<size_t>(plan_call(T, B).total_floats) * sizeof(float);
  }

  std::unique_ptr<StreamState> open_state(int64_t batch) const override {
    if (batch < 1) throw std::invalid_argument("batch_size must be >= 1");
    auto state = std::make_unique<CpuState>(sizes_, batch);
    adopt(*state);
    return state;
  }

  void step(StreamState& state, int64_t steps, Rows<const float> x, Rows<float> y) const override {
    CpuState& s = own<CpuState>(state);
    ForwardArgs args;
    args.steps = steps;
    args.batch = s.batch();
    args.x = x;
    args.y = y;
    args.h0 = s.h[s.cur].data();
    args.c0 = s.c[s.cur].data();
    args.h_n = s.h[1 - s.cur].data();
    args.c_n = s.c[1 - s.cur].data();
    forward(args);
    s.cur = 1 - s.cur;
  }

  NetworkDesc unpack() const override {
    NetworkDesc net;
    for (const PackedLayer& L : layers_) net.layers.push_back(unpack_layer(L));
    return net;
  }

  void forward(const ForwardArgs& a) const override {
    const int64_t T = a.steps, B = a.batch;
    const size_t nl = layers_.size();
    const CallPlan call = plan_call(T, B);
    const std::vector<ScratchPlan>& plans = call.layers;

    std::unique_ptr<ScratchBuffer> scratch = take_scratch();
    float* base = scratch->reserve(static_cast<size_t>(call.total_floats));
    float* inter[2] = {base + call.inter[0], base + call.inter[1]};

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

    const int64_t out_cols = layers_.back().D() * layers_.back().Hout;
    const int64_t macs = call_macs(T, B);
    ThreadPool::global().run(team_size(B, macs), macs, [&](const Team& team) {
      first_touch(a.y, T, B, out_cols, team);
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
    int64_t inter[2] = {0, 0};  // offsets (floats) of the intermediate sequences
    int64_t total_floats = 0;
  };

  CallPlan plan_call(int64_t T, int64_t B) const {
    CallPlan c;
    int64_t inter_cols = 0, layer_floats = 0;
    const size_t nl = layers_.size();
    for (size_t l = 0; l < nl; ++l) {
      c.layers.push_back(plan_layer(layers_[l], T, B));
      layer_floats = std::max(layer_floats, c.layers.back().total);
      if (l + 1 < nl) inter_cols = std::max(inter_cols, layers_[l].D() * layers_[l].Hout);
    }
    // The largest layer's buffers (layers run one after the other), then the intermediates.
    WorkspacePlan plan(kScratchAlign);
    place(plan, "layer", layer_floats);
    c.inter[0] = place(plan, "inter0", nl > 1 ? T * B * inter_cols : 0);
    c.inter[1] = place(plan, "inter1", nl > 2 ? T * B * inter_cols : 0);
    c.total_floats = static_cast<int64_t>(plan.total() / sizeof(float));
    return c;
  }

  int64_t call_macs(int64_t T, int64_t B) const {
    int64_t macs = 0;
    for (const PackedLayer& L : layers_) macs += T * L.D() * B * L.gate_cols() * (L.Hout + L.I);
    return macs;
  }

  int team_size(int64_t B, int64_t call_macs) const {
    int64_t step_macs = 0;
    for (const PackedLayer& L : layers_) {
      step_macs = std::max(step_macs, L.D() * B * L.gate_cols() * std::max(L.Hout, L.I));
    }
    if (call_macs < kMinCallMacs) return 1;
    const int64_t useful = std::max<int64_t>(1, step_macs / kMinStepMacsPerThread);
    const int team =
        static_cast<int>(std::min<int64_t>(useful, ThreadPool::global().num_threads()));
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
