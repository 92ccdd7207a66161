#include "cuda_network.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "kernels.hpp"
#include "persistent_plan.hpp"
#include "pylstm/workspace_plan.hpp"

namespace pylstm {
namespace cuda {
namespace {

// Input projections are computed for blocks of steps whose results fit in this many bytes
// (PYLSTM_CUDA_XP_BYTES overrides it, for tests).
constexpr int kXpMiB = 256;
constexpr size_t kAlign = 256;

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (end == v || *end != '\0' || n < 0 || n > 1 << 20) {
    throw std::invalid_argument(std::string(name) + " must be a non-negative integer, got '" + v +
                                "'");
  }
  return static_cast<int>(n);
}

// Sequence lengths and batch sizes the kernels index with int.
void check_sizes(int64_t steps, int64_t batch) {
  if (steps > std::numeric_limits<int>::max() / 2 || batch > std::numeric_limits<int>::max() / 2) {
    throw std::invalid_argument("sequence length and batch size must fit in 31 bits");
  }
}

const char* precision_name(DType t) {
  return t == DType::F16 ? "fp16" : t == DType::BF16 ? "bf16" : "fp32";
}

// A stream that lives for a scope.
class ScopedStream {
 public:
  ScopedStream() { PYLSTM_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~ScopedStream() { (void)cudaStreamDestroy(s_); }
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

}  // namespace

DType parse_cuda_precision(const std::string& name) {
  if (name == "fp32" || name == "float32") return DType::F32;
  if (name == "fp16" || name == "float16") return DType::F16;
  if (name == "bf16" || name == "bfloat16") return DType::BF16;
  throw std::invalid_argument("precision '" + name +
                              "' is not available on CUDA; expected fp32, fp16 or bf16");
}

Strategy parse_strategy(const std::string& name) {
  if (name == "auto") return Strategy::Auto;
  if (name == "persistent") return Strategy::Persistent;
  if (name == "graph") return Strategy::Graph;
  if (name == "steps") return Strategy::Steps;
  throw std::invalid_argument("unknown CUDA strategy '" + name +
                              "'; expected auto, persistent, graph or steps");
}

// Byte offsets of every buffer of a call in the workspace arena. The buffers of the host path
// come last, so that the others (which captured graphs point to) do not depend on the path.
struct CudaNetwork::Layout {
  size_t xin = 0, inter[2] = {0, 0}, xp = 0, rec = 0, proj_out = 0, z = 0, rhc = 0, auxc = 0;
  size_t mask = 0;
  std::vector<size_t> h, hc, c;
  std::vector<int> block_steps;
  size_t sx = 0, sy = 0, sh0 = 0, sc0 = 0, shn = 0, scn = 0, smask = 0;
  size_t total = 0;
};

CudaNetwork::CudaNetwork(const NetworkDesc& net, const std::string& precision, int device,
                         const std::string& strategy)
    : device_(device),
      ct_(parse_cuda_precision(precision)),
      strategy_(parse_strategy(strategy)),
      persistent_max_batch_(env_int("PYLSTM_CUDA_PERSISTENT_MAX_BATCH", kPersistentMaxBatch)),
      persistent_max_blocks_(env_int("PYLSTM_CUDA_PERSISTENT_BLOCKS", 0)),
      xp_bytes_(static_cast<size_t>(env_int("PYLSTM_CUDA_XP_KIB", kXpMiB * 1024)) * 1024) {
  validate(net);
  sizes_ = NetworkSizes::of(net);
  for (const LayerDesc& L : net.layers) {
    if (L.input_size > std::numeric_limits<int>::max() / 8 ||
        L.hidden_size * num_gates(L.cell) > std::numeric_limits<int>::max() / 8) {
      throw std::invalid_argument("layer sizes too large for the CUDA backend");
    }
  }
  const DeviceInfo& dev = device_info(device);  // CudaError for a device that is not there
  if (ct_ == DType::BF16 && dev.major < 8) {
    throw CudaError("precision 'bf16' needs a GPU of compute capability 8.0 or newer; " + dev.name +
                    " is " + std::to_string(dev.major) + "." + std::to_string(dev.minor) +
                    " (use fp16 or fp32)");
  }
  DeviceGuard guard(device_);
  ScopedStream upload;
  for (const LayerDesc& L : net.layers) layers_.push_back(upload_layer(L, ct_, upload.get()));
}

CudaNetwork::~CudaNetwork() {
  try {
    DeviceGuard guard(device_);
    idle_.clear();
    layers_.clear();
  } catch (...) {  // the CUDA runtime may already be gone at interpreter exit
  }
}

std::string CudaNetwork::name() const {
  const DeviceInfo& dev = device_info(device_);
  return "cuda:" + std::to_string(device_) + "/" + precision_name(ct_) + " (" + dev.name + ", sm_" +
         std::to_string(dev.major) + std::to_string(dev.minor) + ")";
}

size_t CudaNetwork::workspace_bytes(int64_t steps, int64_t batch) const {
  return plan_layout(steps, batch, Staging::None).total;
}

std::vector<std::string> CudaNetwork::last_strategies() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_strategies_;
}

std::unique_ptr<Workspace> CudaNetwork::take_workspace() const {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!idle_.empty()) {
      auto ws = std::move(idle_.back());
      idle_.pop_back();
      return ws;
    }
  }
  return std::make_unique<Workspace>(device_);
}

