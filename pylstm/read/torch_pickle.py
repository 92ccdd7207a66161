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
and plain containers, each to a small stand-in (:mod:`pylstm.read.safe_pickle`,
:mod:`pylstm.read.torch_objects`): torch is never imported and no other callable is ever reached.
Tensors become ``TensorRecord`` placeholders while unpickling; their bounds are checked against the
storage bytes actually present before any numpy view is made (:mod:`pylstm.read.torch_tensors`).
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from pylstm.errors import FormatError
from pylstm.read.limits import Budget, max_bytes_for, read_zip_member
from pylstm.read.safe_pickle import BYTES_PER_OP, MALFORMED, unpickle, unpickle_from_stream
from pylstm.read.sniff import TORCH_LEGACY_MAGIC, check_regular_file, is_torch_legacy_header
from pylstm.read.torch_tensors import flatten, materialize, walk_limit

__all__ = ["read_torch_file"]

LEGACY_PROTOCOL_VERSION = 1001
# Deflate cannot compress better than about 1032:1; a member claiming more is lying.
_MAX_DEFLATE_RATIO = 1100


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


def _read_member(zf: zipfile.ZipFile, name: str, path: str, archive_size: int, budget) -> bytes:
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
    budget : pylstm.read.limits.Budget
        Bytes the members of this file may still inflate to (``max_bytes``).

    Returns
    -------
    bytes

    Raises
    ------
    FormatError
        The member claims more bytes than the file could hold or the limit allows, or is corrupt.
    """
    info = zf.getinfo(name)
    if info.compress_size > archive_size or (
        info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size
    ):
        raise FormatError(f"{path}: archive member {name!r} claims more bytes than the file holds")
    if info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 4096:
        raise FormatError(f"{path}: archive member {name!r} claims an impossible size")
    return read_zip_member(zf, name, budget)


def _zip_byteorder(zf: zipfile.ZipFile, prefix: str, path: str, archive_size: int, budget) -> bool:
    """Whether the archive's ``byteorder`` record says big-endian (absent means little).

    Raises
    ------
    FormatError
        A record other than ``little`` or ``big``.
    """
    name = prefix + "byteorder"
    if not _has_member(zf, name):
        return False
    value = _read_member(zf, name, path, archive_size, budget).strip()
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
    except (*MALFORMED, OSError) as exc:  # OSError: offsets before the start of the file
        raise FormatError(
            f"{path}: starts like a zip archive (torch.save) but is truncated or corrupt ({exc})"
        ) from None
    with zf:
        limit = max_bytes_for(file_size)
        inflated = Budget(path, limit)
        prefix = _archive_prefix(zf, path)
        big_endian = _zip_byteorder(zf, prefix, path, file_size, inflated)
        data = _read_member(zf, prefix + "data.pkl", path, file_size, inflated)
        obj, storages = unpickle(data, path, "data.pkl", max_ops=limit // BYTES_PER_OP)
        entries = flatten(obj, path, max_items=walk_limit(len(data)))

        def load_storage(key: str, nbytes: int, tensor_name: str):
            member = f"{prefix}data/{key}"
            if not _has_member(zf, member):
                raise FormatError(
                    f"{path}: tensor {tensor_name!r}: storage record {member!r} is missing"
                )
            raw = _read_member(zf, member, path, file_size, inflated)
            if len(raw) < nbytes:
                raise FormatError(
                    f"{path}: tensor {tensor_name!r}: storage {member!r} holds {len(raw)} bytes, "
                    f"its record says {nbytes}"
                )
            return memoryview(raw)[:nbytes]

        return materialize(entries, storages, load_storage, big_endian, path, limit)


# --------------------------------------------------------------------------------------------------
# legacy format


def _legacy_header(fh, path: str, file_size: int) -> bool:
    """Read the magic number, protocol version and sys_info pickles; return big-endianness.

    Raises
    ------
    FormatError
        Wrong magic or protocol version, or malformed sys_info.
    """
    magic, _ = unpickle_from_stream(fh, file_size, path, "magic number", max_int_bits=128)
    if magic != TORCH_LEGACY_MAGIC:
        raise FormatError(f"{path}: not a torch.save file (wrong magic number)")
    version, _ = unpickle_from_stream(fh, file_size, path, "protocol version")
    if version != LEGACY_PROTOCOL_VERSION:
        raise FormatError(f"{path}: unsupported torch legacy protocol version {version!r}")
    sys_info, _ = unpickle_from_stream(fh, file_size, path, "sys_info")
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
    max_ops = max_bytes_for(file_size) // BYTES_PER_OP
    obj, storages = unpickle_from_stream(fh, file_size, path, "the saved object", max_ops=max_ops)
    pickled = fh.tell()
    keys, _ = unpickle_from_stream(fh, file_size, path, "the storage key list", max_ops=max_ops)
    table = _legacy_storage_table(fh, keys, storages, big_endian, path, file_size)
    entries = flatten(obj, path, max_items=walk_limit(pickled))

    def load_storage(key: str, nbytes: int, tensor_name: str) -> bytes:
        if key not in table:
            raise FormatError(
                f"{path}: tensor {tensor_name!r}: the data of storage {key!r} is missing"
            )
        fh.seek(table[key])
        return fh.read(nbytes)

    return materialize(entries, storages, load_storage, big_endian, path, max_bytes_for(file_size))


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
        except (*MALFORMED, OSError) as exc:  # OSError: seeks to offsets a corrupt zip gives
            raise FormatError(f"{name}: malformed torch file: {exc}") from None
    raise FormatError(
        f"{name}: not a torch.save file (neither a zip archive with <folder>/data.pkl "
        "nor a legacy torch.save stream)"
    )
