#include "device_layer.hpp"

#include <algorithm>
#include <vector>

#include "kernels.hpp"

namespace pylstm {
namespace cuda {
namespace {

int64_t padded(int64_t n) { return (n + kWeightPad - 1) / kWeightPad * kWeightPad; }

// Byte offsets are kept 256-aligned (cudaMalloc's alignment), so every matrix row is too.
constexpr size_t kAlign = 256;

// src [rows][cols] row-major -> dst [rows][ld] (zeros in the padding).
void pad_rows(const std::vector<float>& src, int64_t rows, int64_t cols, int64_t ld, float* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(src.begin() + r * cols, src.begin() + (r + 1) * cols, dst + r * ld);
  }
}

// [rows][ld] -> [rows][cols] (the inverse of pad_rows).
std::vector<float> unpad_rows(const float* src, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) std::copy(src + r * ld, src + r * ld + cols, &out[r * cols]);
  return out;
}

// Where each direction's arrays sit in the two buffers of a layer (in elements: compute-type
// elements of `matrices`, floats of `vectors`).
struct Layout {
  int64_t w_step = 0, r_step = 0, p_step = 0, dir_elems = 0;
  int64_t v_bias = 0, v_rn = 0, v_peep = 0, v_dir = 0;
};

Layout layout_of(const LayerParams& p, DType ct, bool peep) {
  const int64_t GH = static_cast<int64_t>(p.G) * p.H, H = p.H, P = p.P;
  const int es = dtype_size(ct);
  auto aligned_elems = [&](int64_t elems) {
    return static_cast<int64_t>(align_up(static_cast<size_t>(elems) * es, kAlign)) / es;
  };
  Layout lay;
  lay.w_step = aligned_elems(GH * p.ldw);
  lay.r_step = aligned_elems(GH * p.ldr);
  lay.p_step = aligned_elems(P * p.ldp);
  lay.dir_elems = lay.w_step + lay.r_step + lay.p_step;
  lay.v_bias = 0;
  lay.v_rn = align_up(GH, 64);
  lay.v_peep = lay.v_rn + align_up(H, 64);
  lay.v_dir = lay.v_peep + (peep ? align_up(3 * H, 64) : 0);
  return lay;
}

}  // namespace

DeviceLayer upload_layer(const LayerDesc& L, DType ct, cudaStream_t stream) {
  DeviceLayer out;
  LayerParams& p = out.params;
  p.cell = L.cell == CellKind::LSTM ? kCellLSTM : L.cell == CellKind::GRU ? kCellGRU : kCellRNN;
  p.G = num_gates(L.cell);
  p.I = static_cast<int>(L.input_size);
  p.H = static_cast<int>(L.hidden_size);
  p.Hout = static_cast<int>(L.output_size());
  p.P = static_cast<int>(L.proj_size);
  p.ldw = static_cast<int>(padded(p.I));
  p.ldr = static_cast<int>(padded(p.Hout));
  p.ldp = p.P > 0 ? static_cast<int>(padded(p.H)) : 0;
  p.clip = L.clip > 0.f ? L.clip : 0.f;
  p.input_forget = L.input_forget ? 1 : 0;
  p.lbr = L.linear_before_reset ? 1 : 0;
  p.hold = L.masked_output == MaskedOutput::Hold ? 1 : 0;
  p.D = static_cast<int>(L.num_directions());

  const int64_t D = p.D, GH = static_cast<int64_t>(p.G) * p.H, H = p.H, P = p.P;
  const int es = dtype_size(ct);
  bool peep = false;  // a direction without peepholes gets zeros, which is the same
  for (const DirectionDesc& dd : L.directions) peep = peep || !dd.peephole.empty();
  const Layout lay = layout_of(p, ct, peep);
  // Matrices: per direction w [GH][ldw], r [GH][ldr], proj [P][ldp] (elements).
  const int64_t w_step = lay.w_step, r_step = lay.r_step, dir_elems = lay.dir_elems;
  std::vector<float> host(static_cast<size_t>(D * dir_elems), 0.f);
  for (int64_t d = 0; d < D; ++d) {
    const DirectionDesc& dd = L.directions[d];
    float* base = host.data() + d * dir_elems;
    pad_rows(dd.w, GH, p.I, p.ldw, base);
    pad_rows(dd.r, GH, p.Hout, p.ldr, base + w_step);
    if (P > 0) pad_rows(dd.proj, P, H, p.ldp, base + w_step + r_step);
  }

  // Vectors (float32): per direction bias [GH], bias_rn [H], peephole [3H].
  const bool gru_lbr = L.cell == CellKind::GRU && L.linear_before_reset;
  const int64_t v_bias = lay.v_bias, v_rn = lay.v_rn, v_peep = lay.v_peep, v_dir = lay.v_dir;
  std::vector<float> vec(static_cast<size_t>(D * v_dir), 0.f);
  for (int64_t d = 0; d < D; ++d) {
    const DirectionDesc& dd = L.directions[d];
    float* base = vec.data() + d * v_dir;
    if (!dd.bias_w.empty()) {
      for (int64_t c = 0; c < GH; ++c) {
        const bool rn = gru_lbr && c >= 2 * H;  // recurrent bias of n stays inside r * (...)
        base[v_bias + c] = dd.bias_w[c] + (rn ? 0.f : dd.bias_r[c]);
        if (rn) base[v_rn + (c - 2 * H)] = dd.bias_r[c];
      }
    }
    if (!dd.peephole.empty()) std::copy(dd.peephole.begin(), dd.peephole.end(), base + v_peep);
  }

  // Upload: floats first; a conversion kernel narrows them to the compute type.
  DeviceBuffer staging(host.size() * sizeof(float));
  PYLSTM_CUDA_CHECK(cudaMemcpyAsync(staging.get(), host.data(), host.size() * sizeof(float),
                                    cudaMemcpyHostToDevice, stream));
  if (ct == DType::F32) {
    out.matrices = std::move(staging);
  } else {
    out.matrices = DeviceBuffer(host.size() * es);
    launch_convert(staging.get(), DType::F32, out.matrices.get(), ct,
                   static_cast<int64_t>(host.size()), stream);
  }
  out.vectors = DeviceBuffer(vec.size() * sizeof(float));
  PYLSTM_CUDA_CHECK(cudaMemcpyAsync(out.vectors.get(), vec.data(), vec.size() * sizeof(float),
                                    cudaMemcpyHostToDevice, stream));
  PYLSTM_CUDA_CHECK(cudaStreamSynchronize(stream));  // before host / staging go away

  for (int64_t d = 0; d < D; ++d) {
    DirWeights& w = p.dir[d];
    const DirectionDesc& dd = L.directions[d];
    char* m = static_cast<char*>(out.matrices.get()) + d * dir_elems * es;
    w.w = m;
    w.r = m + w_step * es;
    w.proj = P > 0 ? m + (w_step + r_step) * es : nullptr;
    float* v = out.vectors.as<float>() + d * v_dir;
    w.bias = v + v_bias;
    w.bias_rn = v + v_rn;
    w.peephole = peep ? v + v_peep : nullptr;
    for (int a = 0; a < 3; ++a) {
      w.act[a].kind = static_cast<int>(dd.act[a].kind);
      w.act[a].alpha = dd.act[a].alpha;
      w.act[a].beta = dd.act[a].beta;
    }
    w.reverse = dd.reverse ? 1 : 0;
  }
  return out;
}

