"""What a ``torch.save`` pickle may name, and the small stand-in each allowed name becomes.

The restricted unpickler (:mod:`pylstm.read.safe_pickle`) resolves a global only through
:data:`ALLOWED_GLOBALS`: torch's tensor-rebuild functions, ``torch.Size``, the storage classes and
dtypes, and ``collections.OrderedDict``, each mapped to a stand-in defined here. Tensors become
:class:`TensorRecord` placeholders whose arguments are validated here; their bytes are cut out of
the storages later (:mod:`pylstm.read.torch_tensors`). Torch is never imported.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from pylstm.errors import FormatError

__all__ = [
    "ALLOWED_GLOBALS",
    "DType",
    "Invalid",
    "StorageRef",
    "TensorRecord",
    "TypeMarker",
    "check_int",
    "refusal",
]

_MAX_NDIM = 32


class Invalid(ValueError):
    """Malformed content found where the file name is not at hand; re-raised as FormatError."""


# --------------------------------------------------------------------------------------------------
# dtypes


class DType:
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
        DType("float32", "<f4", "float"),
        DType("float64", "<f8", "float"),
        DType("float16", "<f2", "float"),
        DType("bfloat16", "<u2", "bfloat16"),
        DType("int64", "<i8", "int"),
        DType("int32", "<i4", "int"),
        DType("int16", "<i2", "int"),
        DType("int8", "i1", "int"),
        DType("uint8", "u1", "int"),
        DType("bool", "u1", "bool"),
        DType("uint16", "<u2", "int"),
        DType("uint32", "<u4", "int"),
        DType("uint64", "<u8", "int"),
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
        raise Invalid(f"cannot set attribute {name!r} on {type(self).__name__}")

    def __setstate__(self, state):
        raise Invalid(f"pickle tries to set the state of {self!r}; refused")

    def _init(self, **fields):
        """Set the slots once, at construction."""
        for key, value in fields.items():
            object.__setattr__(self, key, value)


class _TypeMarker(_Frozen):
    """Stands for ``torch.FloatStorage`` & co. or for a ``torch.float32``-style dtype object."""

    __slots__ = ("dtype", "is_storage", "qualname")

    def __init__(self, qualname: str, dtype: DType, is_storage: bool):
        self._init(qualname=qualname, dtype=dtype, is_storage=is_storage)

    def __repr__(self):
        return self.qualname


class _StorageRef(_Frozen):
    """A storage named by a persistent id: root ``key``, and the window of it this id refers to."""

    __slots__ = ("dtype", "key", "numel", "view_numel", "view_offset")
    __hash__ = None

    def __init__(self, key: str, dtype: DType, numel: int, view_offset: int, view_numel: int):
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
            raise Invalid(f"unexpected OrderedDict state of type {type(state).__name__}")


# The names other modules use. The classes keep their private names because messages name the
# type of an unexpected pickled value (``... got _TensorRecord``).
TypeMarker = _TypeMarker
StorageRef = _StorageRef
TensorRecord = _TensorRecord


def check_int(value, what: str, minimum: int = 0) -> int:
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
    Invalid
        ``value`` is not an int or is too small.
    """
    if type(value) is not int:
        raise Invalid(f"{what} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise Invalid(f"{what} must be >= {minimum}, got {value}")
    return value


def _check_shape(values, what: str) -> tuple:
    """Return ``values`` as a tuple of non-negative ints (a size or a stride).

    Raises
    ------
    Invalid
        Not a tuple/list of ints >= 0, or more than 32 dimensions.
    """
    if not isinstance(values, (tuple, list)):
        raise Invalid(f"{what} must be a tuple, got {type(values).__name__}")
    if len(values) > _MAX_NDIM:
        raise Invalid(f"{what} has {len(values)} dimensions (at most {_MAX_NDIM} are read)")
    return tuple(check_int(v, what) for v in values)


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
    Invalid
        Any argument of the wrong type or out of range.
    """
    if not isinstance(storage, _StorageRef):
        raise Invalid(
            f"tensor storage must come from a storage record, got {type(storage).__name__}"
        )
    if dtype is None:
        tensor_dtype = storage.dtype
    elif isinstance(dtype, _TypeMarker) and not dtype.is_storage:
        tensor_dtype = dtype.dtype
    else:
        raise Invalid(f"tensor dtype must be a torch dtype, got {type(dtype).__name__}")
    size = _check_shape(size, "tensor size")
    stride = _check_shape(stride, "tensor stride")
    if len(size) != len(stride):
        raise Invalid(f"tensor size {size} and stride {stride} differ in length")
    negate = False
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise Invalid(f"tensor metadata must be a dict, got {type(metadata).__name__}")
        unknown = set(metadata) - {"neg", "conj"}
        if unknown:
            raise Invalid(f"unsupported tensor metadata {sorted(map(str, unknown))}")
        negate = bool(metadata.get("neg", False))
    offset = check_int(offset, "tensor storage offset")
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
        raise Invalid(f"Parameter data must be a tensor, got {type(data).__name__}")
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


ALLOWED_GLOBALS = _allowed_globals()


def refusal(path: str, module: str, name: str) -> FormatError:
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
