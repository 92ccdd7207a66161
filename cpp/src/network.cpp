#include "pylstm/network.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <stdexcept>

namespace pylstm {
namespace {

struct NamedActivation {
  const char* name;
  ActKind kind;
  int params;  // how many of alpha, beta the function reads
};

constexpr NamedActivation kActivations[] = {
    {"sigmoid", ActKind::Sigmoid, 0},
    {"tanh", ActKind::Tanh, 0},
    {"relu", ActKind::Relu, 0},
    {"affine", ActKind::Affine, 2},
    {"leakyrelu", ActKind::LeakyRelu, 1},
    {"thresholdedrelu", ActKind::ThresholdedRelu, 1},
    {"scaledtanh", ActKind::ScaledTanh, 2},
    {"hardsigmoid", ActKind::HardSigmoid, 2},
    {"elu", ActKind::Elu, 1},
    {"softsign", ActKind::Softsign, 0},
    {"softplus", ActKind::Softplus, 0},
    {"selu", ActKind::Selu, 0},
    {"silu", ActKind::Silu, 0},
    {"gelu", ActKind::Gelu, 0},
    {"gelutanh", ActKind::GeluTanh, 0},
    {"exponential", ActKind::Exponential, 0},
    {"relu6", ActKind::Relu6, 0},
    {"hardsilu", ActKind::HardSilu, 0},
    {"hardtanh", ActKind::HardTanh, 0},
    {"mish", ActKind::Mish, 0},
    {"logsigmoid", ActKind::LogSigmoid, 0},
    {"tanhshrink", ActKind::TanhShrink, 0},
    {"celu", ActKind::Celu, 1},
};

std::string where(size_t layer, size_t dir) {
  return "layer " + std::to_string(layer) + " direction " + std::to_string(dir);
}

void check_size(const std::vector<float>& v, size_t expected, bool optional,
                const std::string& what, const std::string& at) {
  if (optional && v.empty()) return;
  if (v.size() != expected) {
    throw std::invalid_argument(at + ": " + what + " has " + std::to_string(v.size()) +
                                " values, expected " + std::to_string(expected));
  }
}

void check_finite(const std::vector<float>& v, const std::string& what, const std::string& at) {
  for (float x : v) {
    if (!std::isfinite(x)) throw std::invalid_argument(at + ": " + what + " contains NaN or inf");
  }
}

}  // namespace

ActKind parse_activation(const std::string& name) {
  std::string key;
  for (char ch : name) {
    if (ch != '_' && ch != ' ')
      key += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  for (const auto& a : kActivations) {
    if (key == a.name) return a.kind;
  }
  std::string known;
  for (const auto& a : kActivations) known += std::string(known.empty() ? "" : ", ") + a.name;
  throw std::invalid_argument("unknown activation '" + name + "'; expected one of " + known);
}

std::vector<std::pair<std::string, int>> activation_table() {
  std::vector<std::pair<std::string, int>> table;
  for (const auto& a : kActivations) table.emplace_back(a.name, a.params);
  return table;
}

const char* canonical_gate_order(CellKind cell) {
  return cell == CellKind::LSTM ? "ifgo" : cell == CellKind::GRU ? "rzn" : "h";
}

const char* activation_name(ActKind kind) {
  for (const auto& a : kActivations) {
    if (a.kind == kind) return a.name;
  }
  return "?";
}

void validate(const NetworkDesc& net) {
  if (net.layers.empty()) throw std::invalid_argument("a network needs at least one layer");
  for (size_t l = 0; l < net.layers.size(); ++l) {
    const LayerDesc& L = net.layers[l];
    const std::string at_layer = "layer " + std::to_string(l);
    if (L.input_size < 1 || L.hidden_size < 1) {
      throw std::invalid_argument(at_layer + ": input_size and hidden_size must be >= 1, got " +
                                  std::to_string(L.input_size) + " and " +
                                  std::to_string(L.hidden_size));
    }
    if (L.proj_size < 0 || (L.proj_size > 0 && L.cell != CellKind::LSTM)) {
      throw std::invalid_argument(at_layer + ": proj_size is only for LSTM and must be >= 0");
    }
    if (L.directions.size() != 1 && L.directions.size() != 2) {
      throw std::invalid_argument(at_layer + ": expected 1 or 2 directions, got " +
                                  std::to_string(L.directions.size()));
    }
    if (l > 0) {
      const LayerDesc& prev = net.layers[l - 1];
      const int64_t fed = prev.output_size() * prev.num_directions();
      if (fed != L.input_size) {
        throw std::invalid_argument(at_layer + ": input_size is " + std::to_string(L.input_size) +
                                    " but the previous layer outputs " + std::to_string(fed));
      }
    }
    if (!std::isfinite(L.clip)) throw std::invalid_argument(at_layer + ": clip must be finite");
    if (L.input_forget && L.cell != CellKind::LSTM) {
      throw std::invalid_argument(at_layer + ": input_forget is only for LSTM");
    }
    const size_t G = static_cast<size_t>(num_gates(L.cell));
    const size_t H = static_cast<size_t>(L.hidden_size);
    const size_t I = static_cast<size_t>(L.input_size);
    const size_t Hout = static_cast<size_t>(L.output_size());
    for (size_t d = 0; d < L.directions.size(); ++d) {
      const DirectionDesc& D = L.directions[d];
      const std::string at = where(l, d);
      check_size(D.w, G * H * I, false, "input weights w", at);
      check_size(D.r, G * H * Hout, false, "recurrent weights r", at);
      check_size(D.bias_w, G * H, true, "input bias", at);
      check_size(D.bias_r, G * H, true, "recurrent bias", at);
      if (D.bias_w.empty() != D.bias_r.empty()) {
        throw std::invalid_argument(at + ": give both input and recurrent biases, or neither");
      }
      if (!D.peephole.empty() && L.cell != CellKind::LSTM) {
        throw std::invalid_argument(at + ": peepholes are only for LSTM");
      }
      check_size(D.peephole, 3 * H, true, "peephole", at);
      if (L.proj_size > 0) {
        check_size(D.proj, static_cast<size_t>(L.proj_size) * H, false, "projection", at);
      } else if (!D.proj.empty()) {
        throw std::invalid_argument(at + ": projection weights given but proj_size is 0");
      }
      for (const auto* v : {&D.w, &D.r, &D.bias_w, &D.bias_r, &D.peephole, &D.proj}) {
        check_finite(*v, "a weight", at);
      }
    }
  }
}

}  // namespace pylstm