void CudaNetwork::give_back(std::unique_ptr<Workspace> ws) const {
  std::lock_guard<std::mutex> lock(mutex_);
  idle_.push_back(std::move(ws));
}

bool CudaNetwork::persistent_plan(int layer, int batch, PersistentPlan* plan) const {
  const auto key = std::make_pair(layer, batch);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = plans_.find(key);
    if (it != plans_.end()) {
      *plan = it->second.second;
      return it->second.first;
    }
  }
  std::string why;
  PersistentPlan p;
  const bool ok = plan_persistent(layers_[layer].params, batch, ct_, device_info(device_),
                                  persistent_max_blocks_, &p, &why);
  std::lock_guard<std::mutex> lock(mutex_);
  plans_[key] = {ok, p};
  refusals_[key] = ok ? "" : why;
  *plan = p;
  return ok;
}

std::string CudaNetwork::persistent_refusal(int layer, int batch) const {
  if (layer < 0 || layer >= static_cast<int>(layers_.size())) {
    throw std::invalid_argument("no layer " + std::to_string(layer));
  }
  DeviceGuard guard(device_);
  PersistentPlan p;
  persistent_plan(layer, batch, &p);
  std::lock_guard<std::mutex> lock(mutex_);
  return refusals_[std::make_pair(layer, batch)];
}

