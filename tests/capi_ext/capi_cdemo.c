/* A plain C extension on pylstm's C API (tests/test_capi.py): several pthreads run one model
 * handle, or one stream handle each, while the GIL is released. Arrays come in through the
 * buffer protocol as C-contiguous float32 [T, B, F] (sizes passed alongside). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "pylstm_capi.h"

typedef struct {
  pylstm_model* model;   /* or */
  pylstm_stream* stream; /* one of the two */
  pylstm_forward_args args;
  int rc;
  char error[512];
} job;

static void* run_job(void* p) {
  job* j = (job*)p;
  if (j->model) {
    j->rc = pylstm_model_forward(j->model, &j->args);
  } else { /* one step at a time, time-major contiguous */
    const pylstm_forward_args* a = &j->args;
    j->rc = PYLSTM_OK;
    for (int64_t t = 0; t < a->steps && j->rc == PYLSTM_OK; ++t) {
      j->rc = pylstm_stream_step(j->stream, 1, a->batch, a->x + t * a->x_stride_t, 0,
                                 a->x_stride_b, a->y + t * a->y_stride_t, 0, a->y_stride_b);
    }
  }
  /* the message is thread-local: read it in the thread that failed */
  if (j->rc != PYLSTM_OK) snprintf(j->error, sizeof j->error, "%s", pylstm_last_error());
  return NULL;
}

/* run(objects, xs, ys, T, B, I, O, streams): thread k runs objects[k] (a model, or a stream
 * when `streams` is true) on xs[k] into ys[k]. Returns a list of (code, message). */
static PyObject* run(PyObject* self, PyObject* args) {
  (void)self;
  PyObject *objects, *xs, *ys;
  Py_ssize_t T, B, I, O;
  int streams;
  if (!PyArg_ParseTuple(args, "OOOnnnnp", &objects, &xs, &ys, &T, &B, &I, &O, &streams)) {
    return NULL;
  }
  Py_ssize_t n = PyList_Size(objects);
  if (n < 1 || PyList_Size(xs) != n || PyList_Size(ys) != n) {
    PyErr_SetString(PyExc_ValueError, "objects, xs and ys must be lists of one length");
    return NULL;
  }
  job* jobs = (job*)calloc((size_t)n, sizeof(job));
  Py_buffer* bufs = (Py_buffer*)calloc((size_t)(2 * n), sizeof(Py_buffer));
  pthread_t* threads = (pthread_t*)calloc((size_t)n, sizeof(pthread_t));
  PyObject* result = NULL;
  Py_ssize_t got = 0, opened = 0;
  for (; got < 2 * n; ++got) {
    PyObject* o = PyList_GetItem(got < n ? xs : ys, got % n);
    int flags = got < n ? PyBUF_C_CONTIGUOUS : (PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE);
    if (PyObject_GetBuffer(o, &bufs[got], flags) < 0) goto done;
    Py_ssize_t want = (Py_ssize_t)sizeof(float) * T * B * (got < n ? I : O);
    if (bufs[got].len != want) {
      PyErr_Format(PyExc_ValueError, "buffer %zd: %zd bytes, expected %zd", got, bufs[got].len,
                   want);
      ++got;
      goto done;
    }
  }
  for (; opened < n; ++opened) {
    job* j = &jobs[opened];
    PyObject* o = PyList_GetItem(objects, opened);
    int rc = streams ? pylstm_stream_open(o, &j->stream) : pylstm_model_open(o, &j->model);
    if (rc != PYLSTM_OK) {
      PyErr_Format(PyExc_RuntimeError, "open failed (%d): %s", rc, pylstm_last_error());
      goto done;
    }
    j->args.steps = T;
    j->args.batch = B;
    j->args.x = (const float*)bufs[opened].buf;
    j->args.x_stride_t = B * I;
    j->args.x_stride_b = I;
    j->args.y = (float*)bufs[n + opened].buf;
    j->args.y_stride_t = B * O;
    j->args.y_stride_b = O;
  }
  int started = 0;
  Py_BEGIN_ALLOW_THREADS
  for (; started < n; ++started) {
    if (pthread_create(&threads[started], NULL, run_job, &jobs[started]) != 0) break;
  }
  for (int k = 0; k < started; ++k) pthread_join(threads[k], NULL);
  Py_END_ALLOW_THREADS
  if (started < n) {
    PyErr_SetString(PyExc_RuntimeError, "pthread_create failed");
    goto done;
  }
  result = PyList_New(n);
  for (Py_ssize_t k = 0; result && k < n; ++k) {
    PyList_SET_ITEM(result, k, Py_BuildValue("(is)", jobs[k].rc, jobs[k].error));
  }
done:
  for (Py_ssize_t k = 0; k < opened; ++k) {
    pylstm_model_release(jobs[k].model);
    pylstm_stream_release(jobs[k].stream);
  }
  for (Py_ssize_t k = 0; k < got; ++k) PyBuffer_Release(&bufs[k]);
  free(threads);
  free(bufs);
  free(jobs);
  return result;
}

static PyMethodDef methods[] = {
    {"run", run, METH_VARARGS, "run(objects, xs, ys, T, B, I, O, streams) on pthreads"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "capi_cdemo", NULL, -1, methods};

PyMODINIT_FUNC PyInit_capi_cdemo(void) {
  if (import_pylstm_capi() < 0) return NULL;
  return PyModule_Create(&module);
}
