"""Read ``torch.save`` files without torch and without running any pickled code.

Two on-disk layouts are read:

* **zip** (the default since torch 1.6): ``<folder>/data.pkl`` is a pickle of the saved object in
  which every storage appears as a persistent id ``('storage', StorageType, key, location, numel)``;
  the bytes of storage ``key`` are the archive member ``<folder>/data/<key>``; ``<folder>/byteorder``
  says ``little`` or ``big``. The folder name is the stem of the file name torch saved to
  (``archive`` for a buffer).
* **legacy** (``_use_new_zipfile_serialization=False``): a sequence of pickles (the magic number
  ``0x1950a86a20f9469cfc6c``, the protocol version 1001, a ``sys_info`` dict, the object itself with
  persistent ids ``('storage', StorageType, key, location, numel, view_metadata)``, the list of
  storage keys), then for each key an 8-byte element count and the raw bytes.

Every pickle is first scanned opcode by opcode (without building anything) and then loaded by a
:class:`pickle.Unpickler` whose ``find_class`` resolves only the handful of names that rebuild tensors
and plain containers, each to a small stand-in defined here: torch is never imported and no other
callable is ever reached. Tensors become :class:`_TensorRecord` placeholders while unpickling; their
bounds are checked against the storage bytes actually present before any numpy view is made.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
import struct
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

from pylstm.errors import FormatError
from pylstm.formats.sniff import TORCH_LEGACY_MAGIC, check_regular_file, is_torch_legacy_header

__all__ = ["read_torch_file"]

LEGACY_PROTOCOL_VERSION = 1001
_MAX_NDIM = 32
_MAX_DEPTH = 64
_MAX_RESCANNED = 5_000_000
# Expanded (stride-0) or overlapping views may legitimately need more memory than the file holds,
# but a lying file must not make us allocate without bound: tensors may total at most this much.
_OUTPUT_BUDGET_BASE = 1 << 30
_OUTPUT_BUDGET_PER_FILE_BYTE = 16
# Deflate cannot compress better than about 1032:1; a member claiming more is lying.
_MAX_DEFLATE_RATIO = 1100
# Errors that malformed input can raise from the standard library or numpy; all become FormatError.
_MALFORMED = (
    ValueError,
    TypeError,
    LookupError,
    AttributeError,
    EOFError,
    RuntimeError,
    OverflowError,
    MemoryError,
    struct.error,
    zlib.error,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    pickle.UnpicklingError,
    Warning,  # e.g. DeprecationWarning from a STRING opcode under -W error
)


class _Invalid(ValueError):
    """Malformed content found where the file name is not at hand; re-raised as FormatError."""


# --------------------------------------------------------------------------------------------------
# dtypes


class _DType:
    """A tensor element type: its torch name, its little-endian numpy type and how to convert it."""

    __slots__ = ("kind", "name", "numpy")

    def __init__(self, name: str, numpy_type: str, kind: str):
        self.name = name
        self.numpy = np.dtype(numpy_type)
        self.kind = kind  # "float", "bfloat16", "int" or "bool"

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return self.numpy.itemsize


_DTYPES = {
    d.name: d
    for d in (
        _DType("float32", "<f4", "float"),
        _DType("float64", "<f8", "float"),
        _DType("float16", "<f2", "float"),
        _DType("bfloat16", "<u2", "bfloat16"),
        _DType("int64", "<i8", "int"),
        _DType("int32", "<i4", "int"),
        _DType("int16", "<i2", "int"),
        _DType("int8", "i1", "int"),
        _DType("uint8", "u1", "int"),
        _DType("bool", "u1", "bool"),
        _DType("uint16", "<u2", "int"),
        _DType("uint32", "<u4", "int"),
        _DType("uint64", "<u8", "int"),
    )
}

_STORAGE_CLASSES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "UntypedStorage": "uint8",
}


# --------------------------------------------------------------------------------------------------
# the stand-ins the unpickler may hand to pickle opcodes


class _Frozen:
    """Base of every object the unpickler creates: no ``__dict__``, immutable, refuses ``BUILD``.

    ``BUILD`` is the only pickle opcode that sets attributes; it calls ``__setstate__`` when the
    object has one, so refusing there keeps a hostile pickle from rewiring these objects.
    """

    __slots__ = ()

    def __setattr__(self, name, value):
        raise _Invalid(f"cannot set attribute {name!r} on {type(self).__name__}")

    def __setstate__(self, state):
        raise _Invalid(f"pickle tries to set the state of {self!r}; refused")

    def _init(self, **fields):
        """Set the slots once, at construction."""
        for key, value in fields.items():
            object.__setattr__(self, key, value)


class _TypeMarker(_Frozen):
    """Stands for ``torch.FloatStorage`` & co. or for a ``torch.float32``-style dtype object."""

    __slots__ = ("dtype", "is_storage", "qualname")

    def __init__(self, qualname: str, dtype: _DType, is_storage: bool):
        self._init(qualname=qualname, dtype=dtype, is_storage=is_storage)

    def __repr__(self):
        return self.qualname


class _StorageRef(_Frozen):
    """A storage named by a persistent id: root ``key``, and the window of it this id refers to."""

    __slots__ = ("dtype", "key", "numel", "view_numel", "view_offset")
    __hash__ = None

    def __init__(self, key: str, dtype: _DType, numel: int, view_offset: int, view_numel: int):
        self._init(
            key=key, dtype=dtype, numel=numel, view_offset=view_offset, view_numel=view_numel
        )

    def __repr__(self):
        return f"storage {self.key!r}"


class _TensorRecord(_Frozen):
    """A tensor to be cut out of a storage once the storage bytes are at hand."""

    __slots__ = ("dtype", "negate", "offset", "size", "storage", "stride")
    __hash__ = None

    def __init__(self, storage, dtype, offset, size, stride, negate):
        self._init(
            storage=storage, dtype=dtype, offset=offset, size=size, stride=stride, negate=negate
        )

    def __repr__(self):
        return f"tensor of {self.dtype.name} {self.size}"


class _SafeFunction(_Frozen):
    """One of our own rebuild functions, under the torch name a pickle calls it by."""

    __slots__ = ("func", "qualname")

    def __init__(self, qualname: str, func):
        self._init(qualname=qualname, func=func)

    def __call__(self, *args):
        return self.func(*args)

    def __repr__(self):
        return self.qualname


class _StateDict(OrderedDict):
    """Stands for ``collections.OrderedDict``; accepts and drops the ``_metadata`` a state dict
    carries (``BUILD`` with ``{'_metadata': ...}``)."""

    def __setstate__(self, state):
        if state is not None and not isinstance(state, (dict, tuple)):
            raise _Invalid(f"unexpected OrderedDict state of type {type(state).__name__}")


def _check_int(value, what: str, minimum: int = 0) -> int:
    """Return ``value`` if it is an int (not a bool) of at least ``minimum``.

    Parameters
    ----------
    value : object
        Value taken from the pickle.
    what : str
        What it is, for the message.
    minimum : int
        Smallest value allowed.

    Returns
    -------
    int

    Raises
    ------
    _Invalid
        ``value`` is not an int or is too small.
    """
    if type(value) is not int:
        raise _Invalid(f"{what} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise _Invalid(f"{what} must be >= {minimum}, got {value}")
    return value


def _check_shape(values, what: str) -> tuple:
    """Return ``values`` as a tuple of non-negative ints (a size or a stride).

    Raises
    ------
    _Invalid
        Not a tuple/list of ints >= 0, or more than 32 dimensions.
    """
    if not isinstance(values, (tuple, list)):
        raise _Invalid(f"{what} must be a tuple, got {type(values).__name__}")
    if len(values) > _MAX_NDIM:
        raise _Invalid(f"{what} has {len(values)} dimensions (at most {_MAX_NDIM} are read)")
    return tuple(_check_int(v, what) for v in values)


def _make_record(storage, offset, size, stride, dtype=None, metadata=None) -> _TensorRecord:
    """Validate the arguments of a tensor rebuild call and describe the tensor.

    Parameters
    ----------
    storage : _StorageRef
        From the persistent id.
    offset : int
        Storage offset, in elements of the tensor's dtype.
    size, stride : tuple of int
        Shape and strides (elements), same length; negative values are refused.
    dtype : _TypeMarker, optional
        The tensor dtype (``_rebuild_tensor_v3``); defaults to the storage's.
    metadata : dict, optional
        torch's tensor metadata; ``{'neg': True}`` (a negative view) is honoured.

    Returns
    -------
    _TensorRecord

    Raises
    ------
    _Invalid
        Any argument of the wrong type or out of range.
    """
    if not isinstance(storage, _StorageRef):
        raise _Invalid(
            f"tensor storage must come from a storage record, got {type(storage).__name__}"
        )
    if dtype is None:
        tensor_dtype = storage.dtype
    elif isinstance(dtype, _TypeMarker) and not dtype.is_storage:
        tensor_dtype = dtype.dtype
    else:
        raise _Invalid(f"tensor dtype must be a torch dtype, got {type(dtype).__name__}")
    size = _check_shape(size, "tensor size")
    stride = _check_shape(stride, "tensor stride")
    if len(size) != len(stride):
        raise _Invalid(f"tensor size {size} and stride {stride} differ in length")
    negate = False
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _Invalid(f"tensor metadata must be a dict, got {type(metadata).__name__}")
        unknown = set(metadata) - {"neg", "conj"}
        if unknown:
            raise _Invalid(f"unsupported tensor metadata {sorted(map(str, unknown))}")
        negate = bool(metadata.get("neg", False))
    offset = _check_int(offset, "tensor storage offset")
    return _TensorRecord(storage, tensor_dtype, offset, size, stride, negate)


def _rebuild_tensor(storage, storage_offset, size, stride):
    """Stand-in for ``torch._utils._rebuild_tensor``."""
    return _make_record(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    """Stand-in for ``torch._utils._rebuild_tensor_v2`` (``requires_grad`` and hooks are ignored)."""
    return _make_record(storage, storage_offset, size, stride, metadata=metadata)


def _rebuild_tensor_v3(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None
):
    """Stand-in for ``torch._utils._rebuild_tensor_v3`` (untyped storage + explicit dtype)."""
    return _make_record(storage, storage_offset, size, stride, dtype=dtype, metadata=metadata)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    """Stand-in for ``torch._utils._rebuild_parameter[_with_state]``: a Parameter is its data."""
    if not isinstance(data, _TensorRecord):
        raise _Invalid(f"Parameter data must be a tensor, got {type(data).__name__}")
    return data


def _torch_size(values=()):
    """Stand-in for ``torch.Size``: a plain tuple of non-negative ints."""
    return _check_shape(values, "torch.Size")


def _allowed_globals() -> dict:
    """The complete table of names a pickle may refer to, each mapped to its stand-in."""
    table = {
        ("collections", "OrderedDict"): _StateDict,
        ("torch", "Size"): _SafeFunction("torch.Size", _torch_size),
    }
    for name, func in (
        ("_rebuild_tensor", _rebuild_tensor),
        ("_rebuild_tensor_v2", _rebuild_tensor_v2),
        ("_rebuild_tensor_v3", _rebuild_tensor_v3),
        ("_rebuild_parameter", _rebuild_parameter),
        ("_rebuild_parameter_with_state", _rebuild_parameter),
    ):
        table[("torch._utils", name)] = _SafeFunction(f"torch._utils.{name}", func)
    for cls, dtype_name in _STORAGE_CLASSES.items():
        # Legacy files written from GPU tensors name torch.cuda.FloatStorage & co.
        for module in ("torch", "torch.cuda", "torch.storage"):
            if cls == "UntypedStorage" or module != "torch.storage":
                table[(module, cls)] = _TypeMarker(f"{module}.{cls}", _DTYPES[dtype_name], True)
    for dtype in _DTYPES.values():
        table[("torch", dtype.name)] = _TypeMarker(f"torch.{dtype.name}", dtype, False)
    return table


_ALLOWED_GLOBALS = _allowed_globals()


def _refusal(path: str, module: str, name: str) -> FormatError:
    """The error for a pickle that names a global outside the allow-list.

    Parameters
    ----------
    path : str
        The file, for the message.
    module, name : str
        The refused global.

    Returns
    -------
    FormatError
        Naming the global and, where it tells, what the file is and what to save instead.
    """
    qualname = f"{module}.{name}"
    if len(qualname) > 200:
        qualname = qualname[:200] + "..."
    msg = (
        f"{path}: refusing to unpickle global {qualname!r}: only tensors and plain containers "
        "are allowed (pylstm never runs code from a weights file)"
    )
    if module.startswith("__torch__"):
        msg += "; this is a TorchScript archive (torch.jit.save): save module.state_dict() instead"
    elif module.startswith("torch.nn.") and name[:1].isupper():
        msg += (
            "; the file holds a whole pickled module (torch.save(module)): "
            "save module.state_dict() instead"
        )
    elif module in ("torch", "torch.cuda", "torch.storage", "torch._utils"):
        msg += "; this tensor type or dtype is not supported"
    elif name[:1].isupper():
        msg += "; if the file was written by torch.save(model), save model.state_dict() instead"
    return FormatError(msg)


# --------------------------------------------------------------------------------------------------
# pickles


class _BoundedReader:
    """Reads of a binary file that never ask for more bytes than remain before ``end``, so that a
    lying length inside a pickle cannot make us allocate it."""

    def __init__(self, fh, end: int):
        self._fh = fh
        self._end = end

    def _remaining(self) -> int:
        return max(0, self._end - self._fh.tell())

    def read(self, n: int = -1) -> bytes:
        """Read up to ``n`` bytes (all that remain if ``n`` < 0)."""
        remaining = self._remaining()
        return self._fh.read(remaining if n is None or n < 0 else min(n, remaining))

    def readline(self, limit: int = -1) -> bytes:
        """Read one line, never past the window."""
        remaining = self._remaining()
        return self._fh.readline(remaining if limit is None or limit < 0 else min(limit, remaining))

    def tell(self) -> int:
        """Current position in the file."""
        return self._fh.tell()


_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_INT_OPS = {"INT", "LONG", "LONG1", "LONG4", "BININT", "BININT1", "BININT2"}
_REFUSED_OPS = {"EXT1", "EXT2", "EXT4"}  # copyreg's extension registry bypasses find_class


def _scan_pickle(stream, path: str, what: str, max_int_bits: int) -> int:
    """Walk one pickle opcode by opcode, without building anything, up to its ``STOP``.

    Catches truncation and garbage before the real unpickler runs, refuses globals outside the
    allow-list by name, refuses memo indices and integers far larger than any torch writes
    (the C unpickler sizes its memo from the index it is given), and the extension-registry opcodes.

    Parameters
    ----------
    stream : file-like
        Positioned at the pickle; ``read`` must never return more than is present.
    path, what : str
        The file and the pickle's role, for messages.
    max_int_bits : int
        Largest integer allowed, in bits.

    Returns
    -------
    int
        Position just past the ``STOP`` opcode.

    Raises
    ------
    FormatError
        The pickle is truncated, malformed or names a refused global.
    """
    n_ops = 0
    try:
        for opcode, arg, _pos in pickletools.genops(stream):
            n_ops += 1
            name = opcode.name
            if name == "GLOBAL":
                module, _, attr = arg.partition(" ")
                if (module, attr) not in _ALLOWED_GLOBALS:
                    raise _refusal(path, module, attr)
            elif name in _MEMO_PUTS and type(arg) is int and not 0 <= arg <= n_ops:
                raise FormatError(f"{path}: {what}: memo index {arg} out of range")
            elif name in _INT_OPS and type(arg) is int and arg.bit_length() > max_int_bits:
                raise FormatError(f"{path}: {what}: integer of {arg.bit_length()} bits refused")
            elif name in _REFUSED_OPS:
                raise FormatError(f"{path}: {what}: pickle opcode {name} refused")
            elif name == "STOP":
                return stream.tell()
    except FormatError:
        raise
    except _MALFORMED as exc:
        raise FormatError(f"{path}: {what} is truncated or not a valid pickle ({exc})") from None
    raise FormatError(f"{path}: {what} is truncated (no STOP opcode)")


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the allow-listed globals, each to a stand-in, and records storage ids."""

    def __init__(self, data: bytes, path: str, what: str):
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self.path = path
        self.what = what
        self.storages: dict = {}

    def find_class(self, module, name):
        """Return the stand-in for an allow-listed global; refuse every other global."""
        stand_in = _ALLOWED_GLOBALS.get((module, name))
        if stand_in is None:
            raise _refusal(self.path, str(module), str(name))
        return stand_in

    def persistent_load(self, pid):
        """Turn a torch storage persistent id into a :class:`_StorageRef`."""
        if not isinstance(pid, tuple) or not pid:
            raise _Invalid(f"unexpected persistent id of type {type(pid).__name__}")
        typename = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if typename == "module":
            raise FormatError(
                f"{self.path}: the file holds a whole pickled module (torch.save(module)); "
                "save module.state_dict() instead"
            )
        if typename != "storage" or len(pid) not in (5, 6):
            raise _Invalid(f"unexpected persistent id {str(typename)[:40]!r} of {len(pid)} fields")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _TypeMarker) or not storage_type.is_storage:
            raise _Invalid(f"storage type must be a torch storage class, got {storage_type!r}")
        if isinstance(key, int) and not isinstance(key, bool):
            key = str(key)
        if not isinstance(key, str) or len(key) > 256:
            raise _Invalid("storage key must be a short string")
        numel = _check_int(numel, f"element count of storage {key!r}")
        known = self.storages.setdefault(key, (storage_type.dtype, numel))
        if known != (storage_type.dtype, numel):
            raise _Invalid(f"storage {key!r} is described twice, differently")
        view_offset, view_numel = 0, numel
        if view is not None:
            if not isinstance(view, tuple) or len(view) != 3:
                raise _Invalid(f"storage {key!r}: malformed view metadata")
            view_offset = _check_int(view[1], f"view offset of storage {key!r}")
            view_numel = _check_int(view[2], f"view size of storage {key!r}")
            if view_offset + view_numel > numel:
                raise _Invalid(
                    f"storage {key!r}: view [{view_offset}, {view_offset + view_numel}) "
                    f"lies outside its {numel} elements"
                )
        return _StorageRef(key, storage_type.dtype, numel, view_offset, view_numel)


