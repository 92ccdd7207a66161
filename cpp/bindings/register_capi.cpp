// The C API (pylstm/include/pylstm_capi.h, pylstm/capi.pxd): a table of C functions exported as
// the capsule pylstm._core._C_API, so that C, C++ and Cython extensions run models and streams
// without the GIL and without linking against pylstm.
//
// Handles are taken with the GIL from Python objects; which objects qualify is decided in Python
// (pylstm/_capi.py), the mechanism is here. A model handle holds the model's Backend (forward is
// const and thread-safe); a stream handle holds the _core.Stream's RawStream (no GIL) or, for
// streams that live in Python (StreamBatcher), an adapter object called with the GIL.
// Every entry point is noexcept: C++ and Python errors become a code and a thread-local message.
#define PYLSTM_CAPI_IMPLEMENTATION
#include <pybind11/numpy.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "py_network.hpp"
#include "pylstm_capi.h"
#include "register.hpp"

namespace py = pybind11;

struct pylstm_model {
  py::object owner;  // the Python model: alive as long as the handle
  py::object core;   // its _core.Network
  std::shared_ptr<const pylstm::Backend> backend;
  pylstm_sizes sizes{};
};

struct pylstm_stream {
  py::object owner;                  // the Python stream
  py::object core;                   // its _core.Stream, or the adapter of pylstm/_capi.py
  pylstm::RawStream* raw = nullptr;  // core's C++ side; nullptr: call `core` with the GIL
  pylstm_sizes sizes{};
};

