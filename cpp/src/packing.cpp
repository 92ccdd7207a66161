#include "packing.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace pylstm {
namespace {

// src: [G*H, K] row-major (gate-major rows). Returns chunks × [K][G*U].
AlignedFloats pack_gate_panels(const std::vector<float>& src, int G, int64_t H, int64_t K,
                               int64_t U, int64_t chunks) {
  AlignedFloats out(static_cast<size_t>(chunks * K * G * U), 0.f);
  for (int64_t u = 0; u < chunks; ++u) {
    float* panel = out.data() + u * K * G * U;
    for (int g = 0; g < G; ++g) {
      for (int64_t j = 0; j < U; ++j) {
        const int64_t unit = u * U + j;
        if (unit >= H) break;
        const float* row = src.data() + (g * H + unit) * K;
        for (int64_t k = 0; k < K; ++k) panel[k * G * U + g * U + j] = row[k];
      }
    }
  }
  return out;
}

// Converts fp32 panels (chunks × [K][cols]) to the storage precision.
WeightPanels store_as(AlignedFloats f32, int64_t K, int64_t cols, Precision precision) {
  WeightPanels out;
  if (precision == Precision::F32) {
    out.f32 = std::move(f32);
    return out;
  }
  if (precision == Precision::BF16) {
    out.bf16.resize(f32.size());
    for (size_t i = 0; i < f32.size(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, &f32[i], sizeof bits);
      bits += 0x7fff + ((bits >> 16) & 1);  // round to nearest even (weights are finite)
      out.bf16[i].bits = static_cast<uint16_t>(bits >> 16);
    }
    return out;
  }
  const int64_t chunks = cols ? static_cast<int64_t>(f32.size()) / (K * cols) : 0;
  out.i8.resize(f32.size());
  out.scale.assign(static_cast<size_t>(chunks * cols), 0.f);
  for (int64_t u = 0; u < chunks; ++u) {
    const float* panel = f32.data() + u * K * cols;
    int8_t* q = out.i8.data() + u * K * cols;
    for (int64_t c = 0; c < cols; ++c) {
      float amax = 0.f;
      for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(panel[k * cols + c]));
      const float scale = amax > 0.f ? amax / 127.f : 1.f;
      out.scale[u * cols + c] = scale;
      for (int64_t k = 0; k < K; ++k) {
        const float v = std::nearbyint(panel[k * cols + c] / scale);
        q[k * cols + c] = static_cast<int8_t>(std::min(127.f, std::max(-127.f, v)));
      }
    }
  }
  return out;
}

// A per-unit vector of gate g laid out like a pre-activation row: chunks × [G*U].
void scatter_gate_vector(const float* src, int g, int G, int64_t H, int64_t U, AlignedFloats& dst) {
  for (int64_t unit = 0; unit < H; ++unit) {
    const int64_t u = unit / U, j = unit % U;
    dst[static_cast<size_t>(u * G * U + g * U + j)] += src[unit];
  }
}

// The inverse of pack_gate_panels: panels (chunks × [K][G*U]) -> [G*H, K] row-major.
std::vector<float> unpack_gate_panels(const float* panels, int G, int64_t H, int64_t K, int64_t U,
                                      int64_t chunks) {
  std::vector<float> out(static_cast<size_t>(G * H * K));
  for (int64_t u = 0; u < chunks; ++u) {
    const float* panel = panels + u * K * G * U;
    for (int g = 0; g < G; ++g) {
      for (int64_t j = 0; j < U; ++j) {
        const int64_t unit = u * U + j;
        if (unit >= H) break;
        float* row = out.data() + (g * H + unit) * K;
        for (int64_t k = 0; k < K; ++k) row[k] = panel[k * G * U + g * U + j];
      }
    }
  }
  return out;
}

// Panels in float32, whatever their storage precision (bf16 widened, int8 times its scale).
AlignedFloats widen(const WeightPanels& p, int64_t K, int64_t cols) {
  if (!p.f32.empty()) return p.f32;
  AlignedFloats out;
  if (!p.bf16.empty()) {
    out.resize(p.bf16.size());
    for (size_t i = 0; i < p.bf16.size(); ++i) {
      const uint32_t bits = static_cast<uint32_t>(p.bf16[i].bits) << 16;
      std::memcpy(&out[i], &bits, sizeof bits);
    }
    return out;
  }
  out.resize(p.i8.size());
  const int64_t chunks = cols ? static_cast<int64_t>(p.i8.size()) / (K * cols) : 0;
  for (int64_t u = 0; u < chunks; ++u) {
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t c = 0; c < cols; ++c) {
        const size_t at = static_cast<size_t>((u * K + k) * cols + c);
        out[at] = static_cast<float>(p.i8[at]) * p.scale[static_cast<size_t>(u * cols + c)];
      }
    }
  }
  return out;
}

}  // namespace

Precision parse_precision(const std::string& name) {
  if (name == "fp32" || name == "float32") return Precision::F32;
  if (name == "bf16" || name == "bfloat16") return Precision::BF16;
  if (name == "int8") return Precision::I8;
  throw std::invalid_argument("unknown precision '" + name + "'; expected fp32, bf16 or int8");
}

