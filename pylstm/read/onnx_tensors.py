"""ONNX tensors as numpy arrays: element types, ``TensorProto`` decoding, external data.

Decoding is done here rather than with ``onnx.numpy_helper`` so that every failure names the
file and the tensor, external data is read with bounds checks (never outside the model's folder,
never past the end of its file) and bfloat16 weights become float32 without extra packages.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import stat

import numpy as np

from ..errors import FormatError, UnsupportedError
from . import limits

# TensorProto.DataType -> (numpy dtype, ONNX Runtime's type name). BFLOAT16 is read as float32
# (the engine computes in float32 anyway); the float8/int4/... types are refused with their name.
ELEMENT_TYPES = {
    1: (np.dtype(np.float32), "float"),
    2: (np.dtype(np.uint8), "uint8"),
    3: (np.dtype(np.int8), "int8"),
    4: (np.dtype(np.uint16), "uint16"),
    5: (np.dtype(np.int16), "int16"),
    6: (np.dtype(np.int32), "int32"),
    7: (np.dtype(np.int64), "int64"),
    9: (np.dtype(np.bool_), "bool"),
    10: (np.dtype(np.float16), "float16"),
    11: (np.dtype(np.float64), "double"),
    12: (np.dtype(np.uint32), "uint32"),
    13: (np.dtype(np.uint64), "uint64"),
    14: (np.dtype(np.complex64), "complex64"),
    15: (np.dtype(np.complex128), "complex128"),
    16: (np.dtype(np.float32), "bfloat16"),
}
TYPE_NAMES = {
    0: "undefined",
    8: "string",
    17: "float8e4m3fn",
    18: "float8e4m3fnuz",
    19: "float8e5m2",
    20: "float8e5m2fnuz",
    21: "uint4",
    22: "int4",
    23: "float4e2m1",
}
BFLOAT16 = 16
# Which repeated field of TensorProto holds the values when raw_data is not used.
_INT32_FIELD = {2, 3, 4, 5, 6, 9, 10, 16}
_INT64_FIELD = {7}
_UINT64_FIELD = {12, 13}
_FLOAT_FIELD = {1, 14}
_DOUBLE_FIELD = {11, 15}


def type_name(elem_type: int) -> str:
    """ONNX Runtime's name of an element type (``"float"``, ``"int64"``, ...)."""
    if elem_type in ELEMENT_TYPES:
        return ELEMENT_TYPES[elem_type][1]
    return TYPE_NAMES.get(elem_type, f"type {elem_type}")


def numpy_dtype(elem_type: int, what: str) -> np.dtype:
    """The numpy dtype that holds ``elem_type`` (UnsupportedError for types numpy lacks)."""
    if elem_type not in ELEMENT_TYPES:
        raise UnsupportedError(f"{what}: element type {type_name(elem_type)} is not supported")
    return ELEMENT_TYPES[elem_type][0]


def _bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


class TensorBudget:
    """Bytes the tensors of one model may take (``max_bytes``): the explicit limit of the ``load``
    in progress, or the default for the model's size plus the sizes of the distinct external
    data files it reads (each counted once, when first read).

    Parameters
    ----------
    source : str
        Named in messages.
    model_size : int
        Bytes of the serialized model.
    """

    def __init__(self, source: str, model_size: int):
        self.source = source
        self.size = int(model_size)
        self.explicit = limits.explicit_max_bytes()
        self.files: set = set()
        self.used = 0

    @property
    def limit(self) -> int:
        """The current limit, in bytes."""
        return self.explicit if self.explicit is not None else limits.default_max_bytes(self.size)

    def add_file(self, real_path: str, size: int) -> None:
        """Count an external data file's size into the model's size (once per file)."""
        if real_path not in self.files:
            self.files.add(real_path)
            self.size += int(size)

    def take(self, nbytes: int, what: str) -> None:
        """Account for ``nbytes`` more; FormatError naming the limit when it is passed."""
        if self.used + nbytes > self.limit:
            raise limits.over_limit(self.source, what, self.used + nbytes, self.limit)
        self.used += int(nbytes)

    def remaining(self) -> int:
        """Bytes still allowed."""
        return max(self.limit - self.used, 0)


_BUDGET: contextvars.ContextVar = contextvars.ContextVar("pylstm_onnx_budget", default=None)


@contextlib.contextmanager
def tensor_budget(budget: TensorBudget):
    """Make ``budget`` the one :func:`tensor_to_array` (and constant folding) charge."""
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def current_budget() -> TensorBudget | None:
    """The budget of the model being built, or None outside :func:`tensor_budget`."""
    return _BUDGET.get()


def _check_external_location(location: str, base_dir: str, what: str) -> str:
    """The real path of an external-data file, refusing any location outside the model's folder.

    Links are followed (``os.path.realpath``) before the check, so that neither a linked file
    (``w.bin -> /etc/passwd``) nor a linked folder (``sub -> /etc``, location ``sub/passwd``)
    reaches outside it; the result must be a regular file (not a device or a pipe).
    """
    if not location:
        raise FormatError(f"{what}: external data without a 'location'")
    parts = location.replace("\\", "/").split("/")
    if os.path.isabs(location) or ".." in parts or ":" in parts[0] or "\0" in location:
        raise FormatError(
            f"{what}: external data location {location!r} points outside the model's folder; "
            "pylstm reads external data only from files next to the model"
        )
    root = os.path.realpath(base_dir)
    real = os.path.realpath(os.path.join(root, *parts))
    if os.path.commonpath([real, root]) != root or real == root:
        raise FormatError(
            f"{what}: external data location {location!r} resolves (through a link) to {real}, "
            "outside the model's folder; pylstm reads external data only from files in the "
            "model's folder"
        )
    return real