namespace pylstm {
namespace {

thread_local char last_error_text[1024] = "";

// An error on its way to the caller: the code and the message.
struct CapiError {
  int code;
  std::string message;
};

int fail(int code, const char* message) noexcept {
  std::snprintf(last_error_text, sizeof last_error_text, "%s", message);
  return code;
}

// Throws a CapiError with `code` and a printf-style message.
[[noreturn]] void fail_with(int code, const char* format, ...) {
  char text[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(text, sizeof text, format, args);
  va_end(args);
  throw CapiError{code, text};
}

// Runs f; returns PYLSTM_OK, or the code of what it threw with the message recorded.
template <typename F>
int guarded(F&& f) noexcept {
  try {
    f();
    return PYLSTM_OK;
  } catch (const CapiError& e) {
    return fail(e.code, e.message.c_str());
  } catch (const std::invalid_argument& e) {
    return fail(PYLSTM_ERR_VALUE, e.what());
  } catch (const std::bad_alloc&) {
    return fail(PYLSTM_ERR_RUNTIME, "out of memory");
  } catch (const std::exception& e) {
    return fail(PYLSTM_ERR_RUNTIME, e.what());
  } catch (...) {
    return fail(PYLSTM_ERR_RUNTIME, "unknown C++ exception");
  }
}

// Runs f, which calls Python (the GIL held): a Python exception becomes a CapiError ("TypeError:
// message"), with the Python error indicator cleared.
template <typename F>
void with_python(F&& f) {
  try {
    f();
  } catch (py::error_already_set& e) {
    const int code = e.matches(PyExc_TypeError)             ? PYLSTM_ERR_TYPE
                     : e.matches(PyExc_NotImplementedError) ? PYLSTM_ERR_UNSUPPORTED
                     : e.matches(PyExc_ValueError)          ? PYLSTM_ERR_VALUE
                                                            : PYLSTM_ERR_RUNTIME;
    std::string type = py::str(e.type().attr("__name__"));
    throw CapiError{code, type + ": " + std::string(py::str(e.value()))};
  }
}

py::object capi_module() { return py::module_::import("pylstm._capi"); }

pylstm_sizes sizes_of(const PyNetwork& net, int64_t batch, bool gil_free) {
  const bool lstm = net.backend().sizes().lstm;
  pylstm_sizes s{};
  s.input_size = net.input_size();
  s.output_size = net.output_size();
  s.h_size = net.h_floats();
  s.c_size = lstm ? net.c_floats() : 0;
  s.batch_size = batch;
  s.gil_free = gil_free ? 1 : 0;
  return s;
}

// Deletes a handle, taking the GIL to drop its Python references (leaked once the interpreter
// is gone, when they can no longer be dropped).
template <typename Handle>
void release_handle(Handle* h) noexcept {
  if (h == nullptr) return;
  if (!Py_IsInitialized()) {
    h->owner.release();
    h->core.release();
    delete h;
    return;
  }
  PyGILState_STATE gil = PyGILState_Ensure();
  delete h;
  PyGILState_Release(gil);
}

// x [T, B, F] rows <-> a C-contiguous array, for streams that run in Python.
void copy_rows(const float* src, int64_t st, int64_t sb, float* dst, int64_t dt, int64_t db,
               int64_t T, int64_t B, int64_t F) {
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t b = 0; b < B; ++b) {
      std::memcpy(dst + t * dt + b * db, src + t * st + b * sb, sizeof(float) * F);
    }
  }
}

void check_state_counts(const pylstm_sizes& s, const void* h, int64_t h_count, const void* c,
                        int64_t c_count, const char* fn) {
  const int64_t B = s.batch_size;
  if (h == nullptr || h_count != B * s.h_size) {
    fail_with(PYLSTM_ERR_VALUE,
              "%s: h must hold %lld floats (batch %lld x h_size %lld), got %lld floats at %p", fn,
              (long long)(B * s.h_size), (long long)B, (long long)s.h_size, (long long)h_count, h);
  }
  if (c == nullptr ? c_count != 0 : c_count != B * s.c_size) {
    fail_with(PYLSTM_ERR_VALUE,
              "%s: c must hold %lld floats (batch %lld x c_size %lld), or be NULL with count "
              "0; got %lld floats at %p",
              fn, (long long)(B * s.c_size), (long long)B, (long long)s.c_size, (long long)c_count,
              c);
  }
}

// ---- the table's functions ----------------------------------------------------------------

const char* last_error() noexcept { return last_error_text; }

int model_open(PyObject* model, pylstm_model** out) noexcept {
  if (out == nullptr) return fail(PYLSTM_ERR_VALUE, "model_open: out is NULL");
  *out = nullptr;
  return guarded([&] {
    if (model == nullptr) fail_with(PYLSTM_ERR_VALUE, "model_open: model is NULL");
    auto h = std::make_unique<pylstm_model>();
    with_python([&] {
      h->owner = py::reinterpret_borrow<py::object>(model);
      h->core = capi_module().attr("model_network")(h->owner);
      const PyNetwork& net = h->core.cast<const PyNetwork&>();
      h->backend = net.shared_backend();
      h->sizes = sizes_of(net, 0, true);
    });
    *out = h.release();
  });
}

int model_sizes(const pylstm_model* m, pylstm_sizes* out) noexcept {
  if (m == nullptr || out == nullptr) return fail(PYLSTM_ERR_VALUE, "model_sizes: NULL argument");
  *out = m->sizes;
  return PYLSTM_OK;
}

int model_forward(const pylstm_model* m, const pylstm_forward_args* a) noexcept {
  return guarded([&] {
    if (m == nullptr || a == nullptr) fail_with(PYLSTM_ERR_VALUE, "model_forward: NULL argument");
    const int64_t T = a->steps, B = a->batch;
    if (T < 1 || B < 1) {
      fail_with(PYLSTM_ERR_VALUE, "model_forward: steps and batch must be >= 1, got %lld and %lld",
                (long long)T, (long long)B);
    }
    if (a->x == nullptr || a->y == nullptr) {
      fail_with(PYLSTM_ERR_VALUE, "model_forward: x or y is NULL");
    }
    ForwardArgs f;
    f.steps = T;
    f.batch = B;
    f.x = Rows<const float>{a->x, a->x_stride_t, a->x_stride_b};
    f.y = Rows<float>{a->y, a->y_stride_t, a->y_stride_b};
    std::vector<uint8_t> mask;
    if (a->lengths != nullptr) {
      mask.assign(static_cast<size_t>(T * B), 0);
      for (int64_t b = 0; b < B; ++b) {
        const int64_t n = a->lengths[b];
        if (n < 1 || n > T) {
          fail_with(PYLSTM_ERR_VALUE,
                    "model_forward: lengths[%lld] = %lld; each length must be between 1 and steps "
                    "(%lld)",
                    (long long)b, (long long)n, (long long)T);
        }
        for (int64_t t = 0; t < n; ++t) mask[static_cast<size_t>(t * B + b)] = 1;
      }
      f.mask = mask.data();
    }
    f.h0 = a->h0;
    f.h_n = a->h_n;
    if (m->sizes.c_size > 0) {
      f.c0 = a->c0;
      f.c_n = a->c_n;
    }
    m->backend->forward(f);
  });
}

int stream_open(PyObject* stream, pylstm_stream** out) noexcept {
  if (out == nullptr) return fail(PYLSTM_ERR_VALUE, "stream_open: out is NULL");
  *out = nullptr;
  return guarded([&] {
    if (stream == nullptr) fail_with(PYLSTM_ERR_VALUE, "stream_open: stream is NULL");
    auto h = std::make_unique<pylstm_stream>();
    with_python([&] {
      h->owner = py::reinterpret_borrow<py::object>(stream);
      // (core, network): a _core.Stream and its _core.Network, or (adapter, None)
      py::tuple found = capi_module().attr("stream_core")(h->owner);
      h->core = found[0];
      h->raw = raw_stream(h->core);
      if (h->raw != nullptr) {
        h->sizes = sizes_of(found[1].cast<const PyNetwork&>(), h->raw->batch(), true);
      } else {
        const py::object& a = h->core;
        h->sizes.input_size = a.attr("input_size").cast<int64_t>();
        h->sizes.output_size = a.attr("output_size").cast<int64_t>();
        h->sizes.h_size = a.attr("h_size").cast<int64_t>();
        h->sizes.c_size = a.attr("c_size").cast<int64_t>();
        h->sizes.batch_size = a.attr("batch_size").cast<int64_t>();
        h->sizes.gil_free = 0;
      }
    });
    *out = h.release();
  });
}

int stream_sizes(const pylstm_stream* s, pylstm_sizes* out) noexcept {
  if (s == nullptr || out == nullptr) return fail(PYLSTM_ERR_VALUE, "stream_sizes: NULL argument");
  *out = s->sizes;
  return PYLSTM_OK;
}

int stream_step(pylstm_stream* s, int64_t steps, int64_t batch, const float* x, int64_t xt,
                int64_t xb, float* y, int64_t yt, int64_t yb) noexcept {
  return guarded([&] {
    if (s == nullptr) fail_with(PYLSTM_ERR_VALUE, "stream_step: stream is NULL");
    const int64_t B = s->sizes.batch_size;
    if (batch != B || steps < 0) {
      fail_with(PYLSTM_ERR_VALUE,
                "stream_step: expected steps >= 0 and batch = %lld (this stream's batch size), got "
                "steps %lld and batch %lld",
                (long long)B, (long long)steps, (long long)batch);
    }
    if (steps == 0) return;
    if (x == nullptr || y == nullptr) fail_with(PYLSTM_ERR_VALUE, "stream_step: x or y is NULL");
    if (s->raw != nullptr) {
      s->raw->step_rows(steps, Rows<const float>{x, xt, xb}, Rows<float>{y, yt, yb});
      return;
    }
    const int64_t I = s->sizes.input_size, O = s->sizes.output_size;
    py::gil_scoped_acquire gil;
    with_python([&] {
      py::array_t<float> xa({steps, B, I});
      copy_rows(x, xt, xb, xa.mutable_data(), B * I, I, steps, B, I);
      py::object r = s->core.attr("step")(xa);
      auto ya = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(r);
      if (!ya || ya.ndim() != 3 || ya.shape(0) != steps || ya.shape(1) != B || ya.shape(2) != O) {
        fail_with(PYLSTM_ERR_RUNTIME,
                  "stream_step: the stream returned no [%lld, %lld, %lld] array", (long long)steps,
                  (long long)B, (long long)O);
      }
      copy_rows(ya.data(), B * O, O, y, yt, yb, steps, B, O);
    });
  });
}

int stream_get_state(pylstm_stream* s, float* h, int64_t h_count, float* c,
                     int64_t c_count) noexcept {
  return guarded([&] {
    if (s == nullptr) fail_with(PYLSTM_ERR_VALUE, "stream_get_state: stream is NULL");
    check_state_counts(s->sizes, h, h_count, c, c_count, "stream_get_state");
    if (s->raw != nullptr) {
      s->raw->state().get(h, c);
      return;
    }
    py::gil_scoped_acquire gil;
    with_python([&] {
      py::tuple hc = s->core.attr("get_state")();
      auto ha = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(hc[0]);
      if (!ha || ha.size() != h_count) fail_with(PYLSTM_ERR_RUNTIME, "stream_get_state: bad h");
      std::memcpy(h, ha.data(), sizeof(float) * h_count);
      if (c != nullptr) {
        auto ca = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(hc[1]);
        if (!ca || ca.size() != c_count) fail_with(PYLSTM_ERR_RUNTIME, "stream_get_state: bad c");
        std::memcpy(c, ca.data(), sizeof(float) * c_count);
      }
    });
  });
}

int stream_set_state(pylstm_stream* s, const float* h, int64_t h_count, const float* c,
                     int64_t c_count) noexcept {
  return guarded([&] {
    if (s == nullptr) fail_with(PYLSTM_ERR_VALUE, "stream_set_state: stream is NULL");
    check_state_counts(s->sizes, h, h_count, c, c_count, "stream_set_state");
    if (s->raw != nullptr) {
      // c_size is 0 without an LSTM layer: c is ignored (the state's unused c is zeroed).
      s->raw->state().set(h, s->sizes.c_size > 0 ? c : nullptr);
      return;
    }
    py::gil_scoped_acquire gil;
    with_python([&] {
      py::array_t<float> ha(h_count);
      std::memcpy(ha.mutable_data(), h, sizeof(float) * h_count);
      py::object ca = py::none();
      if (c != nullptr) {
        py::array_t<float> a(c_count);
        std::memcpy(a.mutable_data(), c, sizeof(float) * c_count);
        ca = a;
      }
      s->core.attr("set_state")(ha, ca);
    });
  });
}

int stream_reset(pylstm_stream* s) noexcept {
  return guarded([&] {
    if (s == nullptr) fail_with(PYLSTM_ERR_VALUE, "stream_reset: stream is NULL");
    if (s->raw != nullptr) {
      s->raw->state().reset();
      return;
    }
    py::gil_scoped_acquire gil;
    with_python([&] { s->core.attr("reset")(); });
  });
}

void model_release(pylstm_model* m) noexcept { release_handle(m); }
void stream_release(pylstm_stream* s) noexcept { release_handle(s); }

const pylstm_capi table = {
    PYLSTM_CAPI_VERSION, sizeof(pylstm_capi), last_error,       model_open,     model_release,
    model_sizes,         model_forward,       stream_open,      stream_release, stream_sizes,
    stream_step,         stream_get_state,    stream_set_state, stream_reset,
};

}  // namespace

