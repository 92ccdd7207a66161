"""Process-wide runtime: threads, instruction set, devices, build information."""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from . import _core
from .errors import DeviceError

__version__ = "0.1.0"
MAX_THREADS = 1024


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


def cuda_devices() -> list:
    """Names of the CUDA devices the CUDA backend can see (empty without it or without a GPU)."""
    if not cuda_compiled():
        return []
    try:
        from . import _cuda

        return list(_cuda.device_names())
    except Exception:  # no driver, no GPU, missing library: no devices
        return []


def check_device(device: str) -> str:
    """Normalise ``device`` ("cpu", "cuda", "cuda:N") and check this build can use it.

    Raises
    ------
    TypeError
        ``device`` is not a string.
    ValueError
        Unknown device name.
    DeviceError
        CUDA asked for but not compiled in, or no GPU present.
    """
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
    name = device.strip().lower()
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        if not cuda_compiled():
            raise DeviceError(
                f"device={device!r}: this pylstm was built without the CUDA backend "
                "(rebuild with nvcc on the PATH, or PYLSTM_CUDA=ON to require it)"
            )
        if not cuda_devices():
            raise DeviceError(f"device={device!r}: no CUDA device is available on this machine")
        return name
    raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")


def info() -> dict:
    """Build and runtime information.

    Returns
    -------
    dict
        ``version``, ``simd`` (instruction set in use), ``simd_available``, ``num_threads``,
        ``cpus``, ``cuda_compiled`` (bool), ``cuda_devices`` (list of names).
    """
    return {
        "version": __version__,
        "simd": simd_level(),
        "simd_available": list(_core.supported_isas()),
        "num_threads": get_num_threads(),
        "cpus": _core.available_cpus(),
        "cuda_compiled": cuda_compiled(),
        "cuda_devices": cuda_devices(),
    }