CudaNetwork::Layout CudaNetwork::plan_layout(int64_t T, int64_t B, Staging staging) const {
  Layout lay;
  const size_t es = static_cast<size_t>(dtype_size(ct_));
  WorkspacePlan plan(kAlign);
  const size_t nl = layers_.size();
  size_t inter_cols = 0, xp = 0, rec = 0, proj = 0, z = 0, rhc = 0, auxc = 0;
  for (size_t l = 0; l < nl; ++l) {
    const LayerParams& L = layers_[l].params;
    const size_t D = L.D, GH = static_cast<size_t>(L.G) * L.H;
    inter_cols = std::max(inter_cols, D * L.Hout);
    const size_t per_step = std::max<size_t>(1, D * B * GH * sizeof(float));
    const int bs = static_cast<int>(std::clamp<int64_t>(static_cast<int64_t>(xp_bytes_ / per_step),
                                                        1, std::max<int64_t>(T, 1)));
    lay.block_steps.push_back(bs);
    xp = std::max(xp, per_step * bs);
    rec = std::max(rec, D * B * GH * sizeof(float));
    proj = std::max(proj, D * B * L.P * sizeof(float));
    z = std::max(z, D * B * L.H * sizeof(float));
    rhc = std::max(rhc, D * B * L.Hout * es);
    auxc = std::max(auxc, D * B * L.H * es);
  }
  lay.xin = plan.place("xin", T * B * layers_.front().params.I * es);
  lay.inter[0] = plan.place("inter0", T * B * inter_cols * es);
  lay.inter[1] = nl > 1 ? plan.place("inter1", T * B * inter_cols * es) : lay.inter[0];
  lay.xp = plan.place("xp", xp);
  lay.rec = plan.place("rec", rec);
  lay.proj_out = plan.place("proj_out", proj);
  lay.z = plan.place("z", z);
  lay.rhc = plan.place("rhc", rhc);
  lay.auxc = plan.place("auxc", auxc);
  lay.mask = plan.place("mask", T * B);
  for (size_t l = 0; l < nl; ++l) {
    const LayerParams& L = layers_[l].params;
    const size_t n_h = static_cast<size_t>(L.D) * B * L.Hout;
    lay.h.push_back(plan.place("h", 2 * n_h * sizeof(float)));
    lay.hc.push_back(ct_ == DType::F32 ? lay.h.back() : plan.place("hc", 2 * n_h * es));
    lay.c.push_back(plan.place("c", static_cast<size_t>(L.D) * B * L.H * sizeof(float)));
  }
  if (staging != Staging::None) {
    lay.sx = plan.place("staged x", T * B * input_size() * sizeof(float));
    lay.sy = plan.place("staged y", T * B * output_size() * sizeof(float));
    lay.smask = plan.place("staged mask", T * B);
  }
  if (staging == Staging::All) {
    lay.sh0 = plan.place("staged h0", B * h_floats() * sizeof(float));
    lay.sc0 = plan.place("staged c0", B * c_floats() * sizeof(float));
    lay.shn = plan.place("staged h_n", B * h_floats() * sizeof(float));
    lay.scn = plan.place("staged c_n", B * c_floats() * sizeof(float));
  }
  lay.total = std::max<size_t>(plan.total(), kAlign);
  return lay;
}

