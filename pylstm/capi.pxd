# Cython declarations of pylstm's C API: `cimport pylstm.capi` (or `from pylstm.capi cimport *`).
#
# The same functions as pylstm/include/pylstm_capi.h, whose comments are the reference (shapes,
# strides in floats, state layout, error codes, threads). The extension is compiled with
# include_dirs=[pylstm.get_include()] and calls import_pylstm_capi() once at module level; it is
# not linked against pylstm.
#
#   from pylstm.capi cimport *
#   import_pylstm_capi()
#
#   cdef pylstm_model* m
#   if pylstm_model_open(model, &m) != PYLSTM_OK:        # with the GIL, once
#       raise ValueError(pylstm_last_error().decode())
#   with nogil:
#       rc = pylstm_model_forward(m, &args)               # any thread, no GIL
#   pylstm_model_release(m)

from libc.stdint cimport int64_t

cdef extern from "pylstm_capi.h":
    enum:
        PYLSTM_CAPI_VERSION
        PYLSTM_OK
        PYLSTM_ERR_VALUE
        PYLSTM_ERR_TYPE
        PYLSTM_ERR_UNSUPPORTED
        PYLSTM_ERR_RUNTIME

    ctypedef struct pylstm_model:
        pass

    ctypedef struct pylstm_stream:
        pass

    ctypedef struct pylstm_sizes:
        int64_t input_size
        int64_t output_size
        int64_t h_size
        int64_t c_size
        int64_t batch_size
        int64_t gil_free

    ctypedef struct pylstm_forward_args:
        int64_t steps
        int64_t batch
        const float* x
        int64_t x_stride_t
        int64_t x_stride_b
        float* y
        int64_t y_stride_t
        int64_t y_stride_b
        const int64_t* lengths
        const float* h0
        const float* c0
        float* h_n
        float* c_n

    # Fetches the table from pylstm._core (imports pylstm); raises ImportError on a version
    # mismatch. With the GIL.
    int import_pylstm_capi() except -1

    # With the GIL held (they read Python objects); errors as codes, no Python exception.
    int pylstm_model_open(object model, pylstm_model** out)
    int pylstm_stream_open(object stream, pylstm_stream** out)

cdef extern from "pylstm_capi.h" nogil:
    const char* pylstm_last_error()
    void pylstm_model_release(pylstm_model* model)  # takes the GIL itself
    int pylstm_model_sizes(const pylstm_model* model, pylstm_sizes* out)
    int pylstm_model_forward(const pylstm_model* model, const pylstm_forward_args* args)
    void pylstm_stream_release(pylstm_stream* stream)  # takes the GIL itself
    int pylstm_stream_sizes(const pylstm_stream* stream, pylstm_sizes* out)
    int pylstm_stream_step(pylstm_stream* stream, int64_t steps, int64_t batch, const float* x,
                           int64_t x_stride_t, int64_t x_stride_b, float* y, int64_t y_stride_t,
                           int64_t y_stride_b)
    int pylstm_stream_get_state(pylstm_stream* stream, float* h, int64_t h_count, float* c,
                                int64_t c_count)
    int pylstm_stream_set_state(pylstm_stream* stream, const float* h, int64_t h_count,
                                const float* c, int64_t c_count)
    int pylstm_stream_reset(pylstm_stream* stream)