def _unpickle(data: bytes, path: str, what: str, max_int_bits: int = 64, scanned: bool = False):
    """Scan then load one pickle held in memory with the restricted unpickler.

    Parameters
    ----------
    data : bytes
        The pickle.
    path, what : str
        The file and the pickle's role, for messages.
    max_int_bits : int
        Largest integer allowed, in bits.
    scanned : bool
        ``data`` has already passed :func:`_scan_pickle`.

    Returns
    -------
    obj : object
        The unpickled object, tensors as :class:`_TensorRecord`.
    storages : dict
        ``key -> (dtype, numel)`` for every storage the pickle refers to.

    Raises
    ------
    FormatError
        Malformed, truncated or hostile pickle.
    """
    if not scanned:
        _scan_pickle(_BoundedReader(io.BytesIO(data), len(data)), path, what, max_int_bits)
    unpickler = _RestrictedUnpickler(data, path, what)
    try:
        obj = unpickler.load()
    except FormatError:
        raise
    except _MALFORMED as exc:
        raise FormatError(f"{path}: cannot unpickle {what}: {exc}") from None
    return obj, unpickler.storages


def _unpickle_from_stream(fh, end: int, path: str, what: str, max_int_bits: int = 64):
    """Load the pickle that starts at the current position of ``fh`` and leave ``fh`` after it.

    Parameters
    ----------
    fh : binary file
        Positioned at the pickle.
    end : int
        Size of the file.
    path, what : str
        For messages.
    max_int_bits : int
        Largest integer allowed, in bits.

    Returns
    -------
    obj, storages
        As :func:`_unpickle`.

    Raises
    ------
    FormatError
        Malformed, truncated or hostile pickle.
    """
    start = fh.tell()
    stop = _scan_pickle(_BoundedReader(fh, end), path, what, max_int_bits)
    fh.seek(start)
    data = fh.read(stop - start)
    return _unpickle(data, path, what, max_int_bits, scanned=True)


