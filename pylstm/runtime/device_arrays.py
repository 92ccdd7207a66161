"""Device arrays for the CUDA engine: PyTorch CUDA tensors, CuPy arrays, and anything else that
exposes ``__cuda_array_interface__`` or a CUDA ``__dlpack__``.

A call on device arrays never goes through the host: pylstm reads the caller's arrays where they
are (pointers and strides), writes outputs it allocates with the caller's library on the same
device, and enqueues its work on that library's current stream (``torch.cuda.current_stream()``,
``cupy.cuda.get_current_stream()``), so the results are ordered like any other operation of that
library and the call returns without waiting for the GPU.

Objects with only ``__dlpack__`` (e.g. JAX arrays) are taken in zero-copy through
``torch.from_dlpack`` or ``cupy.from_dlpack`` (whichever is installed) and the outputs are that
library's arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .validation import device_array_kind

#: dtypes the kernels read and write.
KERNEL_DTYPES = ("float32", "float16", "bfloat16")
_CAI_TYPES = {"<f4": "float32", "<f2": "float16", "<f8": "float64", "|u1": "uint8", "<u1": "uint8"}


@dataclass
class DeviceView:
    """Where a device array is: ``ptr`` (int), ``shape``, ``strides`` (elements), ``dtype``
    (numpy-style name), ``device`` (CUDA device number)."""

    ptr: int
    shape: tuple
    strides: tuple
    dtype: str
    device: int


class DeviceIO:
    """Reading, allocating and converting device arrays with one library (``"torch"`` or
    ``"cupy"``) on one device, on that library's current stream."""

    def __init__(self, lib: str, device: int):
        self.lib = lib
        self.device = int(device)
        if lib == "torch":
            import torch

            self._torch = torch
            self._dev = torch.device("cuda", self.device)
            self.stream = torch.cuda.current_stream(self._dev).cuda_stream
        else:
            import cupy

            self._cupy = cupy
            with cupy.cuda.Device(self.device):
                self.stream = cupy.cuda.get_current_stream().ptr

    # -- reading ----------------------------------------------------------------------------
    def view(self, a) -> DeviceView:
        """Pointer, shape, element strides, dtype and device of ``a`` (this library's array)."""
        if self.lib == "torch":
            t = a.detach()
            return DeviceView(
                t.data_ptr(),
                tuple(t.shape),
                tuple(t.stride()),
                str(t.dtype).replace("torch.", ""),
                t.device.index,
            )
        item = a.dtype.itemsize
        if any(s % item for s in a.strides):
            raise ValueError("device array strides must be whole elements")
        return DeviceView(
            int(a.data.ptr),
            tuple(a.shape),
            tuple(s // item for s in a.strides),
            a.dtype.name,
            int(a.device.id),
        )

    # -- allocating and converting ----------------------------------------------------------
    def empty(self, shape: tuple, dtype: str):
        if self.lib == "torch":
            return self._torch.empty(shape, dtype=getattr(self._torch, dtype), device=self._dev)
        with self._cupy.cuda.Device(self.device):
            return self._cupy.empty(shape, dtype=_cupy_dtype(dtype))

    def as_type(self, a, dtype: str, *, contiguous: bool = False):
        """``a`` (this library's array, or host data) on this device as ``dtype``, copied only
        when needed."""
        if self.lib == "torch":
            torch = self._torch
            t = a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
            t = t.detach().to(device=self._dev, dtype=getattr(torch, dtype))
            return t.contiguous() if contiguous else t
        cupy = self._cupy
        with cupy.cuda.Device(self.device):
            out = cupy.asarray(a).astype(_cupy_dtype(dtype), copy=False)
            return cupy.ascontiguousarray(out) if contiguous else out

    def from_host(self, a: np.ndarray):
        """A host array copied to this device (same dtype), ordered on the current stream."""
        if self.lib == "torch":
            return self._torch.from_numpy(np.ascontiguousarray(a)).to(self._dev)
        with self._cupy.cuda.Device(self.device):
            return self._cupy.asarray(np.ascontiguousarray(a))


def _cupy_dtype(name: str):
    if name == "bfloat16":
        raise TypeError("CuPy has no bfloat16 arrays; use float16 or float32")
    return np.dtype(name)


def _cai_device(ptr: int) -> int:
    from .system import load_cuda

    return load_cuda().pointer_device(ptr)


def adopt(a):
    """``(array, DeviceIO)`` for a device array ``a``: torch tensors and CuPy arrays as they are;
    other CUDA-array-interface objects and DLPack-only objects wrapped zero-copy as CuPy (or
    torch) arrays. A version-3 interface's ``stream`` is synchronized first (the consumer's
    duty in that protocol); pylstm then works on the wrapping library's current stream.

    Raises
    ------
    TypeError
        ``a`` is not a device array, or no library to hold it is installed.
    """
    kind = device_array_kind(a)
    if kind == "torch":
        return a, DeviceIO("torch", a.device.index)
    if kind == "cupy":
        return a, DeviceIO("cupy", a.device.id)
    if kind == "cai":
        iface = a.__cuda_array_interface__
        stream = iface.get("stream") if iface.get("version", 0) >= 3 else None
        for lib in ("cupy", "torch"):
            try:
                mod = __import__(lib)
            except ImportError:
                continue
            if stream:  # the producer's pending work on its stream must be done before reading
                mod.cuda.ExternalStream(int(stream)).synchronize()
            if lib == "cupy":
                wrapped = mod.asarray(a)  # zero-copy over the interface
            else:
                device = _cai_device(iface["data"][0])
                wrapped = mod.as_tensor(a, device=f"cuda:{device}")
            return adopt(wrapped)
        raise TypeError(
            f"{type(a).__name__}: reading a __cuda_array_interface__ array needs CuPy or "
            "PyTorch installed"
        )
    if kind == "dlpack":
        for lib in ("torch", "cupy"):
            try:
                mod = __import__(lib)
            except ImportError:
                continue
            wrapped = mod.from_dlpack(a)
            return adopt(wrapped)
        raise TypeError(f"{type(a).__name__}: reading a DLPack array needs PyTorch or CuPy")
    raise TypeError(f"{type(a).__name__} is not a CUDA device array")


def rows_desc(view: DeviceView, t_axis: int | None, b_axis: int | None) -> tuple:
    """``(ptr, dtype, T, B, F, stride_t, stride_b)`` of a 2-D or 3-D view, the feature axis last;
    a missing axis (``None``) has length 1 and stride 0."""
    shape, strides = view.shape, view.strides
    T = shape[t_axis] if t_axis is not None else 1
    B = shape[b_axis] if b_axis is not None else 1
    st = strides[t_axis] if t_axis is not None else 0
    sb = strides[b_axis] if b_axis is not None else 0
    return (view.ptr, view.dtype, int(T), int(B), int(shape[-1]), int(st), int(sb))
