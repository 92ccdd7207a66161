"""Checks of caller-supplied arrays, done once at the Python boundary (the kernels trust them)."""

from __future__ import annotations

import numpy as np

#: Input dtypes accepted (converted to float32); bfloat16 arrives as float32 from to_numpy.
_FLOAT_KINDS = ("float16", "float32", "float64")


# DLPack device types of CUDA memory (kDLCUDA, kDLCUDAManaged).
_DLPACK_CUDA = (2, 13)


def device_array_kind(a):
    """What kind of CUDA device array ``a`` is: ``"torch"`` (a CUDA tensor), ``"cupy"``,
    ``"cai"`` (another object with ``__cuda_array_interface__``), ``"dlpack"`` (an object whose
    ``__dlpack_device__`` is CUDA), or None for anything else (numpy, CPU tensors, lists).
    Nothing is imported and nothing is copied."""
    module = type(a).__module__ or ""
    if module.startswith("torch"):
        return "torch" if getattr(a, "is_cuda", False) else None
    if module.startswith("cupy"):
        return "cupy" if hasattr(a, "__cuda_array_interface__") else None
    if isinstance(a, (np.ndarray, np.generic, list, tuple, int, float)):
        return None
    try:
        if hasattr(a, "__cuda_array_interface__"):
            return "cai"
        dev = getattr(a, "__dlpack_device__", None)
        if dev is not None and int(dev()[0]) in _DLPACK_CUDA:
            return "dlpack"
    except Exception:  # a property that raises: not something we can read
        return None
    return None


def is_device_array(a) -> bool:
    """Whether ``a`` lives in CUDA device memory (see :func:`device_array_kind`)."""
    return device_array_kind(a) is not None


def to_numpy(a):
    """numpy view of ``a``; torch tensors (also ones that require grad) are detached first.

    bfloat16, which numpy does not have (a torch ``bfloat16`` tensor, or an ``ml_dtypes``
    bfloat16 array), comes back as float32: every bfloat16 value is exactly a float32 value."""
    if hasattr(a, "detach") and hasattr(a, "cpu") and hasattr(a, "numpy"):
        a = a.detach().cpu()
        if str(getattr(a, "dtype", "")) == "torch.bfloat16":
            a = a.float()
        a = a.numpy()
    arr = np.asarray(a)
    if arr.dtype.name == "bfloat16":
        arr = arr.astype(np.float32)
    return arr


def as_float_array(a, name: str) -> np.ndarray:
    """``a`` as float32 whose last axis is contiguous (copying only when needed).

    Parameters
    ----------
    a : array_like
        float16, bfloat16 (torch tensors, ``ml_dtypes`` arrays), float32 or float64: numpy
        arrays (strided is fine), CPU torch tensors (also ones that require grad), nested lists.
    name : str
        The argument's name, for error messages.

    Raises
    ------
    TypeError
        ``a`` is not an array of float16, bfloat16, float32 or float64 (integers, booleans,
        objects, complex, ragged lists).
    """
    if (
        type(a) is np.ndarray
        and a.dtype.char == "f"
        and (a.ndim == 0 or a.shape[-1] < 2 or a.strides[-1] == 4)
    ):
        return a  # the common case, checked cheaply (a step call's whole budget is microseconds)
    try:
        arr = to_numpy(a)
    except Exception as exc:  # ragged lists, unconvertible objects
        raise TypeError(f"{name} must be an array of floats: {exc}") from None
    if arr.dtype.name not in _FLOAT_KINDS:
        raise TypeError(
            f"{name} must be float16, bfloat16, float32 or float64, got dtype {arr.dtype}"
        )
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    if arr.ndim and arr.shape[-1] > 1 and arr.strides[-1] != 4:
        arr = np.ascontiguousarray(arr)
    return arr


def as_state(a, name: str, shape: tuple) -> np.ndarray:
    """An initial-state array as C-contiguous float32 of exactly ``shape``."""
    arr = as_float_array(a, name)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {arr.shape}")
    return np.ascontiguousarray(arr)


def positive_int(v, name: str) -> int:
    """``v`` as an int >= 1 (TypeError for non-integers, ValueError for < 1)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if v < 1:
        raise ValueError(f"{name} must be >= 1, got {v}")
    return int(v)
