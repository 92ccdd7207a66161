// The canonical network description: what every reader (PyTorch, Keras, ONNX, plain arrays)
// converts to, and the only form the backends know.
//
// Canonical conventions (the one place they are written down; readers convert at load time):
//   * gate order   LSTM: i, f, g (cell candidate), o      GRU: r (reset), z (update), n (new)
//                  RNN: a single gate
//   * weights      w: [G*H, I]  rows gate-major (gate 0 units 0..H-1, then gate 1, ...)
//                  r: [G*H, Hout] where Hout = proj_size if set, else H
//                  bias_w, bias_r: [G*H] each (both empty when the layer has no bias)
//                  peephole: [3*H] in the order i, f, o (empty when absent)
//                  proj: [P, H] (LSTM with proj_size P only)
//   * cell math    LSTM  i = f(Wi x + Ri h + bi + pi*c)   f = f(Wf x + Rf h + bf + pf*c)
//                        (coupled: f = 1 - i)  g = g(Wg x + Rg h + bg)
//                        c' = f*c + i*g        o = f(Wo x + Ro h + bo + po*c')
//                        h' = o * h(c')        (projection: h' = proj · h')
//                  GRU   r = f(Wr x + Rr h + br)   z = f(Wz x + Rz h + bz)
//                        linear_before_reset: n = g(Wn x + bwn + r*(Rn h + brn))   (PyTorch, Keras
//                        reset_after) otherwise:           n = g(Wn x + bwn + Rn (r*h) + brn) (ONNX
//                        default, Keras 2) h' = (1 - z)*n + z*h
//                  RNN   h' = f(W x + R h + bw + br)
//                  clip > 0 clamps the gate pre-activations to [-clip, clip] (ONNX Runtime's
//                  reading of ONNX clip: C_t is neither clipped nor clipped before h).
//   * masked steps (mask[t][b] == 0): state carried unchanged; the output is zero, or the
//     previous output of that direction (zero before the first valid step) with Hold.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace pylstm {

enum class CellKind { LSTM, GRU, RNN };

// Activation functions: the eleven of the ONNX specification (which cover PyTorch's, and Keras 2
// hard_sigmoid = HardSigmoid(0.2, 0.5), Keras 3's = HardSigmoid(1/6, 0.5), linear = Affine(1, 0)),
// then the other Keras activations a recurrent layer may be configured with.
enum class ActKind {
  Sigmoid,
  Tanh,
  Relu,
  Affine,           // alpha*x + beta
  LeakyRelu,        // x < 0 ? alpha*x : x
  ThresholdedRelu,  // x > alpha ? x : 0
  ScaledTanh,       // alpha * tanh(beta*x)
  HardSigmoid,      // clamp(alpha*x + beta, 0, 1)
  Elu,              // x < 0 ? alpha*(exp(x) - 1) : x
  Softsign,         // x / (1 + |x|)
  Softplus,         // log(1 + exp(x))
  Selu,             // 1.0507 * (x > 0 ? x : 1.67326 * (exp(x) - 1))
  Silu,             // x * sigmoid(x)  (swish)
  Gelu,             // x/2 * (1 + erf(x / sqrt(2)))
  GeluTanh,         // x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
  Exponential,      // exp(x)
  Relu6,            // min(max(x, 0), 6)
  HardSilu,         // x * min(max(x + 3, 0), 6) / 6  (hard_swish)
  HardTanh,         // min(max(x, -1), 1)
  Mish,             // x * tanh(softplus(x))
  LogSigmoid,       // -softplus(-x)
  TanhShrink,       // x - tanh(x)
  Celu,             // x > 0 ? x : alpha * (exp(x / alpha) - 1)
};

struct Activation {
  ActKind kind = ActKind::Sigmoid;
  float alpha = 0.f;
  float beta = 0.f;
};

// Parses the names above in lower case without underscores ("sigmoid", "leakyrelu", "gelutanh",
// ...; case-insensitive, underscores ignored).
ActKind parse_activation(const std::string& name);
const char* activation_name(ActKind kind);
// Every activation name with the number of parameters (alpha, beta) it reads, in ActKind order:
// the list pylstm exports as _core.ACTIVATIONS (the one source of truth for Python).
std::vector<std::pair<std::string, int>> activation_table();

enum class MaskedOutput { Zero, Hold };

// The canonical gate order, one letter per gate block of w, r and the biases: LSTM "ifgo"
// (input, forget, cell candidate, output), GRU "rzn" (reset, update, new), RNN "h".
const char* canonical_gate_order(CellKind cell);

inline int num_gates(CellKind cell) {
  return cell == CellKind::LSTM ? 4 : cell == CellKind::GRU ? 3 : 1;
}

struct DirectionDesc {
  bool reverse = false;
  // LSTM: {f, g, h}; GRU: {f, g}; RNN: {f}. Unused entries are ignored.
  std::array<Activation, 3> act{};
  std::vector<float> w, r, bias_w, bias_r, peephole, proj;
};

struct LayerDesc {
  CellKind cell = CellKind::LSTM;
  int64_t input_size = 0;
  int64_t hidden_size = 0;
  int64_t proj_size = 0;  // LSTM only; 0 = no projection
  float clip = 0.f;       // <= 0: no clipping
  bool input_forget = false;
  bool linear_before_reset = true;
  MaskedOutput masked_output = MaskedOutput::Zero;
  std::vector<DirectionDesc> directions;  // 1 or 2; outputs concatenated in this order

  int64_t output_size() const { return proj_size > 0 ? proj_size : hidden_size; }
  int64_t num_directions() const { return static_cast<int64_t>(directions.size()); }
};

struct NetworkDesc {
  std::vector<LayerDesc> layers;

  int64_t input_size() const { return layers.front().input_size; }
  int64_t output_size() const {
    return layers.back().output_size() * layers.back().num_directions();
  }
};

// Throws std::invalid_argument naming the layer, direction and array whose size is wrong.
void validate(const NetworkDesc& net);

}  // namespace pylstm
