# cython: language_level=3, boundscheck=False, wraparound=False
"""A Cython extension on pylstm's C API (tests/test_capi.py, bench/capi_overhead.py).

Every call into pylstm below runs inside ``with nogil``. Arrays are [T, B, F] float32 numpy
arrays whose last axis is contiguous (any other strides); strides are passed in floats.
"""
from libc.stdint cimport int64_t
from pylstm.capi cimport *

import_pylstm_capi()


class CapiError(Exception):
    """A failed C API call: ``code`` (PYLSTM_ERR_*) and ``message`` (pylstm_last_error())."""

    def __init__(self, code, message):
        super().__init__(f"code {code}: {message}")
        self.code = code
        self.message = message


CODES = {"OK": PYLSTM_OK, "VALUE": PYLSTM_ERR_VALUE, "TYPE": PYLSTM_ERR_TYPE,
         "UNSUPPORTED": PYLSTM_ERR_UNSUPPORTED, "RUNTIME": PYLSTM_ERR_RUNTIME}


cdef int check(int rc) except -1:
    if rc != PYLSTM_OK:
        raise CapiError(rc, pylstm_last_error().decode())
    return 0


cdef inline int64_t fstride(const float[:, :, :] a, int axis) noexcept nogil:
    return a.strides[axis] // <int64_t>sizeof(float)


cdef const float* ptr_or_null(const float[::1] a):
    return NULL if a is None else &a[0]


cdef float* mut_or_null(float[::1] a):
    return NULL if a is None else &a[0]


cdef class Model:
    """A handle on a pylstm model (taken with the GIL, released on deletion)."""
    cdef pylstm_model* handle
    cdef readonly dict sizes

    def __cinit__(self, model):
        self.handle = NULL
        cdef pylstm_sizes s
        check(pylstm_model_open(model, &self.handle))
        check(pylstm_model_sizes(self.handle, &s))
        self.sizes = s

    def __dealloc__(self):
        pylstm_model_release(self.handle)

    def forward(self, const float[:, :, :] x, float[:, :, :] y, const int64_t[::1] lengths=None,
                const float[::1] h0=None, const float[::1] c0=None, float[::1] h_n=None,
                float[::1] c_n=None, int repeat=1):
        """x [T, B, I] -> y [T, B, O] (both any strides but a contiguous last axis), without the
        GIL, `repeat` times; raises CapiError."""
        cdef pylstm_forward_args a
        a.steps = x.shape[0]
        a.batch = x.shape[1]
        a.x = &x[0, 0, 0]
        a.x_stride_t = fstride(x, 0)
        a.x_stride_b = fstride(x, 1)
        a.y = &y[0, 0, 0]
        a.y_stride_t = fstride(y, 0)
        a.y_stride_b = fstride(y, 1)
        a.lengths = NULL if lengths is None else &lengths[0]
        a.h0 = ptr_or_null(h0)
        a.c0 = ptr_or_null(c0)
        a.h_n = mut_or_null(h_n)
        a.c_n = mut_or_null(c_n)
        cdef int rc = PYLSTM_OK
        cdef int i
        with nogil:
            for i in range(repeat):
                rc = pylstm_model_forward(self.handle, &a)
                if rc != PYLSTM_OK:
                    break
        check(rc)

    def forward_raw(self, int64_t steps, int64_t batch, const float[::1] x, float[::1] y,
                    const int64_t[::1] lengths=None):
        """The call with sizes as given (for the error paths): returns (code, message)."""
        cdef pylstm_forward_args a
        a.steps = steps
        a.batch = batch
        a.x = ptr_or_null(x)
        a.x_stride_t = batch * self.sizes["input_size"]
        a.x_stride_b = self.sizes["input_size"]
        a.y = mut_or_null(y)
        a.y_stride_t = batch * self.sizes["output_size"]
        a.y_stride_b = self.sizes["output_size"]
        a.lengths = NULL if lengths is None else &lengths[0]
        a.h0 = a.c0 = NULL
        a.h_n = a.c_n = NULL
        cdef int rc
        with nogil:
            rc = pylstm_model_forward(self.handle, &a)
        return rc, (pylstm_last_error().decode() if rc else "")


