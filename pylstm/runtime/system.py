"""Process-wide runtime: threads, instruction set, devices, build information."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import os
import sys
import threading

import numpy as np

from .. import _core
from ..errors import DeviceError
from .output_buffers import drop_free_buffers

#: Written once, in pyproject.toml; compiled into the engine by CMake.
__version__ = _core.__version__
MAX_THREADS = 1024


def release_freed_memory() -> None:
    """Hand the heap memory freed since the last call back to the operating system.

    Loading a model allocates the file's tensors and the unpacked canonical weights, then frees
    them once the engine has packed its own copy. glibc keeps freed blocks below its mmap
    threshold (which grows to 32 MiB after the first large free) in the heap, so without this a
    loaded model's process would stay about one copy of the weights larger than needed.
    ``malloc_trim`` returns those pages; elsewhere (other C libraries) this does nothing. The
    output buffers kept for reuse (:mod:`pylstm.runtime.output_buffers`) that no array uses
    are dropped first.
    """
    drop_free_buffers()
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc: musl has no malloc_trim
        ctypes.CDLL(None).malloc_trim(0)


class _SingleThreadedBlas:
    """A context in which numpy's BLAS (OpenBLAS, MKL, ...) uses one thread.

    The graph executor runs the layers around the recurrent ones in numpy. A BLAS call on two
    threads leaves its worker threads spinning for a while after it returns, on the cores the
    engine's team needs next: measured on a 2-core machine, an ONNX model with a MatMul head ran
    2.5x slower than with BLAS on one thread (the heads are small; one thread is as fast). Nested
    and concurrent uses are counted: the first to enter sets one thread, the last to leave puts
    back what was there. Needs ``threadpoolctl`` (a dependency); without it, or with
    ``PYLSTM_LIMIT_BLAS=0``, it does nothing.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._saved = None
        self._libs = None  # found at first use, once numpy has loaded its BLAS

    def _blas_libs(self) -> list:
        if self._libs is None:
            self._libs = []
            if os.environ.get("PYLSTM_LIMIT_BLAS", "1").strip() != "0":
                try:
                    from threadpoolctl import ThreadpoolController
                except ImportError:
                    return self._libs
                self._libs = ThreadpoolController().select(user_api="blas").lib_controllers
        return self._libs

    @staticmethod
    def _set(lib, n: int) -> None:
        # threadpoolctl lets only one Python thread set OpenBLAS's (process-wide) count and
        # silently ignores the others; the graph runs in whichever thread calls the model, so
        # the library's own setter is called (falling back to the public one).
        getattr(lib, "_real_set_num_threads", lib.set_num_threads)(n)

    def __enter__(self):
        with self._lock:
            self._users += 1
            if self._users == 1:
                libs = self._blas_libs()
                self._saved = [lib.num_threads for lib in libs]
                for lib in libs:
                    self._set(lib, 1)
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._users -= 1
            if self._users == 0:
                self._restore()
        return False

    def _restore(self) -> None:
        for lib, n in zip(self._libs, self._saved):
            self._set(lib, n)

    def after_fork_in_child(self) -> None:
        """A child forked while a graph ran in another thread: that run is not in the child, so
        the count starts again and BLAS gets its threads back."""
        self._lock = threading.Lock()
        if self._users:
            self._restore()
        self._users = 0


#: ``with single_threaded_blas: ...`` (see :class:`_SingleThreadedBlas`).
single_threaded_blas = _SingleThreadedBlas()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=single_threaded_blas.after_fork_in_child)


