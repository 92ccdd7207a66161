// _core.Stream: step-by-step inference with the state kept in C++, so that a one-step call from
// Python costs one binding call (streaming B=1 needs a few microseconds per call).
#include <pybind11/numpy.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "py_network.hpp"
#include "register.hpp"

namespace py = pybind11;

namespace pylstm {
namespace {

// `chunk` as a float32 numpy array: float32 numpy arrays as they are (the fast path of a
// streaming step), float16 and float64 numpy arrays converted here; everything else (bfloat16,
// torch tensors, lists, wrong dtypes) through pylstm.runtime.validation.as_float_array, which converts
// or raises pylstm's TypeError.
py::array float32_array(const py::handle& chunk) {
  if (py::isinstance<py::array_t<float>>(chunk)) return py::reinterpret_borrow<py::array>(chunk);
  if (py::isinstance<py::array>(chunk)) {
    const py::dtype dtype = py::reinterpret_borrow<py::array>(chunk).dtype();
    if (dtype.kind() == 'f' && (dtype.itemsize() == 2 || dtype.itemsize() == 8)) {
      return py::array_t<float, py::array::forcecast>::ensure(chunk);
    }
  }
  return py::module_::import("pylstm.runtime.validation")
      .attr("as_float_array")(chunk, "chunk")
      .cast<py::array>();
}

class PyStream : public RawStream {
 public:
  PyStream(const PyNetwork& net, int64_t batch, bool batch_first)
      : backend_(net.backend()),
        batch_(batch),
        batch_first_(batch_first),
        input_size_(net.input_size()),
        output_size_(net.output_size()),
        h_floats_(net.h_floats() * batch),
        c_floats_(net.c_floats() * batch) {
    if (batch < 1) throw std::invalid_argument("batch_size must be >= 1");
    for (int i = 0; i < 2; ++i) {
      h_[i].assign(static_cast<size_t>(h_floats_), 0.f);
      c_[i].assign(static_cast<size_t>(c_floats_), 0.f);
    }
  }

  // chunk: [B, I] (one step), or [t, B, I] ([B, t, I] batch-first). Returns the outputs in the
  // same layout, with O features.
  py::array step(const py::handle& chunk) {
    py::array x = float32_array(chunk);
    if (x.ndim() != 2 && x.ndim() != 3) {
      throw std::invalid_argument("chunk must be [B, I] or a 3-D chunk of steps, got " +
                                  std::to_string(x.ndim()) + " dimensions");
    }
    const bool one_step = x.ndim() == 2;
    const int t_axis = one_step ? -1 : (batch_first_ ? 1 : 0);
    const int b_axis = one_step ? 0 : (batch_first_ ? 0 : 1);
    const int64_t steps = one_step ? 1 : x.shape(t_axis);
    const int64_t batch = x.shape(b_axis);
    const int64_t features = x.shape(x.ndim() - 1);
    if (batch != batch_ || features != input_size_) {
      throw std::invalid_argument("chunk: expected " + std::to_string(batch_) + " sequences of " +
                                  std::to_string(input_size_) +
                                  " features (this stream's batch_size and the model's "
                                  "input size), got " +
                                  std::to_string(batch) + " sequences of " +
                                  std::to_string(features));
    }
    if (features > 1 && x.strides(x.ndim() - 1) != static_cast<py::ssize_t>(sizeof(float))) {
      x = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(x);
    }
    std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
    shape.back() = output_size_;
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
    ForwardArgs args;
    args.steps = steps;
    args.batch = batch_;
    args.x = x;
    args.y = y;
    args.h0 = h_[cur_].data();
    args.c0 = c_[cur_].data();
    args.h_n = h_[1 - cur_].data();
    args.c_n = c_[1 - cur_].data();
    backend_->forward(args);
    cur_ = 1 - cur_;
  }
  int64_t batch() const override { return batch_; }
  float* h_state() override { return h_[cur_].data(); }
  float* c_state() override { return c_[cur_].data(); }

  void reset() {
    std::fill(h_[cur_].begin(), h_[cur_].end(), 0.f);
    std::fill(c_[cur_].begin(), c_[cur_].end(), 0.f);
  }

  // Replaces the carried state (as `h` and `c` return it: float32, h_floats / c_floats values);
  // used to restore an unpickled stream.
  void set_state(const py::handle& h, const py::handle& c) {
    load_state(h, h_[cur_], "h");
    load_state(c, c_[cur_], "c");
  }

  // Copies of the carried state, [rows, B, Hout] and [rows, B, H] flattened per batch.
  py::array_t<float> h() const { return copy_of(h_[cur_]); }
  py::array_t<float> c() const { return copy_of(c_[cur_]); }

 private:
  std::shared_ptr<const Backend> backend_;
  int64_t batch_;
  bool batch_first_;
  int64_t input_size_, output_size_, h_floats_, c_floats_;
  std::vector<float> h_[2], c_[2];
  int cur_ = 0;

  static void load_state(const py::handle& src, std::vector<float>& dst, const char* name) {
    auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(src);
    if (!a || static_cast<size_t>(a.size()) != dst.size()) {
      throw std::invalid_argument(std::string(name) + ": expected " + std::to_string(dst.size()) +
                                  " float32 values (this stream's state), got " +
                                  (a ? std::to_string(a.size()) : std::string("no array")));
    }
    std::copy(a.data(), a.data() + a.size(), dst.begin());
  }

  static py::array_t<float> copy_of(const std::vector<float>& v) {
    py::array_t<float> out(static_cast<py::ssize_t>(v.size()));
    std::copy(v.begin(), v.end(), out.mutable_data());
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
      .def("reset", &PyStream::reset, "Forget the carried state (back to zeros).")
      .def("set_state", &PyStream::set_state, py::arg("h"), py::arg("c"),
           "Replace the carried state with flat float32 arrays shaped as `h` and `c` return.")
      .def_property_readonly("h", &PyStream::h)
      .def_property_readonly("c", &PyStream::c);
}

}  // namespace pylstm
