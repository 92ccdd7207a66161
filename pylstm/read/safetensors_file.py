"""Read ``.safetensors`` files with the standard library and numpy only.

Layout: an 8-byte little-endian header length ``N``; ``N`` bytes of UTF-8 JSON
``{name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}``;
then the data buffer, which ``begin``/``end`` index (little-endian, C order). Everything in the
header is checked against the bytes actually present before anything is allocated.
"""

from __future__ import annotations

import json
import math
import os
import struct

import numpy as np

from pylstm.errors import FormatError
from pylstm.read.sniff import check_regular_file

__all__ = ["read_safetensors"]

# The safetensors library itself refuses headers over 100 MB.
_MAX_HEADER_BYTES = 100_000_000
_MAX_NDIM = 32

# safetensors dtype -> (little-endian numpy type, kind); kinds as in torch_pickle.
_DTYPES = {
    "F64": ("<f8", "float"),
    "F32": ("<f4", "float"),
    "F16": ("<f2", "float"),
    "BF16": ("<u2", "bfloat16"),
    "I64": ("<i8", "int"),
    "I32": ("<i4", "int"),
    "I16": ("<i2", "int"),
    "I8": ("i1", "int"),
    "U64": ("<u8", "int"),
    "U32": ("<u4", "int"),
    "U16": ("<u2", "int"),
    "U8": ("u1", "int"),
    "BOOL": ("u1", "bool"),
}


def _no_duplicate_keys(pairs):
    """``object_pairs_hook`` for json: refuse an object that repeats a key."""
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:60]!r}")
        result[key] = value
    return result


def _read_header(fh, path: str, file_size: int) -> tuple:
    """Read and parse the JSON header.

    Parameters
    ----------
    fh : binary file
        The open file, at offset 0.
    path : str
        For messages.
    file_size : int
        Size of the file.

    Returns
    -------
    header : dict
        The parsed header.
    data_start : int
        File offset of the data buffer.

    Raises
    ------
    FormatError
        Header length past the end of the file or over 100 MB, not UTF-8 JSON, not an object.
    """
    raw = fh.read(8)
    if len(raw) < 8:
        raise FormatError(f"{path}: too short for a safetensors file ({file_size} bytes)")
    (header_len,) = struct.unpack("<Q", raw)
    if header_len > file_size - 8 or header_len > _MAX_HEADER_BYTES:
        raise FormatError(
            f"{path}: safetensors header length {header_len} does not fit the file "
            f"({file_size} bytes)"
        )
    try:
        text = fh.read(header_len).decode("utf-8")
        header = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"{path}: safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise FormatError(f"{path}: safetensors header is not a JSON object")
    return header, 8 + header_len


def _check_entry(entry, name: str, path: str, data_len: int) -> tuple:
    """Validate one tensor's header entry against the data buffer.

    Parameters
    ----------
    entry : object
        The header value for ``name``.
    name, path : str
        For messages.
    data_len : int
        Bytes in the data buffer.

    Returns
    -------
    numpy_type : str
        Little-endian numpy type of the stored elements.
    kind : str
        ``"float"``, ``"bfloat16"``, ``"int"`` or ``"bool"``.
    shape : tuple of int
        The tensor's shape.
    begin : int
        Offset of its bytes in the data buffer.

    Raises
    ------
    FormatError
        Missing or mistyped fields, unsupported dtype, offsets outside the data buffer or
        disagreeing with shape x itemsize.
    """
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise FormatError(f"{where}: header entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise FormatError(
            f"{where}: unsupported dtype {str(dtype)[:20]!r} (read: {', '.join(_DTYPES)})"
        )
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_NDIM
        or not all(type(n) is int and n >= 0 for n in shape)
    ):
        raise FormatError(f"{where}: shape must be a list of non-negative integers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(n) is int for n in offsets)
    ):
        raise FormatError(f"{where}: data_offsets must be a list of two integers")
    begin, end = offsets
    if not 0 <= begin <= end <= data_len:
        raise FormatError(
            f"{where}: data_offsets [{begin}, {end}] lie outside the {data_len}-byte data buffer"
        )
    numpy_type, kind = _DTYPES[dtype]
    expected = math.prod(shape) * np.dtype(numpy_type).itemsize
    if end - begin != expected:
        raise FormatError(
            f"{where}: shape {shape} of {dtype} needs {expected} bytes, "
            f"data_offsets give {end - begin}"
        )
    return numpy_type, kind, tuple(shape), begin