void CudaNetwork::run(Workspace& ws, char* base, const Layout& lay, const DeviceCall& call,
                      cudaStream_t stream) const {
  const int64_t T = call.steps, B = call.batch;
  const int nl = static_cast<int>(layers_.size());
  const DType sdt = call.state_dtype;
  if (call.mask != nullptr && T * B > 0) {
    PYLSTM_CUDA_CHECK(cudaMemcpyAsync(base + lay.mask, call.mask, static_cast<size_t>(T * B),
                                      cudaMemcpyDeviceToDevice, stream));
  }
  launch_gather_rows(call.x.data, call.x.dtype, call.x.stride_t, call.x.stride_b, T, B,
                     input_size(), base + lay.xin, ct_, stream);
  std::vector<std::string> used(nl);
  int64_t h_off = 0, c_off = 0;
  for (int l = 0; l < nl; ++l) {
    const DeviceLayer& dl = layers_[l];
    const LayerParams& L = dl.params;
    const int64_t n_h = static_cast<int64_t>(L.D) * B * L.Hout;
    const int64_t n_c = static_cast<int64_t>(L.D) * B * L.H;
    const bool lstm = L.cell == kCellLSTM;

    LayerCall c;
    c.layer = &dl;
    c.index = l;
    c.ct = ct_;
    c.x = l == 0 ? base + lay.xin : base + lay.inter[(l - 1) % 2];
    c.block_steps = lay.block_steps[l];
    StepBuffers& S = c.S;
    S.T = static_cast<int>(T);
    S.B = static_cast<int>(B);
    S.xp = reinterpret_cast<const float*>(base + lay.xp);
    S.xp_steps = c.block_steps;
    S.rec = reinterpret_cast<float*>(base + lay.rec);
    S.proj_out = reinterpret_cast<float*>(base + lay.proj_out);
    S.h = reinterpret_cast<float*>(base + lay.h[l]);
    S.hc = base + lay.hc[l];
    S.c = reinterpret_cast<float*>(base + lay.c[l]);
    S.z = reinterpret_cast<float*>(base + lay.z);
    S.rhc = base + lay.rhc;
    S.auxc = base + lay.auxc;
    S.y = base + lay.inter[l % 2];
    S.mask = call.mask != nullptr ? reinterpret_cast<const uint8_t*>(base + lay.mask) : nullptr;

    // Initial state (parity 0), float32 and its compute-type copy.
    if (call.h0 != nullptr) {
      launch_convert(offset(call.h0, h_off, sdt), sdt, S.h, DType::F32, n_h, stream);
      if (ct_ != DType::F32) launch_convert(S.h, DType::F32, S.hc, ct_, n_h, stream);
    } else if (n_h > 0) {
      PYLSTM_CUDA_CHECK(cudaMemsetAsync(S.h, 0, n_h * sizeof(float), stream));
      if (ct_ != DType::F32) {
        PYLSTM_CUDA_CHECK(cudaMemsetAsync(S.hc, 0, n_h * dtype_size(ct_), stream));
      }
    }
    if (lstm) {
      if (call.c0 != nullptr) {
        launch_convert(offset(call.c0, c_off, sdt), sdt, S.c, DType::F32, n_c, stream);
      } else if (n_c > 0) {
        PYLSTM_CUDA_CHECK(cudaMemsetAsync(S.c, 0, n_c * sizeof(float), stream));
      }
    }

    if (T > 0) {
      PersistentPlan plan;
      const bool try_persistent = strategy_ == Strategy::Persistent ||
                                  (strategy_ == Strategy::Auto && B <= persistent_max_batch_);
      if (try_persistent && persistent_plan(l, static_cast<int>(B), &plan)) {
        run_persistent(ws.cublas(), c, plan, stream);
        used[l] = "persistent";
      } else if (strategy_ == Strategy::Steps) {
        enqueue_step_loop(ws.cublas(), c, stream);
        used[l] = "steps";
      } else {
        used[l] = run_step_loop_graph(ws, c, stream);
      }
    } else {
      used[l] = "none";
    }

    // Final state: the parity after T steps.
    if (call.h_n != nullptr) {
      launch_convert(S.h + (T & 1) * n_h, DType::F32, offset(call.h_n, h_off, sdt), sdt, n_h,
                     stream);
    }
    if (lstm && call.c_n != nullptr) {
      launch_convert(S.c, DType::F32, offset(call.c_n, c_off, sdt), sdt, n_c, stream);
    }
    h_off += n_h;
    c_off += n_c;
  }
  launch_scatter_rows(base + lay.inter[(nl - 1) % 2], ct_, T, B, output_size(),
                      const_cast<void*>(call.y.data), call.y.dtype, call.y.stride_t,
                      call.y.stride_b, stream);
  std::lock_guard<std::mutex> lock(mutex_);
  last_strategies_ = std::move(used);
}

void CudaNetwork::forward_device(const DeviceArgs& call) const {
  check_sizes(call.steps, call.batch);
  if (call.batch == 0) return;
  const cudaStream_t stream = static_cast<cudaStream_t>(call.stream);
  DeviceGuard guard(device_);
  std::unique_ptr<Workspace> ws = take_workspace();
  try {
    const Layout lay = plan_layout(call.steps, call.batch, Staging::None);
    char* base = ws->arena(lay.total);
    ws->begin(stream);
    run(*ws, base, lay, call, stream);
    ws->end(stream);
  } catch (...) {
    try {
      ws->end(stream);  // whatever was enqueued is waited for by the next user
    } catch (...) {
    }
    give_back(std::move(ws));
    throw;
  }
  give_back(std::move(ws));
}

void CudaNetwork::forward(const ForwardArgs& args) const { forward_host(args, nullptr, nullptr); }