# --------------------------------------------------------------------------------------------------
# from the unpickled object to named tensors


_WALKED = (dict, list, tuple, _TensorRecord)


def _child_name(prefix: str, key, path: str) -> str:
    """Join a dict key or list index onto a dotted name.

    Raises
    ------
    FormatError
        A key that is neither a string nor an int.
    """
    if isinstance(key, int):
        key = str(int(key))
    elif not isinstance(key, str):
        raise FormatError(
            f"{path}: dict key of type {type(key).__name__} under {prefix or 'the top level'!r}; "
            "only string and integer keys are read"
        )
    return f"{prefix}.{key}" if prefix else key


def _flatten(obj, path: str) -> list:
    """List the tensors of a (nested) dict as ``(dotted name, _TensorRecord)`` in pickle order.

    Dicts, lists and tuples are walked (list items are named by their index); every other leaf
    (numbers, strings, None, ...) is dropped, whatever its key.

    Parameters
    ----------
    obj : dict
        The unpickled top-level object.
    path : str
        For messages.

    Returns
    -------
    list of (str, _TensorRecord)

    Raises
    ------
    FormatError
        ``obj`` is not a dict, nesting deeper than 64 levels (or a cycle), an object graph too
        large to walk, a container or tensor under a key that is neither a string nor an int, or
        two tensors with the same dotted name.
    """
    if not isinstance(obj, dict):
        what = "a single tensor" if isinstance(obj, _TensorRecord) else type(obj).__name__
        raise FormatError(
            f"{path}: expected a state dict (a dict of name -> tensor) at the top level, "
            f"found {what}"
        )
    found, names = [], set()
    stack = [("", obj, 0)]
    expanded, rescanned = set(), 0
    while stack:
        prefix, node, depth = stack.pop()
        if isinstance(node, _TensorRecord):
            if prefix in names:
                raise FormatError(f"{path}: two tensors are both named {prefix!r}")
            names.add(prefix)
            found.append((prefix, node))
            continue
        if depth >= _MAX_DEPTH:
            raise FormatError(f"{path}: containers nested deeper than {_MAX_DEPTH} (or a cycle)")
        # Walking each container once costs at most one pickle opcode per item; a container
        # shared by many references (memo) is walked again for each: bound that extra work.
        if id(node) in expanded:
            rescanned += len(node)
            if rescanned > _MAX_RESCANNED:
                raise FormatError(f"{path}: the pickled object graph is too large to walk")
        expanded.add(id(node))
        items = node.items() if isinstance(node, dict) else enumerate(node)
        children = [(key, value) for key, value in items if isinstance(value, _WALKED)]
        for key, value in reversed(children):
            stack.append((_child_name(prefix, key, path), value, depth + 1))
    return found