void register_capi(py::module_& m) {
  m.attr("_C_API") = py::capsule(static_cast<const void*>(&table), PYLSTM_CAPI_CAPSULE);
  m.def(
      "_engine_step_seconds",
      [](const py::object& stream, const py::array_t<float, py::array::c_style>& x, int64_t n) {
        py::tuple found = capi_module().attr("stream_core")(stream);
        RawStream* raw = raw_stream(found[0]);
        if (raw == nullptr) throw py::type_error("stream must be a CPU pylstm.Stream");
        const PyNetwork& net = found[1].cast<const PyNetwork&>();
        const int64_t I = net.input_size(), O = net.output_size();
        if (x.ndim() != 2 || x.shape(0) != raw->batch() || x.shape(1) != I || n < 1) {
          throw std::invalid_argument("x must be [B, I] of the stream and n >= 1");
        }
        std::vector<float> y(static_cast<size_t>(raw->batch() * O));
        py::gil_scoped_release release;
        const auto start = std::chrono::steady_clock::now();
        for (int64_t i = 0; i < n; ++i) {
          raw->step_rows(1, Rows<const float>{x.data(), 0, I}, Rows<float>{y.data(), 0, O});
        }
        const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
        return took.count() / static_cast<double>(n);
      },
      py::arg("stream"), py::arg("x"), py::arg("n"),
      "Seconds per one-step call of a pylstm.Stream's engine, timed in C++ over n calls on x "
      "[B, I] (the stream's state advances; outputs discarded): the floor the C API's "
      "stream_step is measured against (bench/capi_overhead.py).");
}

}  // namespace pylstm
