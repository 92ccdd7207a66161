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
  // Matrices: per direction w [GH][ldw], r [GH][ldr], proj [P][ldp] (elements).
  const int64_t w_elems = GH * p.ldw, r_elems = GH * p.ldr, p_elems = P * p.ldp;
  auto aligned_elems = [&](int64_t elems) {
    return static_cast<int64_t>(align_up(static_cast<size_t>(elems) * es, kAlign)) / es;
  };
  const int64_t w_step = aligned_elems(w_elems), r_step = aligned_elems(r_elems),
                p_step = aligned_elems(p_elems);
  const int64_t dir_elems = w_step + r_step + p_step;
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
  bool peep = false;  // a direction without peepholes gets zeros, which is the same
  for (const DirectionDesc& dd : L.directions) peep = peep || !dd.peephole.empty();
  const int64_t v_bias = 0, v_rn = align_up(GH, 64), v_peep = v_rn + align_up(H, 64);
  const int64_t v_dir = v_peep + (peep ? align_up(3 * H, 64) : 0);
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

}  // namespace cuda
}  // namespace pylstm