def _check_bounds(record: _TensorRecord, name: str, path: str) -> tuple:
    """Check that a tensor lies inside its storage window; compute where.

    Parameters
    ----------
    record : _TensorRecord
        The tensor.
    name, path : str
        For messages.

    Returns
    -------
    byte_start : int
        Offset of the storage window in the root storage's bytes.
    capacity : int
        Elements of the tensor's dtype that the window holds.
    numel : int
        Elements of the tensor.

    Raises
    ------
    FormatError
        The tensor's offset plus extent passes the end of the storage.
    """
    storage = record.storage
    byte_start = storage.view_offset * storage.dtype.itemsize
    capacity = storage.view_numel * storage.dtype.itemsize // record.dtype.itemsize
    numel = math.prod(record.size)
    if numel:
        last = record.offset + sum((n - 1) * s for n, s in zip(record.size, record.stride))
        if last >= capacity:
            raise FormatError(
                f"{path}: tensor {name!r}: size {record.size}, stride {record.stride} and offset "
                f"{record.offset} reach element {last} but its storage holds {capacity}"
            )
    return byte_start, capacity, numel


def _convert(view: np.ndarray, kind: str, shape: tuple) -> np.ndarray:
    """Copy a (strided, possibly big-endian) view into a new C-contiguous native array.

    Floats become float32 (bfloat16 by shifting its 16 bits into the top of a float32); integers
    keep their type; bool is nonzero-ness.

    Parameters
    ----------
    view : numpy.ndarray
        The tensor, viewed in the storage bytes.
    kind : str
        ``"float"``, ``"bfloat16"``, ``"int"`` or ``"bool"``.
    shape : tuple of int
        The tensor's shape.

    Returns
    -------
    numpy.ndarray
        Owning its memory.
    """
    if kind == "float":
        out = np.empty(shape, dtype=np.float32)
        out[...] = view
    elif kind == "bfloat16":
        out = np.empty(shape, dtype=np.float32)
        bits = out.view(np.uint32)
        bits[...] = view
        bits <<= 16
    elif kind == "bool":
        out = np.empty(shape, dtype=np.bool_)
        np.not_equal(view, 0, out=out)
    else:
        out = np.empty(shape, dtype=view.dtype.newbyteorder("="))
        out[...] = view
    return out


