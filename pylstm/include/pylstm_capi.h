/* pylstm's C API: run pylstm models and streams from C, C++ or Cython, without the GIL.
 *
 * The functions live in pylstm's engine module and are reached through a table of function
 * pointers that the module exports as the capsule "pylstm._core._C_API": an extension includes
 * this header, calls import_pylstm_capi() once (with the GIL, e.g. in its module init) and needs
 * no link step against pylstm. Cython: `cimport pylstm.capi` (pylstm/capi.pxd declares the same).
 * The compiler finds this header in pylstm.get_include().
 *
 *   1. With the GIL, take a handle on a Python object once: pylstm_model_open(model, &m) on a
 *      model built by pylstm.from_torch / from_arrays / load (a torch-style model, on the CPU),
 *      pylstm_stream_open(stream, &s) on model.stream(B) or a StreamBatcher stream.
 *   2. Anywhere, with or without the GIL, from any thread: pylstm_model_forward,
 *      pylstm_stream_step, pylstm_stream_get_state / set_state / reset, the sizes.
 *   3. pylstm_model_release / pylstm_stream_release (they take the GIL themselves).
 *
 * Conventions
 *   * Every function returns PYLSTM_OK (0) or an error code; the message of the last failing call
 *     on the calling thread is pylstm_last_error() (successful calls leave it as it was). No C++
 *     exception crosses this boundary, nothing aborts, and no Python exception is left set.
 *   * Sequences are float32 [T, B, F] arrays whose feature axis is contiguous: element (t, b, f)
 *     is at data[t * stride_t + b * stride_b + f], strides counted in floats (not bytes).
 *     Time-major C order is stride_t = B * F, stride_b = F; batch-first [B, T, F] is
 *     stride_t = F, stride_b = T * F. For one step stride_t is not used.
 *   * States are C-contiguous float32 blocks, one per layer in order, each [D, B, Hout] for h and
 *     [D, B, H] for c (D = 2 for bidirectional layers): for a PyTorch-style model that is exactly
 *     h_n [num_layers * D, B, Hout] and c_n [num_layers * D, B, H]. h_size and c_size in
 *     pylstm_sizes are the floats per sequence, so a state of B sequences is B * h_size floats.
 *   * Threads: a model handle may be used by many threads at once; a stream by one thread at a
 *     time (as from Python). A handle keeps its Python object alive until it is released.
 */
#ifndef PYLSTM_CAPI_H
#define PYLSTM_CAPI_H

#include <Python.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of the table below. A library whose table has the same version and at least the
 * size this header knows serves this header (later versions only append members). */
#define PYLSTM_CAPI_VERSION 1
#define PYLSTM_CAPI_CAPSULE "pylstm._core._C_API"

/* Return codes. */
#define PYLSTM_OK 0
#define PYLSTM_ERR_VALUE 1       /* a wrong size, count, stride, pointer or length */
#define PYLSTM_ERR_TYPE 2        /* an object of the wrong type given to an open function */
#define PYLSTM_ERR_UNSUPPORTED 3 /* a model or stream, or an operation, the C API does not run */
#define PYLSTM_ERR_RUNTIME 4     /* out of memory, or a Python error inside a GIL-taking stream */

typedef struct pylstm_model pylstm_model;   /* opaque */
typedef struct pylstm_stream pylstm_stream; /* opaque */

typedef struct pylstm_sizes {
  int64_t input_size;  /* I: features per input row */
  int64_t output_size; /* O: features per output row (D * Hout of the last layer) */
  int64_t h_size;      /* floats of h state per sequence: sum over layers of D * Hout */
  int64_t c_size;      /* floats of c state per sequence (0 when no layer is an LSTM) */
  int64_t batch_size;  /* streams: B, the sequences each step runs; models: 0 (any B) */
  int64_t gil_free;    /* 1: calls run without ever taking the GIL; 0: they take it inside */
} pylstm_sizes;

/* The field comments are aligned as a table. */
/* clang-format off */
typedef struct pylstm_forward_args {
  int64_t steps;       /* T >= 1 */
  int64_t batch;       /* B >= 1 */
  const float* x;      /* [T, B, I], read */
  int64_t x_stride_t, x_stride_b;
  float* y;            /* [T, B, O], written */
  int64_t y_stride_t, y_stride_b;
  /* [B] valid steps of each sequence, each 1..T, or NULL (all T). As PyTorch's packed
   * sequences: outputs past a length are 0, h_n / c_n are the states at the last valid step and
   * a reverse direction starts at the last valid step. */
  const int64_t* lengths;
  const float* h0;     /* B * h_size floats, or NULL: zeros */
  const float* c0;     /* B * c_size floats, or NULL: zeros (ignored when c_size is 0) */
  float* h_n;          /* B * h_size floats, written, or NULL: not wanted */
  float* c_n;          /* B * c_size floats, written, or NULL (ignored when c_size is 0) */
} pylstm_forward_args;
/* clang-format on */

