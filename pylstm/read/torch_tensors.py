"""From an unpickled ``torch.save`` object to named numpy arrays.

:func:`flatten` lists the :class:`~pylstm.read.torch_objects.TensorRecord` placeholders of a
(nested) dict under dotted names; :func:`materialize` reads each storage once, checks every tensor
against the bytes actually present and copies it into a native, C-contiguous array, within a
memory budget (:func:`budget`) that grows with the file's size.
"""

from __future__ import annotations

import math

import numpy as np

from pylstm.errors import FormatError
from pylstm.read.torch_objects import DType, TensorRecord

__all__ = ["budget", "flatten", "materialize", "walk_limit"]

_MAX_DEPTH = 64
# Walking a pickled object graph visits each container item once per reference to the
# container; without shared containers that is at most one item per pickle byte. Shared
# containers (memo references) can multiply it: the walk may visit at most this many items.
_WALK_PER_PICKLE_BYTE = 4
_WALK_FLOOR = 100_000


_WALKED = (dict, list, tuple, TensorRecord)


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


def walk_limit(pickle_bytes: int) -> int:
    """Most container items :func:`flatten` may visit for a pickle of ``pickle_bytes`` bytes."""
    return _WALK_FLOOR + _WALK_PER_PICKLE_BYTE * max(int(pickle_bytes), 0)


def flatten(obj, path: str, max_items: int = _WALK_FLOOR) -> list:
    """List the tensors of a (nested) dict as ``(dotted name, TensorRecord)`` in pickle order.

    Dicts, lists and tuples are walked (list items are named by their index); every other leaf
    (numbers, strings, None, ...) is dropped, whatever its key.

    Parameters
    ----------
    obj : dict
        The unpickled top-level object.
    path : str
        For messages.
    max_items : int
        Most container items the walk may visit (:func:`walk_limit`); shared containers
        count once per reference.

    Returns
    -------
    list of (str, TensorRecord)

    Raises
    ------
    FormatError
        ``obj`` is not a dict, nesting deeper than 64 levels (or a cycle), an object graph too
        large to walk, a container or tensor under a key that is neither a string nor an int, or
        two tensors with the same dotted name.
    """
    if not isinstance(obj, dict):
        what = "a single tensor" if isinstance(obj, TensorRecord) else type(obj).__name__
        raise FormatError(
            f"{path}: expected a state dict (a dict of name -> tensor) at the top level, "
            f"found {what}"
        )
    found, names = [], set()
    stack = [("", obj, 0)]
    walked = 0
    while stack:
        prefix, node, depth = stack.pop()
        if isinstance(node, TensorRecord):
            if prefix in names:
                raise FormatError(f"{path}: two tensors are both named {prefix!r}")
            names.add(prefix)
            found.append((prefix, node))
            continue
        if depth >= _MAX_DEPTH:
            raise FormatError(f"{path}: containers nested deeper than {_MAX_DEPTH} (or a cycle)")
        # A container shared by many references (memo) is walked again for each: bound the
        # total work by the pickle's size, so that a small pickle cannot make a long walk.
        walked += len(node)
        if walked > max_items:
            raise FormatError(
                f"{path}: the pickled object graph is too large to walk (more than {max_items} "
                "container items, counting shared containers once per reference)"
            )
        items = node.items() if isinstance(node, dict) else enumerate(node)
        children = [(key, value) for key, value in items if isinstance(value, _WALKED)]
        for key, value in reversed(children):
            stack.append((_child_name(prefix, key, path), value, depth + 1))
    return found


def _check_bounds(record: TensorRecord, name: str, path: str) -> tuple:
    """Check that a tensor lies inside its storage window; compute where.

    Parameters
    ----------
    record : TensorRecord
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


def _to_array(buf, record: TensorRecord, big_endian: bool, name: str, path: str) -> np.ndarray:
    """Cut one tensor out of its storage bytes (bounds are checked before any view is made).

    Parameters
    ----------
    buf : bytes or memoryview
        The root storage's bytes, at least ``numel * itemsize`` long.
    record : TensorRecord
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


def _out_nbytes(record: TensorRecord) -> int:
    """Bytes the converted array will take."""
    itemsize = 4 if _dtype_is_float(record.dtype) else record.dtype.itemsize
    return math.prod(record.size) * itemsize


def _dtype_is_float(dtype: DType) -> bool:
    """Whether a dtype converts to float32."""
    return dtype.kind in ("float", "bfloat16")


def materialize(entries, storages, load_storage, big_endian, path, budget) -> dict:
    """Turn the tensor records into numpy arrays, reading each storage once.

    Parameters
    ----------
    entries : list of (str, TensorRecord)
        From :func:`flatten`.
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
        from pylstm.read.limits import over_limit

        raise over_limit(path, "the tensors", total, budget)
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


def budget(file_size: int) -> int:
    """Most bytes of arrays a file of ``file_size`` bytes may expand to (``max_bytes``)."""
    from pylstm.read.limits import max_bytes_for

    return max_bytes_for(file_size)