def _to_array(buf, record: _TensorRecord, big_endian: bool, name: str, path: str) -> np.ndarray:
    """Cut one tensor out of its storage bytes (bounds are checked before any view is made).

    Parameters
    ----------
    buf : bytes or memoryview
        The root storage's bytes, at least ``numel * itemsize`` long.
    record : _TensorRecord
        The tensor.
    big_endian : bool
        The file's byte order.
    name, path : str
        For messages.

    Returns
    -------
    numpy.ndarray
        float32 for float dtypes, the integer type otherwise; C-contiguous, owning its memory.

    Raises
    ------
    FormatError
        The tensor passes the end of its storage.
    """
    dtype = record.dtype
    byte_start, capacity, numel = _check_bounds(record, name, path)
    if numel == 0:
        return _convert(np.zeros(record.size, dtype.numpy), dtype.kind, record.size)
    np_type = dtype.numpy.newbyteorder(">" if big_endian else "<")
    base = np.frombuffer(buf, dtype=np_type, count=capacity, offset=byte_start)
    strides = tuple(s * dtype.itemsize if n > 1 else 0 for n, s in zip(record.size, record.stride))
    view = np.lib.stride_tricks.as_strided(
        base[record.offset :], shape=record.size, strides=strides, writeable=False
    )
    out = _convert(view, dtype.kind, record.size)
    if record.negate and dtype.kind != "bool":
        np.negative(out, out=out)
    return out