def _read_external(tensor, dtype: np.dtype, count: int, base_dir: str, what: str) -> np.ndarray:
    info = {entry.key: entry.value for entry in tensor.external_data}
    path = _check_external_location(info.get("location", ""), base_dir, what)
    try:
        offset = int(info.get("offset", 0) or 0)
        length = info.get("length")
        length = None if length in (None, "") else int(length)
    except ValueError:
        raise FormatError(f"{what}: external data offset/length are not integers: {info}") from None
    nbytes = count * dtype.itemsize
    if offset < 0 or (length is not None and length != nbytes):
        raise FormatError(
            f"{what}: external data in {info.get('location')!r} has offset {offset} and length "
            f"{length}, but the tensor's shape and type need {nbytes} bytes"
        )
    try:
        fd = _open_no_follow(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        raise FormatError(
            f"{what}: its data is stored in the external file {info.get('location')!r}, which "
            f"does not exist or cannot be opened (looked for {path}); keep the data file next "
            "to the model"
        ) from None
    with open(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise FormatError(
                f"{what}: external data location {info.get('location')!r} is not a regular file"
            )
        size = st.st_size
        if offset + nbytes > size:
            raise FormatError(
                f"{what}: external file {path} is truncated: the tensor needs bytes {offset} to "
                f"{offset + nbytes}, the file has {size}"
            )
        budget = current_budget()
        if budget is not None:
            budget.add_file(path, size)
            budget.take(nbytes, f"tensor {tensor.name!r}")
        if count == 0:
            return np.zeros(0, dtype)
        try:
            fh.seek(offset)
            return np.fromfile(fh, dtype=dtype.newbyteorder("<"), count=count)
        except (OSError, ValueError) as exc:
            raise FormatError(f"{what}: cannot read external file {path}: {exc}") from None


def _open_no_follow(path, flags):
    """``open`` that refuses a link in the last component (the path is already resolved: a link
    there now was put in place after the check) and never blocks."""
    # O_NONBLOCK: opening a pipe must not wait for a writer (fstat then refuses it).
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))


def tensor_to_array(tensor, *, base_dir: str = "", source: str = "model") -> np.ndarray:
    """Decode a ``TensorProto`` (inline or external data) into a numpy array.

    Parameters
    ----------
    tensor : onnx.TensorProto
    base_dir : str
        Folder of the model file; external data locations are relative to it.
    source : str
        Named in error messages (the file).

    Returns
    -------
    ndarray
        Shape ``tensor.dims``; BFLOAT16 comes back as float32.

    Raises
    ------
    FormatError
        Wrong number of values for the shape, missing or truncated external data.
    UnsupportedError
        Element types numpy cannot hold (strings, float8, int4, ...).
    """
    what = f"{source}: tensor {tensor.name!r}" if tensor.name else f"{source}: a tensor"
    elem = tensor.data_type
    dims = tuple(int(d) for d in tensor.dims)
    if any(d < 0 for d in dims):
        raise FormatError(f"{what} has negative dimensions {list(dims)}")
    count = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if tensor.HasField("segment"):
        raise UnsupportedError(f"{what}: segmented tensors are not supported")
    dtype = numpy_dtype(elem, what)
    storage = np.dtype(np.uint16) if elem in (BFLOAT16, 10) else dtype
    budget = current_budget()
    if budget is not None and tensor.data_location != 1:  # external data is charged when read
        budget.take(count * max(dtype.itemsize, storage.itemsize), what.split(": ", 1)[-1])
    if tensor.data_location == 1:  # EXTERNAL
        flat = _read_external(tensor, storage, count, base_dir, what)
    elif tensor.raw_data:
        raw = tensor.raw_data
        if len(raw) != count * storage.itemsize:
            raise FormatError(
                f"{what} has {len(raw)} bytes of data, but shape {list(dims)} of "
                f"{type_name(elem)} needs {count * storage.itemsize}"
            )
        flat = np.frombuffer(raw, dtype=storage.newbyteorder("<")).copy()
    else:
        if elem in _INT32_FIELD:
            values = np.asarray(tensor.int32_data, np.int32)
            flat = (
                values.astype(storage) if elem not in (10, BFLOAT16) else values.astype(np.uint16)
            )
        elif elem in _INT64_FIELD:
            flat = np.asarray(tensor.int64_data, np.int64)
        elif elem in _UINT64_FIELD:
            flat = np.asarray(tensor.uint64_data, np.uint64).astype(storage)
        elif elem in _FLOAT_FIELD:
            flat = np.asarray(tensor.float_data, np.float32)
            if elem == 14:
                flat = flat[0::2] + 1j * flat[1::2]
        else:  # double, complex128
            flat = np.asarray(tensor.double_data, np.float64)
            if elem == 15:
                flat = flat[0::2] + 1j * flat[1::2]
        flat = flat.astype(storage if elem not in (10,) else np.uint16, copy=False)
        if flat.size != count:
            raise FormatError(
                f"{what} has {flat.size} values, but its shape {list(dims)} needs {count}"
            )
    if elem == 10:
        flat = flat.astype(np.uint16, copy=False).view(np.float16)
    elif elem == BFLOAT16:
        flat = _bfloat16_bits_to_float32(flat.astype(np.uint16, copy=False))
    flat = flat.astype(flat.dtype.newbyteorder("="), copy=False)
    return flat.reshape(dims)