void CudaNetwork::forward_host(const ForwardArgs& a, float* state_h, float* state_c) const {
  const int64_t T = a.steps, B = a.batch;
  check_sizes(T, B);
  if (B == 0) return;
  const bool on_device = state_h != nullptr;
  const int64_t I = input_size(), O = output_size();
  DeviceGuard guard(device_);
  std::unique_ptr<Workspace> ws = take_workspace();
  const cudaStream_t st = ws->own_stream();
  try {
    const Layout lay = plan_layout(T, B, on_device ? Staging::Sequences : Staging::All);
    char* base = ws->arena(lay.total);
    ws->begin(st);
    std::vector<float> x(static_cast<size_t>(T * B * I));
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t b = 0; b < B; ++b) {
        std::memcpy(x.data() + (t * B + b) * I, a.x.row(t, b), I * sizeof(float));
      }
    }
    auto upload = [&](size_t at, const void* src, size_t bytes) {
      if (src != nullptr && bytes > 0) {
        PYLSTM_CUDA_CHECK(cudaMemcpyAsync(base + at, src, bytes, cudaMemcpyHostToDevice, st));
      }
    };
    upload(lay.sx, x.data(), x.size() * sizeof(float));
    upload(lay.smask, a.mask, static_cast<size_t>(T * B));
    if (!on_device) {
      upload(lay.sh0, a.h0, static_cast<size_t>(B * h_floats()) * sizeof(float));
      upload(lay.sc0, a.c0, static_cast<size_t>(B * c_floats()) * sizeof(float));
      // c_n rows of non-LSTM layers are left as the caller had them (as the CPU backend does).
      upload(lay.scn, a.c_n, static_cast<size_t>(B * c_floats()) * sizeof(float));
    }

    DeviceCall call;
    call.steps = T;
    call.batch = B;
    call.x = DeviceRows{base + lay.sx, DType::F32, B * I, I};
    call.y = DeviceRows{base + lay.sy, DType::F32, B * O, O};
    call.mask = a.mask != nullptr ? reinterpret_cast<const uint8_t*>(base + lay.smask) : nullptr;
    call.state_dtype = DType::F32;
    if (on_device) {
      // Each layer reads its block of the state before it runs and writes it after: in place.
      call.h0 = state_h;
      call.c0 = state_c;
      call.h_n = state_h;
      call.c_n = state_c;
    } else {
      call.h0 = a.h0 != nullptr ? base + lay.sh0 : nullptr;
      call.c0 = a.c0 != nullptr ? base + lay.sc0 : nullptr;
      call.h_n = a.h_n != nullptr ? base + lay.shn : nullptr;
      call.c_n = a.c_n != nullptr ? base + lay.scn : nullptr;
    }
    run(*ws, base, lay, call, st);

    std::vector<float> y(static_cast<size_t>(T * B * O));
    auto download = [&](void* dst, size_t at, size_t bytes) {
      if (dst != nullptr && bytes > 0) {
        PYLSTM_CUDA_CHECK(cudaMemcpyAsync(dst, base + at, bytes, cudaMemcpyDeviceToHost, st));
      }
    };
    download(y.data(), lay.sy, y.size() * sizeof(float));
    if (!on_device) {
      download(a.h_n, lay.shn, static_cast<size_t>(B * h_floats()) * sizeof(float));
      download(a.c_n, lay.scn, static_cast<size_t>(B * c_floats()) * sizeof(float));
    }
    ws->end(st);
    PYLSTM_CUDA_CHECK(cudaStreamSynchronize(st));
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t b = 0; b < B; ++b) {
        std::memcpy(a.y.row(t, b), y.data() + (t * B + b) * O, O * sizeof(float));
      }
    }
  } catch (...) {
    try {
      ws->end(st);
      (void)cudaStreamSynchronize(st);  // nothing may still write into host memory we free
    } catch (...) {
    }
    give_back(std::move(ws));
    throw;
  }
  give_back(std::move(ws));
}

}  // namespace cuda
}  // namespace pylstm