def _out_nbytes(record: _TensorRecord) -> int:
    """Bytes the converted array will take."""
    itemsize = 4 if _dtype_is_float(record.dtype) else record.dtype.itemsize
    return math.prod(record.size) * itemsize


def _dtype_is_float(dtype: _DType) -> bool:
    """Whether a dtype converts to float32."""
    return dtype.kind in ("float", "bfloat16")


def _materialize(entries, storages, load_storage, big_endian, path, budget) -> dict:
    """Turn the tensor records into numpy arrays, reading each storage once.

    Parameters
    ----------
    entries : list of (str, _TensorRecord)
        From :func:`_flatten`.
    storages : dict
        ``key -> (dtype, numel)`` from the unpickler.
    load_storage : callable
        ``load_storage(key, nbytes) -> bytes``: at least ``nbytes`` bytes of that storage; raises
        FormatError when it is missing or shorter.
    big_endian : bool
        The file's byte order.
    path : str
        For messages.
    budget : int
        Most bytes all the arrays together may take.

    Returns
    -------
    dict of str to numpy.ndarray
        In the order of ``entries``.

    Raises
    ------
    FormatError
        A missing or short storage, a tensor out of bounds, or arrays over the budget.
    """
    total = sum(_out_nbytes(record) for _, record in entries)
    if total > budget:
        raise FormatError(
            f"{path}: the tensors would take {total} bytes, more than the {budget} "
            "allowed for a file of this size"
        )
    by_storage: dict = {}
    for name, record in entries:
        by_storage.setdefault(record.storage.key, []).append((name, record))
    arrays = {}
    for key, group in by_storage.items():
        dtype, numel = storages[key]
        buf = load_storage(key, numel * dtype.itemsize, group[0][0])
        for name, record in group:
            arrays[name] = _to_array(buf, record, big_endian, name, path)
        del buf
    return {name: arrays[name] for name, _ in entries}


def _budget(file_size: int) -> int:
    """Most bytes of arrays a file of ``file_size`` bytes may expand to."""
    return _OUTPUT_BUDGET_BASE + _OUTPUT_BUDGET_PER_FILE_BYTE * file_size