def releases_freed_memory(build):
    """Decorator for the functions that build a model: :func:`release_freed_memory` after
    ``build`` returns, when its temporaries (file bytes, unpacked weights) are garbage."""

    @functools.wraps(build)
    def wrapper(*args, **kwargs):
        model = build(*args, **kwargs)
        release_freed_memory()
        return model

    return wrapper


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (counting the caller) for each forward pass; ``n >= 1``.

    The default is the number of CPUs this process may run on, or ``PYLSTM_NUM_THREADS``.
    """
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"num_threads must be an int, got {type(n).__name__}")
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"num_threads must be between 1 and {MAX_THREADS}, got {n}")
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """Threads each forward pass may use."""
    return _core.get_num_threads()


def simd_level() -> str:
    """The instruction set the CPU kernels use: ``PYLSTM_SIMD`` if set, else the best available
    (``avx512``, ``avx2`` or ``generic``)."""
    wanted = os.environ.get("PYLSTM_SIMD", "auto").strip().lower() or "auto"
    supported = _core.supported_isas()
    if wanted == "auto":
        return supported[0]
    if wanted not in supported:
        raise DeviceError(
            f"PYLSTM_SIMD={wanted!r} is not available on this CPU/build; available: "
            f"{', '.join(supported)}"
        )
    return wanted


def cuda_compiled() -> bool:
    """Whether this build includes the CUDA backend (it is imported only when used)."""
    return importlib.util.find_spec("pylstm._cuda") is not None


# The imported pylstm._cuda, or the reason it could not be imported (computed once).
_cuda_module = None
_cuda_import_error = None


def _preload_cublas() -> bool:
    """Load libcublas from an nvidia-cublas wheel on ``sys.path`` (for builds whose RPATH does
    not lead to it, e.g. an in-tree build). Returns whether a library was loaded."""
    import ctypes
    import glob
    import sys

    for entry in sys.path:
        pattern = os.path.join(entry or ".", "nvidia", "*", "lib", "libcublas.so.*")
        for path in sorted(glob.glob(pattern), reverse=True):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                return True
            except OSError:
                continue
    return False


def load_cuda():
    """Import ``pylstm._cuda`` (once) and return it.

    Raises
    ------
    DeviceError
        This build has no CUDA backend, or it cannot be loaded (a missing cuBLAS, say); the
        message says why and what to install.
    """
    global _cuda_module, _cuda_import_error
    if _cuda_module is not None:
        return _cuda_module
    if not cuda_compiled():
        raise DeviceError(
            "this pylstm was built without the CUDA backend (rebuild with nvcc on the PATH, or "
            "PYLSTM_CUDA=ON to require it)"
        )
    if _cuda_import_error is None:
        try:
            from .. import _cuda
        except ImportError as exc:
            retry = "libcublas" in str(exc) and _preload_cublas()
            try:
                if not retry:
                    raise
                from .. import _cuda
            except ImportError as exc2:
                hint = (
                    " (pip install 'pylstm[cuda]' installs the cuBLAS wheel)"
                    if "libcublas" in str(exc2)
                    else ""
                )
                _cuda_import_error = f"the CUDA backend could not be loaded: {exc2}{hint}"
        if _cuda_import_error is None:
            _cuda_module = _cuda
            return _cuda
    raise DeviceError(_cuda_import_error)


def cuda_status() -> tuple:
    """``(device names, reason)``: the CUDA devices the backend can use, and when there are none
    the reason (not compiled, not loadable, no driver, no GPU); ``reason`` is "" otherwise."""
    if not cuda_compiled():
        return [], "this pylstm was built without the CUDA backend"
    try:
        mod = load_cuda()
    except DeviceError as exc:
        return [], str(exc)
    try:
        names = list(mod.device_names())
        return names, "" if names else mod.device_status()
    except Exception as exc:  # a broken driver: report it, never fail here
        return [], f"{type(exc).__name__}: {exc}"


def cuda_devices() -> list:
    """Names of the CUDA devices the CUDA backend can see (empty without it or without a GPU)."""
    return cuda_status()[0]


def check_device(device: str) -> str:
    """Normalise ``device`` ("cpu", "cuda", "cuda:N") and check this build and machine can use
    it. Returns ``"cpu"`` or ``"cuda:N"`` (``"cuda"`` is ``"cuda:0"``).

    Raises
    ------
    TypeError
        ``device`` is not a string.
    ValueError
        Unknown device name.
    DeviceError
        CUDA asked for but not compiled in, not loadable, no driver, no GPU, or no GPU ``N``;
        the message says which.
    """
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
    name = device.strip().lower()
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        index_text = name[5:] if name.startswith("cuda:") else "0"
        if not index_text.isdigit():
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
        if not cuda_compiled():
            raise DeviceError(
                f"device={device!r}: this pylstm was built without the CUDA backend "
                "(rebuild with nvcc on the PATH, or PYLSTM_CUDA=ON to require it)"
            )
        names, reason = cuda_status()
        if not names:
            raise DeviceError(
                f"device={device!r}: no CUDA device is available on this machine ({reason})"
            )
        index = int(index_text)
        if index >= len(names):
            raise DeviceError(
                f"device={device!r}: there is no CUDA device {index}; this machine has "
                f"{len(names)} ({', '.join(names)})"
            )
        return f"cuda:{index}"
    raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")


def info() -> dict:
    """Build and runtime information.

    Returns
    -------
    dict
        ``version``, ``simd`` (instruction set in use), ``simd_available``, ``num_threads``,
        ``cpus``, ``cuda_compiled`` (bool), ``cuda_devices`` (list of names), ``cuda_status``
        (why there is no CUDA device; "" when there is one).
    """
    devices, reason = cuda_status()
    return {
        "version": __version__,
        "simd": simd_level(),
        "simd_available": list(_core.supported_isas()),
        "num_threads": get_num_threads(),
        "cpus": _core.available_cpus(),
        "cuda_compiled": cuda_compiled(),
        "cuda_devices": devices,
        "cuda_status": reason,
    }
