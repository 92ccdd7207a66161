// What every backend shares (backend.hpp): network sizes, the state copies of a stream by
// blocks and rows, the defaults of the optional entry points. Compiled into _core and _cuda.
#include "pylstm/backend.hpp"

#include <stdexcept>
#include <string>

namespace pylstm {

NetworkSizes NetworkSizes::of(const NetworkDesc& net) {
  NetworkSizes s;
  s.input_size = net.input_size();
  s.output_size = net.output_size();
  s.num_layers = static_cast<int>(net.layers.size());
  for (const LayerDesc& L : net.layers) {
    s.lstm = s.lstm || L.cell == CellKind::LSTM;
    for (int64_t d = 0; d < L.num_directions(); ++d) {
      s.h_blocks.push_back(L.output_size());
      s.c_blocks.push_back(L.hidden_size);
      s.h_floats += L.output_size();
      s.c_floats += L.hidden_size;
    }
  }
  return s;
}

// Calls fn(state offset, count, host offset) for every piece of the state of `row` (all rows
// when row < 0: one piece).
template <typename Fn>
void StreamState::for_blocks(Which which, int64_t row, Fn fn) const {
  const std::vector<int64_t>& blocks = which == Which::H ? sizes_.h_blocks : sizes_.c_blocks;
  const int64_t per_seq = which == Which::H ? sizes_.h_floats : sizes_.c_floats;
  if (row < 0) {
    if (per_seq > 0) fn(int64_t{0}, per_seq * batch_, int64_t{0});
    return;
  }
  if (row >= batch_) {
    throw std::invalid_argument("row " + std::to_string(row) + " of a stream of " +
                                std::to_string(batch_) + " sequences");
  }
  int64_t state_off = 0, host_off = 0;
  for (const int64_t n : blocks) {
    if (n > 0) fn(state_off + row * n, n, host_off);
    state_off += batch_ * n;
    host_off += n;
  }
}

void StreamState::get(float* h, float* c, int64_t row) const {
  if (h != nullptr) {
    for_blocks(Which::H, row,
               [&](int64_t at, int64_t n, int64_t to) { copy_out(Which::H, at, n, h + to); });
  }
  if (c == nullptr) return;
  for_blocks(Which::C, row,
             [&](int64_t at, int64_t n, int64_t to) { copy_out(Which::C, at, n, c + to); });
}

void StreamState::set(const float* h, const float* c, int64_t row) {
  for_blocks(Which::H, row,
             [&](int64_t at, int64_t n, int64_t from) { copy_in(Which::H, at, n, h + from); });
  for_blocks(Which::C, row, [&](int64_t at, int64_t n, int64_t from) {
    if (c != nullptr) {
      copy_in(Which::C, at, n, c + from);
    } else {
      zero(Which::C, at, n);
    }
  });
}

void StreamState::reset(int64_t row) {
  for (const Which which : {Which::H, Which::C}) {
    for_blocks(which, row, [&](int64_t at, int64_t n, int64_t) { zero(which, at, n); });
  }
}

void Backend::forward_device(const DeviceArgs&) const {
  throw std::invalid_argument("forward_device needs a CUDA backend; this one is " + name());
}

std::string Backend::persistent_refusal(int layer, int /*batch*/) const {
  if (layer < 0 || layer >= sizes_.num_layers) {
    throw std::invalid_argument("no layer " + std::to_string(layer));
  }
  return "the persistent kernel is CUDA's; this backend is " + name();
}

void Backend::check_owner(const StreamState& state) const {
  if (state.owner() != this) {
    throw std::invalid_argument("this stream state was opened by another network");
  }
}

}  // namespace pylstm