# --------------------------------------------------------------------------------------------------
# zip format


def _has_member(zf: zipfile.ZipFile, name: str) -> bool:
    """Whether the archive has a member of that name."""
    try:
        zf.getinfo(name)
    except KeyError:
        return False
    return True


def _archive_prefix(zf: zipfile.ZipFile, path: str) -> str:
    """The ``<folder>/`` that holds ``data.pkl`` in a torch zip archive.

    Raises
    ------
    FormatError
        No ``<folder>/data.pkl``, or several.
    """
    prefixes = [n[: -len("data.pkl")] for n in zf.namelist() if n.endswith("/data.pkl")]
    prefixes = [p for p in prefixes if p.count("/") == 1]
    if len(prefixes) != 1:
        raise FormatError(
            f"{path}: a zip archive but not a torch.save file: expected one <folder>/data.pkl, "
            f"found {len(prefixes)}"
        )
    return prefixes[0]


def _read_member(zf: zipfile.ZipFile, name: str, path: str, archive_size: int) -> bytes:
    """Read one archive member whole (which also checks its CRC), refusing lying sizes.

    Parameters
    ----------
    zf : zipfile.ZipFile
        The archive.
    name : str
        Member name.
    path : str
        For messages.
    archive_size : int
        Size of the file, to judge the sizes the member claims.

    Returns
    -------
    bytes

    Raises
    ------
    FormatError
        The member claims more bytes than the file could hold, or is corrupt.
    """
    info = zf.getinfo(name)
    if info.compress_size > archive_size or (
        info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size
    ):
        raise FormatError(f"{path}: archive member {name!r} claims more bytes than the file holds")
    if info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 4096:
        raise FormatError(f"{path}: archive member {name!r} claims an impossible size")
    with zf.open(info) as member:
        data = member.read()
    if len(data) != info.file_size:
        raise FormatError(f"{path}: archive member {name!r} is truncated")
    return data


def _zip_byteorder(zf: zipfile.ZipFile, prefix: str, path: str, archive_size: int) -> bool:
    """Whether the archive's ``byteorder`` record says big-endian (absent means little).

    Raises
    ------
    FormatError
        A record other than ``little`` or ``big``.
    """
    name = prefix + "byteorder"
    if not _has_member(zf, name):
        return False
    value = _read_member(zf, name, path, archive_size).strip()
    if value not in (b"little", b"big"):
        raise FormatError(f"{path}: unknown byteorder record {value[:20]!r}")
    return value == b"big"


def _read_zip(fh, path: str, file_size: int) -> dict:
    """Read a torch zip archive (see the module docstring).

    Parameters
    ----------
    fh : binary file
        The open file.
    path : str
        For messages.
    file_size : int
        Its size.

    Returns
    -------
    dict of str to numpy.ndarray

    Raises
    ------
    FormatError
        Anything malformed, truncated, missing or hostile.
    """
    try:
        zf = zipfile.ZipFile(fh)
    except _MALFORMED as exc:
        raise FormatError(
            f"{path}: starts like a zip archive (torch.save) but is truncated or corrupt ({exc})"
        ) from None
    with zf:
        prefix = _archive_prefix(zf, path)
        big_endian = _zip_byteorder(zf, prefix, path, file_size)
        data = _read_member(zf, prefix + "data.pkl", path, file_size)
        obj, storages = _unpickle(data, path, "data.pkl")
        entries = _flatten(obj, path)

        def load_storage(key: str, nbytes: int, tensor_name: str):
            member = f"{prefix}data/{key}"
            if not _has_member(zf, member):
                raise FormatError(
                    f"{path}: tensor {tensor_name!r}: storage record {member!r} is missing"
                )
            raw = _read_member(zf, member, path, file_size)
            if len(raw) < nbytes:
                raise FormatError(
                    f"{path}: tensor {tensor_name!r}: storage {member!r} holds {len(raw)} bytes, "
                    f"its record says {nbytes}"
                )
            return memoryview(raw)[:nbytes]

        return _materialize(entries, storages, load_storage, big_endian, path, _budget(file_size))


# --------------------------------------------------------------------------------------------------
# legacy format


def _legacy_header(fh, path: str, file_size: int) -> bool:
    """Read the magic number, protocol version and sys_info pickles; return big-endianness.

    Raises
    ------
    FormatError
        Wrong magic or protocol version, or malformed sys_info.
    """
    magic, _ = _unpickle_from_stream(fh, file_size, path, "magic number", max_int_bits=128)
    if magic != TORCH_LEGACY_MAGIC:
        raise FormatError(f"{path}: not a torch.save file (wrong magic number)")
    version, _ = _unpickle_from_stream(fh, file_size, path, "protocol version")
    if version != LEGACY_PROTOCOL_VERSION:
        raise FormatError(f"{path}: unsupported torch legacy protocol version {version!r}")
    sys_info, _ = _unpickle_from_stream(fh, file_size, path, "sys_info")
    if not isinstance(sys_info, dict):
        raise FormatError(f"{path}: malformed sys_info record")
    little = sys_info.get("little_endian", True)
    if not isinstance(little, bool):
        raise FormatError(f"{path}: malformed sys_info record")
    return not little