def _check_metadata(metadata, path: str) -> None:
    """``__metadata__``, when present, must map strings to strings (as the safetensors library
    requires)."""
    if metadata is None:
        return
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise FormatError(f"{path}: safetensors __metadata__ must map strings to strings")


def _check_layout(entries, header: dict, path: str, data_len: int) -> None:
    """The tensors, sorted by offset, must tile the data buffer exactly: the first starts at 0,
    each starts where the previous ends (no overlap, no gap) and the last ends at the end of the
    file. These are the safetensors library's own rules; a file breaking them is refused there.

    Raises
    ------
    FormatError
        Naming the first tensor that overlaps or leaves a gap, or the unused bytes at the end.
    """
    spans = sorted((tuple(header[key]["data_offsets"]), key) for key, _ in entries)
    position = 0
    for (begin, end), key in spans:
        if begin != position:
            how = "overlaps the tensor before it" if begin < position else "leaves a gap before it"
            raise FormatError(
                f"{path}: tensor {key!r}: data_offsets [{begin}, {end}] {how} (expected it "
                f"to start at {position}); safetensors tensors must tile the data buffer"
            )
        position = end
    if position != data_len:
        raise FormatError(
            f"{path}: the tensors cover {position} bytes of the {data_len}-byte data buffer; "
            "safetensors files have no unused bytes after the last tensor"
        )


def _read_tensor(fh, numpy_type: str, kind: str, shape: tuple, start: int) -> np.ndarray:
    """Read one tensor's bytes straight into a new array and convert it.

    Parameters
    ----------
    fh : binary file
        The open file.
    numpy_type, kind : str
        From :func:`_check_entry`.
    shape : tuple of int
        The tensor's shape.
    start : int
        File offset of its bytes.

    Returns
    -------
    numpy.ndarray
        float32 for float kinds (bfloat16 shifted into the top half of a float32), the stored
        integer type otherwise, bool for BOOL; C-contiguous, native byte order, owning its memory.

    Raises
    ------
    FormatError
        Fewer bytes could be read than the header promised.
    """
    stored = np.empty(shape, dtype=np.dtype(numpy_type))
    fh.seek(start)
    if stored.nbytes and fh.readinto(stored.reshape(-1).view(np.uint8)) != stored.nbytes:
        raise EOFError("the file ended inside the tensor's data")
    if kind == "bfloat16":
        out = np.empty(shape, dtype=np.float32)
        bits = out.view(np.uint32)
        bits[...] = stored
        bits <<= 16
        return out
    if kind == "bool":
        return stored != 0
    if kind == "float":
        return stored.astype(np.float32, copy=False)  # float32 on a little-endian host: as read
    return stored.astype(stored.dtype.newbyteorder("="), copy=False)


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every tensor of a ``.safetensors`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    dict of str to numpy.ndarray
        Tensor name -> array, in the header's order (``__metadata__`` is skipped). F32, F64, F16
        and BF16 come back as float32; integer types keep their type; BOOL is bool. Arrays are
        C-contiguous and own their memory.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    FormatError
        (a ``ValueError``) Bad header length, bad JSON, an entry with a missing field, unsupported
        dtype, offsets outside the data buffer or disagreeing with the shape, or a truncated file.
        The message names the file and the tensor.
    """
    name = check_regular_file(path)
    with open(name, "rb") as fh:
        file_size = os.fstat(fh.fileno()).st_size
        if file_size == 0:
            raise FormatError(f"{name}: the file is empty")
        header, data_start = _read_header(fh, name, file_size)
        data_len = file_size - data_start
        entries = [
            (key, _check_entry(entry, key, name, data_len))
            for key, entry in header.items()
            if key != "__metadata__"
        ]
        _check_metadata(header.get("__metadata__"), name)
        _check_layout(entries, header, name, data_len)
        arrays = {}
        for key, (numpy_type, kind, shape, begin) in entries:
            try:
                arrays[key] = _read_tensor(fh, numpy_type, kind, shape, data_start + begin)
            except (EOFError, ValueError, MemoryError) as exc:
                raise FormatError(f"{name}: tensor {key!r}: {exc}") from None
    return arrays