LayerDesc download_layer(const DeviceLayer& layer, DType ct, cudaStream_t stream) {
  const LayerParams& p = layer.params;
  const bool peep = p.dir[0].peephole != nullptr;
  const Layout lay = layout_of(p, ct, peep);
  const int64_t D = p.D, GH = static_cast<int64_t>(p.G) * p.H, H = p.H, P = p.P;

  // Matrices widened to float32 on the device, then both buffers copied back.
  const int64_t n_mat = D * lay.dir_elems;
  std::vector<float> host(static_cast<size_t>(n_mat));
  std::vector<float> vec(static_cast<size_t>(D * lay.v_dir));
  DeviceBuffer wide;
  const void* mat = layer.matrices.get();
  if (ct != DType::F32 && n_mat > 0) {
    wide = DeviceBuffer(static_cast<size_t>(n_mat) * sizeof(float));
    launch_convert(mat, ct, wide.get(), DType::F32, n_mat, stream);
    mat = wide.get();
  }
  if (n_mat > 0) {
    PYLSTM_CUDA_CHECK(cudaMemcpyAsync(host.data(), mat, host.size() * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream));
  }
  if (!vec.empty()) {
    PYLSTM_CUDA_CHECK(cudaMemcpyAsync(vec.data(), layer.vectors.get(), vec.size() * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream));
  }
  PYLSTM_CUDA_CHECK(cudaStreamSynchronize(stream));

  LayerDesc L;
  L.cell = p.cell == kCellLSTM  ? CellKind::LSTM
           : p.cell == kCellGRU ? CellKind::GRU
                                : CellKind::RNN;
  L.input_size = p.I;
  L.hidden_size = p.H;
  L.proj_size = p.P;
  L.clip = p.clip;
  L.input_forget = p.input_forget != 0;
  L.linear_before_reset = p.lbr != 0;
  L.masked_output = p.hold ? MaskedOutput::Hold : MaskedOutput::Zero;
  const bool gru_lbr = L.cell == CellKind::GRU && L.linear_before_reset;
  for (int64_t d = 0; d < D; ++d) {
    const DirWeights& w = p.dir[d];
    DirectionDesc dd;
    dd.reverse = w.reverse != 0;
    for (int a = 0; a < 3; ++a) {
      dd.act[a] = Activation{static_cast<ActKind>(w.act[a].kind), w.act[a].alpha, w.act[a].beta};
    }
    const float* base = host.data() + d * lay.dir_elems;
    dd.w = unpad_rows(base, GH, p.I, p.ldw);
    dd.r = unpad_rows(base + lay.w_step, GH, p.Hout, p.ldr);
    if (P > 0) dd.proj = unpad_rows(base + lay.w_step + lay.r_step, P, H, p.ldp);
    const float* v = vec.data() + d * lay.v_dir;
    // The folded bias as bias_w, bias_r zeros but for the GRU recurrent bias of n.
    dd.bias_w.assign(v + lay.v_bias, v + lay.v_bias + GH);
    dd.bias_r.assign(static_cast<size_t>(GH), 0.f);
    if (gru_lbr) std::copy(v + lay.v_rn, v + lay.v_rn + H, dd.bias_r.begin() + 2 * H);
    if (peep) dd.peephole.assign(v + lay.v_peep, v + lay.v_peep + 3 * H);
    L.directions.push_back(std::move(dd));
  }
  return L;
}

}  // namespace cuda
}  // namespace pylstm