PackedLayer pack_layer(const LayerDesc& L, int vector_floats, Precision precision) {
  PackedLayer P;
  P.cell = L.cell;
  P.G = num_gates(L.cell);
  P.I = L.input_size;
  P.H = L.hidden_size;
  P.P = L.proj_size;
  P.Hout = L.output_size();
  // One vector of units per gate gives 4 (LSTM) or 3 (GRU) vectors per micro-kernel row;
  // the single-gate RNN takes four vectors of units instead.
  P.U = vector_floats * (P.G == 1 ? 4 : 1);
  P.chunks = (P.H + P.U - 1) / P.U;
  P.Hp = P.chunks * P.U;
  P.Up = vector_floats * 4;
  P.proj_chunks = P.P > 0 ? (P.P + P.Up - 1) / P.Up : 0;
  P.clip = L.clip;
  P.input_forget = L.input_forget;
  P.linear_before_reset = L.linear_before_reset;
  P.masked_output = L.masked_output;
  P.precision = precision;

  for (const DirectionDesc& D : L.directions) {
    PackedDirection out;
    out.reverse = D.reverse;
    out.act = D.act;
    const int64_t GU = P.G * P.U;
    out.w = store_as(pack_gate_panels(D.w, P.G, P.H, P.I, P.U, P.chunks), P.I, GU, precision);
    out.r = store_as(pack_gate_panels(D.r, P.G, P.H, P.Hout, P.U, P.chunks), P.Hout, GU, precision);
    out.bias.assign(static_cast<size_t>(P.chunks * P.G * P.U), 0.f);
    out.bias_rn.assign(static_cast<size_t>(P.Hp), 0.f);
    if (!D.bias_w.empty()) {
      const bool gru_lbr = P.cell == CellKind::GRU && P.linear_before_reset;
      for (int g = 0; g < P.G; ++g) {
        scatter_gate_vector(D.bias_w.data() + g * P.H, g, P.G, P.H, P.U, out.bias);
        if (gru_lbr && g == 2) {
          std::copy(D.bias_r.begin() + 2 * P.H, D.bias_r.begin() + 3 * P.H, out.bias_rn.begin());
        } else {
          scatter_gate_vector(D.bias_r.data() + g * P.H, g, P.G, P.H, P.U, out.bias);
        }
      }
    }
    if (!D.peephole.empty()) {
      out.peephole.assign(static_cast<size_t>(3 * P.Hp), 0.f);
      for (int k = 0; k < 3; ++k) {
        std::copy(D.peephole.begin() + k * P.H, D.peephole.begin() + (k + 1) * P.H,
                  out.peephole.begin() + k * P.Hp);
      }
    }
    if (P.P > 0) {
      out.proj = store_as(pack_gate_panels(D.proj, 1, P.P, P.H, P.Up, P.proj_chunks), P.H, P.Up,
                          precision);
    }
    P.dirs.push_back(std::move(out));
  }
  return P;
}

LayerDesc unpack_layer(const PackedLayer& P) {
  LayerDesc L;
  L.cell = P.cell;
  L.input_size = P.I;
  L.hidden_size = P.H;
  L.proj_size = P.P;
  L.clip = P.clip;
  L.input_forget = P.input_forget;
  L.linear_before_reset = P.linear_before_reset;
  L.masked_output = P.masked_output;
  const int64_t GU = P.G * P.U;
  const bool gru_lbr = P.cell == CellKind::GRU && P.linear_before_reset;
  for (const PackedDirection& pd : P.dirs) {
    DirectionDesc D;
    D.reverse = pd.reverse;
    D.act = pd.act;
    D.w = unpack_gate_panels(widen(pd.w, P.I, GU).data(), P.G, P.H, P.I, P.U, P.chunks);
    D.r = unpack_gate_panels(widen(pd.r, P.Hout, GU).data(), P.G, P.H, P.Hout, P.U, P.chunks);
    D.bias_w.assign(static_cast<size_t>(P.G * P.H), 0.f);
    D.bias_r.assign(static_cast<size_t>(P.G * P.H), 0.f);
    for (int g = 0; g < P.G; ++g) {
      for (int64_t unit = 0; unit < P.H; ++unit) {
        const int64_t u = unit / P.U, j = unit % P.U;
        D.bias_w[static_cast<size_t>(g * P.H + unit)] =
            pd.bias[static_cast<size_t>(u * GU + g * P.U + j)];
        if (gru_lbr && g == 2) {
          D.bias_r[static_cast<size_t>(g * P.H + unit)] = pd.bias_rn[static_cast<size_t>(unit)];
        }
      }
    }
    if (!pd.peephole.empty()) {
      D.peephole.resize(static_cast<size_t>(3 * P.H));
      for (int k = 0; k < 3; ++k) {
        std::copy(pd.peephole.begin() + k * P.Hp, pd.peephole.begin() + k * P.Hp + P.H,
                  D.peephole.begin() + k * P.H);
      }
    }
    if (P.P > 0) {
      D.proj =
          unpack_gate_panels(widen(pd.proj, P.H, P.Up).data(), 1, P.P, P.H, P.Up, P.proj_chunks);
    }
    L.directions.push_back(std::move(D));
  }
  return L;
}

}  // namespace pylstm