def _legacy_storage_table(fh, keys, storages, big_endian, path, file_size) -> dict:
    """Locate each storage's bytes after the pickles, without reading them.

    Parameters
    ----------
    fh : binary file
        Positioned after the list of storage keys.
    keys : list of str
        The keys in file order.
    storages : dict
        ``key -> (dtype, numel)`` from the main pickle.
    big_endian : bool
        Byte order of the element counts.
    path : str
        For messages.
    file_size : int
        Size of the file; every count is checked against the bytes actually present.

    Returns
    -------
    dict
        ``key -> file offset of its bytes``.

    Raises
    ------
    FormatError
        Unknown or repeated keys, counts that disagree with the record or pass the end of the file.
    """
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise FormatError(f"{path}: malformed list of storage keys")
    table = {}
    for key in keys:
        if key not in storages or key in table:
            raise FormatError(f"{path}: storage key {key[:40]!r} is unknown or repeated")
        dtype, numel = storages[key]
        raw = fh.read(8)
        if len(raw) != 8:
            raise FormatError(f"{path}: truncated before the data of storage {key!r}")
        count = int.from_bytes(raw, "big" if big_endian else "little")
        nbytes = count * dtype.itemsize
        if count != numel or fh.tell() + nbytes > file_size:
            raise FormatError(
                f"{path}: storage {key!r} claims {count} elements of {dtype.name} "
                f"({nbytes} bytes); its record says {numel} and {file_size - fh.tell()} bytes "
                "remain in the file"
            )
        table[key] = fh.tell()
        fh.seek(nbytes, os.SEEK_CUR)
    return table


def _read_legacy(fh, path: str, file_size: int) -> dict:
    """Read a legacy ``torch.save`` stream (see the module docstring).

    Parameters
    ----------
    fh : binary file
        The open file, at offset 0.
    path : str
        For messages.
    file_size : int
        Its size.

    Returns
    -------
    dict of str to numpy.ndarray

    Raises
    ------
    FormatError
        Anything malformed, truncated, missing or hostile.
    """
    big_endian = _legacy_header(fh, path, file_size)
    obj, storages = _unpickle_from_stream(fh, file_size, path, "the saved object")
    keys, _ = _unpickle_from_stream(fh, file_size, path, "the storage key list")
    table = _legacy_storage_table(fh, keys, storages, big_endian, path, file_size)
    entries = _flatten(obj, path)

    def load_storage(key: str, nbytes: int, tensor_name: str) -> bytes:
        if key not in table:
            raise FormatError(
                f"{path}: tensor {tensor_name!r}: the data of storage {key!r} is missing"
            )
        fh.seek(table[key])
        return fh.read(nbytes)

    return _materialize(entries, storages, load_storage, big_endian, path, _budget(file_size))


# --------------------------------------------------------------------------------------------------


def read_torch_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the tensors of a file written by ``torch.save``, without torch and without running code.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.pt``/``.pth``/``.bin`` file in torch's zip format or its legacy format, holding a
        state dict or a (nested) checkpoint dict.

    Returns
    -------
    dict of str to numpy.ndarray
        Tensor name -> array, in the file's order. Nested dicts give dotted names
        (``{"model": sd}`` -> ``"model.weight_ih_l0"``); list items are named by their index;
        non-tensor values are dropped. Float tensors (float32/64/16, bfloat16) come back as
        float32, integer and bool tensors keep their type. Every array is a C-contiguous copy
        owning its memory, whatever the saved tensor's strides, offset or byte order.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    FormatError
        (a ``ValueError``) The file is empty, truncated, corrupt, not a torch file, holds something
        other than tensors and plain containers (e.g. a pickled module or any other class), or a
        tensor does not fit its storage. The message names the file and, where known, the tensor.
    """
    name = check_regular_file(path)
    with open(name, "rb") as fh:
        file_size = os.fstat(fh.fileno()).st_size
        if file_size == 0:
            raise FormatError(f"{name}: the file is empty")
        head = fh.read(32)
        fh.seek(0)
        try:
            if is_torch_legacy_header(head):
                return _read_legacy(fh, name, file_size)
            if head.startswith(b"PK"):
                return _read_zip(fh, name, file_size)
        except FormatError:
            raise
        except _MALFORMED as exc:
            raise FormatError(f"{name}: malformed torch file: {exc}") from None
    raise FormatError(
        f"{name}: not a torch.save file (neither a zip archive with <folder>/data.pkl "
        "nor a legacy torch.save stream)"
    )
