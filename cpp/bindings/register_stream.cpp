// _core.Stream: step-by-step inference with the state kept by the backend (host memory on the
// CPU, device memory on CUDA), so that a one-step call from Python costs one binding call
// (streaming B=1 needs a few microseconds per call on the CPU).
#include <pybind11/numpy.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "host_arrays.hpp"
#include "py_network.hpp"
#include "register.hpp"

namespace py = pybind11;

namespace pylstm {
namespace {

// A stream on any backend: the carried state lives in the backend's memory (device memory on
// CUDA, so a step moves only its inputs and outputs); h, c, set_state copy it.
class PyStream : public RawStream {
 public:
  PyStream(const PyNetwork& net, int64_t batch, bool batch_first)
      : backend_(net.shared_backend()), batch_(batch), batch_first_(batch_first) {
    if (batch < 1) throw std::invalid_argument("batch_size must be >= 1");
    py::gil_scoped_release release;
    state_ = backend_->open_state(batch);
  }

  // chunk: [B, I] (one step), or [t, B, I] ([B, t, I] batch-first). Returns the outputs in the
  // same layout, with O features.
  py::array step(const py::handle& chunk) {
    py::array x = float32_array(chunk);
    if (x.ndim() != 2 && x.ndim() != 3) {
      throw std::invalid_argument("chunk must be [B, I] or a 3-D chunk of steps, got " +
                                  std::to_string(x.ndim()) + " dimensions");
    }
    const int64_t input_size = backend_->input_size();
    const bool one_step = x.ndim() == 2;
    const int t_axis = one_step ? -1 : (batch_first_ ? 1 : 0);
    const int b_axis = one_step ? 0 : (batch_first_ ? 0 : 1);
    const int64_t steps = one_step ? 1 : x.shape(t_axis);
    const int64_t batch = x.shape(b_axis);
    const int64_t features = x.shape(x.ndim() - 1);
    if (batch != batch_ || features != input_size) {
      throw std::invalid_argument("chunk: expected " + std::to_string(batch_) + " sequences of " +
                                  std::to_string(input_size) +
                                  " features (this stream's batch_size and the model's "
                                  "input size), got " +
                                  std::to_string(batch) + " sequences of " +
                                  std::to_string(features));
    }
    if (features > 1 && x.strides(x.ndim() - 1) != static_cast<py::ssize_t>(sizeof(float))) {
      x = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(x);
    }
    std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
    shape.back() = backend_->output_size();
    py::array_t<float> y(shape);

    const int64_t sb = x.strides(b_axis) / static_cast<int64_t>(sizeof(float));
    const int64_t st = one_step ? 0 : x.strides(t_axis) / static_cast<int64_t>(sizeof(float));
    const int64_t yb = y.strides(b_axis) / static_cast<int64_t>(sizeof(float));
    const int64_t yt = one_step ? 0 : y.strides(t_axis) / static_cast<int64_t>(sizeof(float));
    if (steps > 0) {
      py::gil_scoped_release release;
      step_rows(steps, Rows<const float>{static_cast<const float*>(x.data()), st, sb},
                Rows<float>{y.mutable_data(), yt, yb});
    }
    return std::move(y);
  }

  // RawStream (the C API): no Python objects, callable without the GIL.
  void step_rows(int64_t steps, Rows<const float> x, Rows<float> y) override {
    backend_->step(*state_, steps, x, y);
  }
  int64_t batch() const override { return batch_; }
  StreamState& state() override { return *state_; }

  // row: one sequence (0 <= row < B), or all of them (None).
  void reset(const py::object& row) {
    const int64_t r = row_of(row);
    py::gil_scoped_release release;
    state_->reset(r);
  }

  // One sequence's state: (h [h_floats], c [c_floats]), laid out [L*D, Hout] / [L*D, H].
  py::tuple row_state(int64_t row) const {
    const int64_t r = row_of(py::int_(row));
    py::array_t<float> h(static_cast<py::ssize_t>(backend_->h_floats()));
    py::array_t<float> c(static_cast<py::ssize_t>(backend_->c_floats()));
    float* hp = h.mutable_data();
    float* cp = c.mutable_data();
    {
      py::gil_scoped_release release;
      state_->get(hp, cp, r);
    }
    return py::make_tuple(h, c);
  }

