// _core.CellBatcher: the engine side of pylstm.StreamBatcher for models that are a network alone
// (cell_batcher.hpp). A blocking step waits without the GIL; the worker thread takes the GIL only
// to hand asynchronous results to Python (once per round).
#include <pybind11/functional.h>
#include <pybind11/numpy.h>

#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cell_batcher.hpp"
#include "host_arrays.hpp"
#include "py_network.hpp"
#include "register.hpp"

namespace py = pybind11;

namespace pylstm {
namespace {

py::object batcher_closed_type() {
  return py::module_::import("pylstm.errors").attr("BatcherClosed");
}

// The Python exception (an instance) for an error a chunk failed with.
py::object python_error(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const BatcherClosedError& e) {
    return batcher_closed_type()(e.what());
  } catch (const std::bad_alloc&) {
    return py::reinterpret_borrow<py::object>(PyExc_MemoryError)();
  } catch (const std::invalid_argument& e) {
    return py::reinterpret_borrow<py::object>(PyExc_ValueError)(e.what());
  } catch (const std::exception& e) {
    return py::reinterpret_borrow<py::object>(PyExc_RuntimeError)(e.what());
  } catch (...) {
    return py::reinterpret_borrow<py::object>(PyExc_RuntimeError)("unknown engine error");
  }
}

class PyCellBatcher {
 public:
  // on_done(list of (token, output or None, error or None)): called with the GIL, from the worker
  // thread or from close(), for the asynchronous chunks of a round.
  PyCellBatcher(const PyNetwork& net, int64_t max_batch, double max_delay_s, py::object on_done)
      : on_done_(std::move(on_done)) {
    core_ = std::make_unique<CellBatcher>(
        net.shared_backend(), max_batch, max_delay_s,
        [this](std::vector<CellBatcher::Completion>& done) { deliver(done); });
  }
  ~PyCellBatcher() {
    py::gil_scoped_release release;  // the worker may be waiting for the GIL to deliver
    core_->close();
  }

  // A chunk checked and its output allocated: x [T, I] or [I] (one step), no batch axis, as a
  // C-contiguous float32 copy or view; y [T, O] or [O].
  struct Chunk {
    py::array x;
    py::array_t<float> y;
    int64_t steps;
  };
  Chunk prepared(const py::handle& chunk) const {
    using Contiguous = py::array_t<float, py::array::c_style | py::array::forcecast>;
    py::array x = Contiguous::ensure(float32_array(chunk));
    const int64_t features = core_->backend().input_size();
    if ((x.ndim() != 1 && x.ndim() != 2) || x.shape(x.ndim() - 1) != features) {
      const std::string f = std::to_string(features);
      throw std::invalid_argument("chunk: expected [T, " + f + "] (steps, features) or [" + f +
                                  "] (one step), no batch axis; got shape " +
                                  py::str(x.attr("shape")).cast<std::string>());
    }
    const py::ssize_t O = core_->backend().output_size();
    if (x.ndim() == 1) return {x, py::array_t<float>(O), 1};
    const py::ssize_t steps = x.shape(0);
    return {x, py::array_t<float>({steps, O}), static_cast<int64_t>(steps)};
  }

  py::array step(int64_t slot, const py::handle& chunk) {
    Chunk c = prepared(chunk);
    if (c.steps > 0) {
      const float* xp = static_cast<const float*>(c.x.data());
      float* yp = c.y.mutable_data();
      py::gil_scoped_release release;
      core_->step(slot, c.steps, xp, yp);
    }
    return std::move(c.y);
  }

  // Enqueues the chunk and returns None; on_done reports `token` with the output once it ran
  // (x and y are kept here until then). A chunk of zero steps is not enqueued: returns its
  // (empty) output at once.
  py::object submit(int64_t slot, const py::handle& chunk, uint64_t token) {
    Chunk c = prepared(chunk);
    if (c.steps == 0) return std::move(c.y);
    core_->submit(slot, c.steps, static_cast<const float*>(c.x.data()), c.y.mutable_data(), token);
    in_flight_.emplace(token, std::make_pair(std::move(c.x), std::move(c.y)));  // (the GIL is
    return py::none();  // held: the worker cannot deliver before this)
  }