typedef struct pylstm_capi {
  uint32_t version; /* PYLSTM_CAPI_VERSION of the library */
  uint32_t size;    /* sizeof(pylstm_capi) in the library */

  /* The message of the last failing call on this thread ("" if none); valid until the next
   * failing call on this thread. */
  const char* (*last_error)(void);

  /* With the GIL held. `model`: a pylstm model whose whole computation is the C++ engine on the
   * CPU (from_torch, from_arrays, load of a PyTorch file); others give PYLSTM_ERR_UNSUPPORTED. */
  int (*model_open)(PyObject* model, pylstm_model** out);
  /* Takes the GIL itself; NULL is allowed. Any calls on the handle must have returned. */
  void (*model_release)(pylstm_model* model);
  int (*model_sizes)(const pylstm_model* model, pylstm_sizes* out);
  int (*model_forward)(const pylstm_model* model, const pylstm_forward_args* args);

  /* With the GIL held. `stream`: model.stream(B) of such a model (runs without the GIL), or a
   * StreamBatcher(model).open() stream of one (B = 1, gil_free 0: each call takes the GIL inside
   * and waits for its batch; its set_state gives PYLSTM_ERR_UNSUPPORTED: pass the state to
   * batcher.open(initial_state=...) instead). Keras and ONNX streams: PYLSTM_ERR_UNSUPPORTED. */
  int (*stream_open)(PyObject* stream, pylstm_stream** out);
  void (*stream_release)(pylstm_stream* stream);
  int (*stream_sizes)(const pylstm_stream* stream, pylstm_sizes* out);
  /* Runs the next `steps` (>= 0) steps of all B sequences: x [steps, B, I] in, y [steps, B, O]
   * out; `batch` must equal the stream's B. The state carries over, as stream.step. */
  int (*stream_step)(pylstm_stream* stream, int64_t steps, int64_t batch, const float* x,
                     int64_t x_stride_t, int64_t x_stride_b, float* y, int64_t y_stride_t,
                     int64_t y_stride_b);
  /* Copy the carried state out / in: h_count must be B * h_size, c_count B * c_size (c may be
   * NULL with c_count 0; set_state then zeroes c). */
  int (*stream_get_state)(pylstm_stream* stream, float* h, int64_t h_count, float* c,
                          int64_t c_count);
  int (*stream_set_state)(pylstm_stream* stream, const float* h, int64_t h_count, const float* c,
                          int64_t c_count);
  int (*stream_reset)(pylstm_stream* stream); /* the state back to zeros */
} pylstm_capi;

#ifndef PYLSTM_CAPI_IMPLEMENTATION

/* The table, per translation unit: call import_pylstm_capi() in each C file that uses it. */
static const pylstm_capi* pylstm_capi_table = NULL;

/* Imports pylstm and fetches its table. With the GIL; returns 0, or -1 with ImportError set. */
static inline int import_pylstm_capi(void) {
  const pylstm_capi* table = (const pylstm_capi*)PyCapsule_Import(PYLSTM_CAPI_CAPSULE, 0);
  if (table == NULL) return -1;
  if (table->version != PYLSTM_CAPI_VERSION || table->size < sizeof(pylstm_capi)) {
    PyErr_Format(PyExc_ImportError,
                 "pylstm C API version %u (table of %u bytes) cannot serve an extension built "
                 "for version %d (%u bytes): rebuild the extension against this pylstm",
                 (unsigned)table->version, (unsigned)table->size, PYLSTM_CAPI_VERSION,
                 (unsigned)sizeof(pylstm_capi));
    return -1;
  }
  pylstm_capi_table = table;
  return 0;
}

/* One wrapper per table entry (import_pylstm_capi() must have succeeded). */
static inline const char* pylstm_last_error(void) { return pylstm_capi_table->last_error(); }
static inline int pylstm_model_open(PyObject* model, pylstm_model** out) {
  return pylstm_capi_table->model_open(model, out);
}
static inline void pylstm_model_release(pylstm_model* model) {
  pylstm_capi_table->model_release(model);
}
static inline int pylstm_model_sizes(const pylstm_model* model, pylstm_sizes* out) {
  return pylstm_capi_table->model_sizes(model, out);
}
static inline int pylstm_model_forward(const pylstm_model* model, const pylstm_forward_args* args) {
  return pylstm_capi_table->model_forward(model, args);
}
static inline int pylstm_stream_open(PyObject* stream, pylstm_stream** out) {
  return pylstm_capi_table->stream_open(stream, out);
}
static inline void pylstm_stream_release(pylstm_stream* stream) {
  pylstm_capi_table->stream_release(stream);
}
static inline int pylstm_stream_sizes(const pylstm_stream* stream, pylstm_sizes* out) {
  return pylstm_capi_table->stream_sizes(stream, out);
}
static inline int pylstm_stream_step(pylstm_stream* stream, int64_t steps, int64_t batch,
                                     const float* x, int64_t x_stride_t, int64_t x_stride_b,
                                     float* y, int64_t y_stride_t, int64_t y_stride_b) {
  return pylstm_capi_table->stream_step(stream, steps, batch, x, x_stride_t, x_stride_b, y,
                                        y_stride_t, y_stride_b);
}
static inline int pylstm_stream_get_state(pylstm_stream* stream, float* h, int64_t h_count,
                                          float* c, int64_t c_count) {
  return pylstm_capi_table->stream_get_state(stream, h, h_count, c, c_count);
}
static inline int pylstm_stream_set_state(pylstm_stream* stream, const float* h, int64_t h_count,
                                          const float* c, int64_t c_count) {
  return pylstm_capi_table->stream_set_state(stream, h, h_count, c, c_count);
}
static inline int pylstm_stream_reset(pylstm_stream* stream) {
  return pylstm_capi_table->stream_reset(stream);
}

#endif /* PYLSTM_CAPI_IMPLEMENTATION */

#ifdef __cplusplus
}
#endif

#endif /* PYLSTM_CAPI_H */