  void set_row_state(int64_t row, const py::handle& h, const py::handle& c) {
    const int64_t r = row_of(py::int_(row));
    const auto ha = state_array(h, backend_->h_floats(), "h");
    const auto ca = state_array(c, backend_->c_floats(), "c");
    py::gil_scoped_release release;
    state_->set(ha.data(), ca.data(), r);
  }

  // Replaces the carried state (as `h` and `c` return it: float32, h_floats / c_floats values
  // per sequence); used to restore an unpickled stream.
  void set_state(const py::handle& h, const py::handle& c) {
    const auto ha = state_array(h, backend_->h_floats() * batch_, "h");
    const auto ca = state_array(c, backend_->c_floats() * batch_, "c");
    py::gil_scoped_release release;
    state_->set(ha.data(), ca.data());
  }

  // Copies of the carried state, [rows, B, Hout] and [rows, B, H] flattened per batch.
  py::array_t<float> h() const { return copy_state(true); }
  py::array_t<float> c() const { return copy_state(false); }

 private:
  std::shared_ptr<const Backend> backend_;
  int64_t batch_;
  bool batch_first_;
  std::unique_ptr<StreamState> state_;

  int64_t row_of(const py::object& row) const {
    if (row.is_none()) return -1;
    const int64_t r = row.cast<int64_t>();
    if (r < 0 || r >= batch_) {
      throw std::invalid_argument("row must be in [0, " + std::to_string(batch_) + "), got " +
                                  std::to_string(r));
    }
    return r;
  }

  static py::array_t<float, py::array::c_style> state_array(const py::handle& src, int64_t count,
                                                            const char* name) {
    auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(src);
    if (!a || a.size() != count) {
      throw std::invalid_argument(std::string(name) + ": expected " + std::to_string(count) +
                                  " float32 values (this stream's state), got " +
                                  (a ? std::to_string(a.size()) : std::string("no array")));
    }
    return a;
  }

  py::array_t<float> copy_state(bool want_h) const {
    const int64_t hn = backend_->h_floats() * batch_, cn = backend_->c_floats() * batch_;
    py::array_t<float> out(static_cast<py::ssize_t>(want_h ? hn : cn));
    float* dst = out.mutable_data();
    py::gil_scoped_release release;
    state_->get(want_h ? dst : nullptr, want_h ? nullptr : dst);
    return out;
  }
};

}  // namespace

RawStream* raw_stream(const py::handle& core) {
  return py::isinstance<PyStream>(core) ? &py::cast<PyStream&>(core) : nullptr;
}

void register_stream(py::module_& m) {
  py::class_<PyStream>(m, "Stream")
      .def(py::init<const PyNetwork&, int64_t, bool>(), py::arg("network"), py::arg("batch_size"),
           py::arg("batch_first") = false)
      .def("step", &PyStream::step, py::arg("chunk"),
           "Run the next time steps of the chunk ([B, I] for one step, or [t, B, I] / [B, t, I]) "
           "and return their outputs in the same layout; the state carries over.")
      .def("reset", &PyStream::reset, py::arg("row") = py::none(),
           "Forget the carried state (back to zeros): of every sequence, or of sequence `row`.")
      .def("row_state", &PyStream::row_state, py::arg("row"),
           "Copies of sequence `row`'s state: (h, c), flat float32, layer by layer and "
           "direction by direction.")
      .def("set_row_state", &PyStream::set_row_state, py::arg("row"), py::arg("h"), py::arg("c"),
           "Replace sequence `row`'s state with flat float32 arrays shaped as row_state returns.")
      .def("set_state", &PyStream::set_state, py::arg("h"), py::arg("c"),
           "Replace the carried state with flat float32 arrays shaped as `h` and `c` return.")
      .def_property_readonly("h", &PyStream::h)
      .def_property_readonly("c", &PyStream::c);
}

}  // namespace pylstm