cdef class Stream:
    """A handle on a pylstm stream (model.stream(B) or a StreamBatcher stream)."""
    cdef pylstm_stream* handle
    cdef readonly dict sizes

    def __cinit__(self, stream):
        self.handle = NULL
        cdef pylstm_sizes s
        check(pylstm_stream_open(stream, &self.handle))
        check(pylstm_stream_sizes(self.handle, &s))
        self.sizes = s

    def __dealloc__(self):
        pylstm_stream_release(self.handle)

    def step(self, const float[:, :, :] x, float[:, :, :] y):
        """All T steps of x [T, B, I] in one call; y [T, B, O]."""
        cdef int rc
        cdef int64_t xt = fstride(x, 0), xb = fstride(x, 1), yt = fstride(y, 0), yb = fstride(y, 1)
        with nogil:
            rc = pylstm_stream_step(self.handle, x.shape[0], x.shape[1], &x[0, 0, 0], xt, xb,
                                    &y[0, 0, 0], yt, yb)
        check(rc)

    def step_each(self, const float[:, :, :] x, float[:, :, :] y):
        """T one-step calls of x [T, B, I], all in one stretch without the GIL; y [T, B, O]."""
        cdef int rc = PYLSTM_OK
        cdef Py_ssize_t t
        cdef int64_t xb = fstride(x, 1), yb = fstride(y, 1), B = x.shape[1]
        with nogil:
            for t in range(x.shape[0]):
                rc = pylstm_stream_step(self.handle, 1, B, &x[t, 0, 0], 0, xb, &y[t, 0, 0], 0,
                                        yb)
                if rc != PYLSTM_OK:
                    break
        check(rc)

    def step_same(self, const float[:, :, :] x, float[:, :, :] y, Py_ssize_t n):
        """n one-step calls on the same x [1, B, I] into y [1, B, O], without the GIL (the
        overhead benchmark, bench/capi_overhead.py)."""
        cdef int rc = PYLSTM_OK
        cdef Py_ssize_t i
        cdef int64_t xb = fstride(x, 1), yb = fstride(y, 1), B = x.shape[1]
        with nogil:
            for i in range(n):
                rc = pylstm_stream_step(self.handle, 1, B, &x[0, 0, 0], 0, xb, &y[0, 0, 0], 0, yb)
                if rc != PYLSTM_OK:
                    break
        check(rc)

    def step_raw(self, int64_t steps, int64_t batch, const float[::1] x, float[::1] y):
        """The call with sizes as given (contiguous time-major): returns (code, message)."""
        cdef int rc
        cdef int64_t I = self.sizes["input_size"], O = self.sizes["output_size"]
        cdef const float* xp = ptr_or_null(x)
        cdef float* yp = mut_or_null(y)
        with nogil:
            rc = pylstm_stream_step(self.handle, steps, batch, xp, batch * I, I, yp, batch * O, O)
        return rc, (pylstm_last_error().decode() if rc else "")

    def get_state(self, float[::1] h, float[::1] c=None):
        cdef int rc
        cdef float* cp = mut_or_null(c)
        cdef int64_t nc = 0 if c is None else c.shape[0]
        with nogil:
            rc = pylstm_stream_get_state(self.handle, &h[0], h.shape[0], cp, nc)
        return rc, (pylstm_last_error().decode() if rc else "")

    def set_state(self, const float[::1] h, const float[::1] c=None):
        cdef int rc
        cdef const float* cp = ptr_or_null(c)
        cdef int64_t nc = 0 if c is None else c.shape[0]
        with nogil:
            rc = pylstm_stream_set_state(self.handle, &h[0], h.shape[0], cp, nc)
        return rc, (pylstm_last_error().decode() if rc else "")

    def reset(self):
        cdef int rc
        with nogil:
            rc = pylstm_stream_reset(self.handle)
        check(rc)


def open_model_code(model):
    """(code, message) of pylstm_model_open on `model` (handle released at once)."""
    cdef pylstm_model* h = NULL
    cdef int rc = pylstm_model_open(model, &h)
    msg = pylstm_last_error().decode() if rc else ""
    pylstm_model_release(h)
    return rc, msg


def open_stream_code(stream):
    cdef pylstm_stream* h = NULL
    cdef int rc = pylstm_stream_open(stream, &h)
    msg = pylstm_last_error().decode() if rc else ""
    pylstm_stream_release(h)
    return rc, msg


def last_error():
    """pylstm_last_error() of the calling thread."""
    return pylstm_last_error().decode()