  int64_t open_slot(const py::object& h, const py::object& c) {
    const float* hp = contiguous_or_null<const float>(h, core_->backend().h_floats(), "h");
    const float* cp = contiguous_or_null<const float>(c, core_->backend().c_floats(), "c");
    py::gil_scoped_release release;
    return core_->open_slot(hp, cp);
  }

  py::tuple read_slot(int64_t slot) {
    py::array_t<float> h(static_cast<py::ssize_t>(core_->backend().h_floats()));
    py::array_t<float> c(static_cast<py::ssize_t>(core_->backend().c_floats()));
    float* hp = h.mutable_data();
    float* cp = c.mutable_data();
    {
      py::gil_scoped_release release;
      core_->read_slot(slot, hp, cp);
    }
    return py::make_tuple(h, c);
  }

  void after_fork_in_child() {
    core_->after_fork_in_child();
    in_flight_.clear();  // their callers are in the parent
  }

  CellBatcher& core() { return *core_; }

 private:
  py::object on_done_;
  // The arrays of asynchronous chunks not yet reported: (x, y) by token; used with the GIL.
  std::unordered_map<uint64_t, std::pair<py::object, py::object>> in_flight_;
  std::unique_ptr<CellBatcher> core_;

  void deliver(std::vector<CellBatcher::Completion>& done) {
    py::gil_scoped_acquire gil;
    py::list items;
    for (const auto& d : done) {
      py::object y = py::none();
      auto it = in_flight_.find(d.token);
      if (it != in_flight_.end()) {
        if (!d.error) y = std::move(it->second.second);
        in_flight_.erase(it);
      }
      items.append(py::make_tuple(d.token, y, d.error ? python_error(d.error) : py::none()));
    }
    try {
      on_done_(items);
    } catch (py::error_already_set& e) {
      e.discard_as_unraisable("pylstm.StreamBatcher handing results to their callers");
    }
  }
};

}  // namespace

void register_batcher(py::module_& m) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const BatcherClosedError& e) {
      PyErr_SetString(batcher_closed_type().ptr(), e.what());
    }
  });
  using Self = PyCellBatcher;
  const auto no_gil = py::call_guard<py::gil_scoped_release>();
  py::class_<Self>(m, "CellBatcher")
      .def(py::init<const PyNetwork&, int64_t, double, py::object>(), py::arg("network"),
           py::arg("max_batch"), py::arg("max_delay_s"), py::arg("on_done"))
      .def("step", &Self::step, py::arg("slot"), py::arg("chunk"),
           "Run the chunk ([T, I] or [I]) of the stream in `slot`; blocks until it ran.")
      .def("submit", &Self::submit, py::arg("slot"), py::arg("chunk"), py::arg("token"))
      .def("open_slot", &Self::open_slot, py::arg("h") = py::none(), py::arg("c") = py::none())
      .def("release_slot", [](Self& s, int64_t slot) { s.core().release_slot(slot); })
      .def(
          "reset_slot", [](Self& s, int64_t slot) { s.core().reset_slot(slot); }, no_gil)
      .def("read_slot", &Self::read_slot, py::arg("slot"))
      .def(
          "close", [](Self& s) { s.core().close(); }, no_gil)
      .def("after_fork_in_child", &Self::after_fork_in_child)
      .def("live_streams", [](Self& s) { return s.core().live_streams(); })
      .def("round_size", [](Self& s) { return s.core().round_size(); })
      .def(
          "slot_capacity", [](Self& s) { return s.core().slot_capacity(); }, no_gil)
      .def(
          "hold_rounds", [](Self& s) { s.core().hold_rounds(); }, no_gil)
      .def("release_rounds", [](Self& s) { s.core().release_rounds(); })
      .def("pretend_engine_busy", [](Self& s, bool busy) { s.core().pretend_engine_busy(busy); })
      .def("fail_chunks_of", [](Self& s, int64_t steps) { s.core().fail_chunks_of(steps); })
      .def_property_readonly("closed", [](Self& s) { return s.core().closed(); })
      .def_property_readonly("rounds", [](Self& s) { return s.core().rounds(); })
      .def_property_readonly("steps", [](Self& s) { return s.core().chunks_run(); });
}

}  // namespace pylstm
