// The layer dicts of pylstm.network.Layer.to_core() -> NetworkDesc; shared by _core and _cuda.
#include "parse_network.hpp"

#include <pybind11/numpy.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

namespace py = pybind11;

namespace pylstm {
namespace {

std::vector<float> floats_of(const py::handle& obj, const std::string& what) {
  if (obj.is_none()) return {};
  auto arr = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(obj);
  if (!arr) throw py::type_error(what + ": expected an array of floats");
  return std::vector<float>(arr.data(), arr.data() + arr.size());
}

template <typename T>
T get(const py::dict& d, const char* key, T fallback) {
  return d.contains(key) ? d[key].cast<T>() : fallback;
}

CellKind parse_cell(const std::string& s) {
  if (s == "lstm") return CellKind::LSTM;
  if (s == "gru") return CellKind::GRU;
  if (s == "rnn") return CellKind::RNN;
  throw std::invalid_argument("unknown cell '" + s + "'; expected lstm, gru or rnn");
}

const char* cell_name(CellKind cell) {
  return cell == CellKind::LSTM ? "lstm" : cell == CellKind::GRU ? "gru" : "rnn";
}

// A float32 array of `shape` holding `v` (None when v is empty).
py::object array_of(const std::vector<float>& v, std::vector<py::ssize_t> shape) {
  if (v.empty()) return py::none();
  py::array_t<float> a(shape);
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

}  // namespace

py::list network_to_python(const NetworkDesc& net) {
  py::list layers;
  for (const LayerDesc& L : net.layers) {
    const py::ssize_t GH = num_gates(L.cell) * L.hidden_size;
    const int acts = L.cell == CellKind::LSTM ? 3 : L.cell == CellKind::GRU ? 2 : 1;
    py::list dirs;
    for (const DirectionDesc& D : L.directions) {
      py::list act;
      for (int k = 0; k < acts; ++k) {
        act.append(py::make_tuple(activation_name(D.act[k].kind), D.act[k].alpha, D.act[k].beta));
      }
      py::dict d;
      d["reverse"] = D.reverse;
      d["activations"] = act;
      d["w"] = array_of(D.w, {GH, L.input_size});
      d["r"] = array_of(D.r, {GH, L.output_size()});
      d["bias_w"] = array_of(D.bias_w, {GH});
      d["bias_r"] = array_of(D.bias_r, {GH});
      d["peephole"] = array_of(D.peephole, {3 * L.hidden_size});
      d["proj"] = array_of(D.proj, {L.proj_size, L.hidden_size});
      dirs.append(d);
    }
    py::dict d;
    d["cell"] = cell_name(L.cell);
    d["input_size"] = L.input_size;
    d["hidden_size"] = L.hidden_size;
    d["proj_size"] = L.proj_size;
    d["clip"] = L.clip;
    d["input_forget"] = L.input_forget;
    d["linear_before_reset"] = L.linear_before_reset;
    d["masked_output"] = L.masked_output == MaskedOutput::Hold ? "hold" : "zero";
    d["directions"] = dirs;
    layers.append(d);
  }
  return layers;
}

NetworkDesc parse_network(const py::list& layers) {
  NetworkDesc net;
  for (size_t l = 0; l < layers.size(); ++l) {
    const py::dict d = layers[l].cast<py::dict>();
    const std::string at = "layer " + std::to_string(l);
    LayerDesc L;
    L.cell = parse_cell(d["cell"].cast<std::string>());
    L.input_size = d["input_size"].cast<int64_t>();
    L.hidden_size = d["hidden_size"].cast<int64_t>();
    L.proj_size = get<int64_t>(d, "proj_size", 0);
    L.clip = get<float>(d, "clip", 0.f);
    L.input_forget = get<bool>(d, "input_forget", false);
    L.linear_before_reset = get<bool>(d, "linear_before_reset", true);
    const std::string masked = get<std::string>(d, "masked_output", "zero");
    if (masked != "zero" && masked != "hold") {
      throw std::invalid_argument(at + ": masked_output must be 'zero' or 'hold'");
    }
    L.masked_output = masked == "hold" ? MaskedOutput::Hold : MaskedOutput::Zero;
    for (const py::handle& hd : d["directions"].cast<py::list>()) {
      const py::dict dd = hd.cast<py::dict>();
      DirectionDesc D;
      D.reverse = get<bool>(dd, "reverse", false);
      const py::list acts = dd["activations"].cast<py::list>();
      if (acts.size() > 3) throw std::invalid_argument(at + ": at most 3 activations");
      for (size_t k = 0; k < acts.size(); ++k) {
        const py::tuple t = acts[k].cast<py::tuple>();
        D.act[k] = Activation{parse_activation(t[0].cast<std::string>()), t[1].cast<float>(),
                              t[2].cast<float>()};
      }
      D.w = floats_of(dd["w"], at + " w");
      D.r = floats_of(dd["r"], at + " r");
      D.bias_w = floats_of(dd.attr("get")("bias_w", py::none()), at + " bias_w");
      D.bias_r = floats_of(dd.attr("get")("bias_r", py::none()), at + " bias_r");
      D.peephole = floats_of(dd.attr("get")("peephole", py::none()), at + " peephole");
      D.proj = floats_of(dd.attr("get")("proj", py::none()), at + " proj");
      L.directions.push_back(std::move(D));
    }
    net.layers.push_back(std::move(L));
  }
  validate(net);
  return net;
}

}  // namespace pylstm
