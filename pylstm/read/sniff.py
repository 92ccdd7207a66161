"""Recognise a weights file by its content (and, for ONNX only, by its suffix as a fallback).

Recognised formats and how each is told apart, in the order they are tried:

* ``"hdf5"``: the HDF5 signature ``\\x89HDF\\r\\n\\x1a\\n`` at offset 0 (or at 512, 1024 or 2048,
  where HDF5 places it after a user block).
* ``"torch-legacy"``: a ``torch.save(..., _use_new_zipfile_serialization=False)`` stream, which starts
  with a pickle of the magic number ``0x1950a86a20f9469cfc6c`` (``\\x80\\x02\\x8a\\x0a`` + 10 bytes
  little-endian for the default protocol 2; protocols 3 to 5, with an optional ``FRAME``, also match).
* ``"torch-zip"``: a zip archive holding ``<folder>/data.pkl`` (the default ``torch.save`` format;
  the folder name varies). A zip whose directory cannot be read (e.g. a truncated file) also counts
  when its first member, which torch always writes first, is ``<folder>/data.pkl``, so that the
  reader can say what is wrong with it.
* ``"keras"``: a zip archive holding ``config.json`` and ``model.weights.h5`` (a Keras 3 ``.keras``).
* ``"safetensors"``: an 8-byte little-endian header length of at most 100 MB, then ``{`` (the
  reader checks that the header fits the file).
* ``"onnx"``: a protobuf ``ModelProto`` whose first field is ``ir_version`` (tag byte ``0x08``) and
  whose top-level fields, walked without decoding them, are well formed, end exactly at the end of
  the file and include ``graph`` (field 7). Protobuf has no signature, so a file with the ``.onnx``
  suffix is also accepted as ONNX when nothing else matched.
"""

from __future__ import annotations

import errno
import os
import struct
import zipfile

from pylstm.errors import FormatError

FORMATS = ("torch-zip", "torch-legacy", "safetensors", "keras", "hdf5", "onnx")

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_MAGIC_BYTES = TORCH_LEGACY_MAGIC.to_bytes(10, "little")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_HDF5_OFFSETS = (0, 512, 1024, 2048)
_ONNX_MAX_FIELDS = 100_000
_SAFETENSORS_MAX_HEADER = 100_000_000


def check_regular_file(path) -> str:
    """Return ``path`` as a string after checking that it names an existing regular file.

    Parameters
    ----------
    path : str or os.PathLike
        The file to check.

    Returns
    -------
    str
        ``os.fspath(path)``.

    Raises
    ------
    FileNotFoundError
        Nothing exists at ``path``.
    FormatError
        ``path`` is a directory or another non-regular file.
    """
    name = os.fspath(path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if not os.path.exists(name):
        raise FileNotFoundError(errno.ENOENT, "No such file", name)
    if os.path.isdir(name):
        raise FormatError(f"{name}: is a directory; pylstm reads a single weights file")
    if not os.path.isfile(name):
        raise FormatError(f"{name}: is not a regular file")
    return name


def is_torch_legacy_header(head: bytes) -> bool:
    """Tell whether ``head`` starts with the pickled torch legacy magic number.

    Parameters
    ----------
    head : bytes
        The first bytes of a file (at least 23 for protocols 4 and 5).

    Returns
    -------
    bool
        True for ``PROTO n`` (2 to 5), an optional ``FRAME`` and ``LONG1`` of the 10-byte magic.
    """
    if len(head) < 14 or head[0] != 0x80 or not 2 <= head[1] <= 5:
        return False
    pos = 2
    if head[pos] == 0x95:  # FRAME opcode + 8-byte length (protocol 4 and 5)
        pos += 9
    return head[pos : pos + 12] == b"\x8a\x0a" + _MAGIC_BYTES


def _is_hdf5(fh, size: int) -> bool:
    """Look for the HDF5 signature at the offsets where the format allows it."""
    for offset in _HDF5_OFFSETS:
        if offset + len(_HDF5_SIGNATURE) > size:
            break
        fh.seek(offset)
        if fh.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
            return True
    return False


def _is_safetensors(head: bytes) -> bool:
    """An 8-byte little-endian header length of at most 100 MB, followed by ``{``."""
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 2 <= header_len <= _SAFETENSORS_MAX_HEADER and head[8:9] == b"{"


def _is_torch_data_pkl(name: str) -> bool:
    """Whether an archive member name is ``<folder>/data.pkl``."""
    return name.count("/") == 1 and name.endswith("/data.pkl") and name != "/data.pkl"


def _first_member_name(head: bytes) -> str:
    """The name in the zip local file header at the start of ``head`` ('' if there is none)."""
    if len(head) < 30 or not head.startswith(b"PK\x03\x04"):
        return ""
    (name_len,) = struct.unpack("<H", head[26:28])
    return head[30 : 30 + name_len].decode("utf-8", "replace")


def _zip_kind(fh, head: bytes) -> str | None:
    """Classify a zip archive as ``"torch-zip"`` or ``"keras"``; None for another archive."""
    try:
        with zipfile.ZipFile(fh) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, struct.error):
        # A damaged archive: its first member still says what it was, so that the reader can
        # report "truncated" rather than "unknown format".
        first = _first_member_name(head)
        if _is_torch_data_pkl(first):
            return "torch-zip"
        return "keras" if first in ("metadata.json", "config.json") else None
    if any(_is_torch_data_pkl(n) for n in names):
        return "torch-zip"
    if "config.json" in names and "model.weights.h5" in names:
        return "keras"
    return None


def _read_varint(fh, limit: int) -> int | None:
    """Read one protobuf varint of at most 10 bytes; None when malformed or past ``limit``."""
    value = 0
    for shift in range(0, 70, 7):
        if fh.tell() >= limit:
            return None
        byte = fh.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
    return None


def _is_onnx(fh, size: int) -> bool:
    """Walk the top-level protobuf fields of a would-be ``ModelProto`` (see the module docstring)."""
    fh.seek(0)
    if fh.read(1) != b"\x08":
        return False
    fh.seek(0)
    seen_graph = False
    for _ in range(_ONNX_MAX_FIELDS):
        if fh.tell() == size:
            return seen_graph
        key = _read_varint(fh, size)
        if key is None or key >> 3 == 0:
            return False
        field, wire = key >> 3, key & 7
        if wire == 0:
            if _read_varint(fh, size) is None:
                return False
        elif wire == 1 or wire == 5:
            fh.seek(fh.tell() + (8 if wire == 1 else 4))
        elif wire == 2:
            length = _read_varint(fh, size)
            if length is None or fh.tell() + length > size:
                return False
            fh.seek(fh.tell() + length)
            seen_graph = seen_graph or field == 7
        else:
            return False
        if fh.tell() > size:
            return False
    return False


def detect_format(path: str | os.PathLike) -> str:
    """Recognise the format of a weights file from its content.

    Parameters
    ----------
    path : str or os.PathLike
        The file to examine. Only its first bytes, its zip directory or its top-level protobuf
        fields are read.

    Returns
    -------
    str
        One of ``"torch-zip"``, ``"torch-legacy"``, ``"safetensors"``, ``"keras"``, ``"hdf5"``,
        ``"onnx"`` (see the module docstring for how each is recognised).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    FormatError
        ``path`` is a directory, the file is empty, or its content matches none of the formats;
        the message names the file and lists the formats recognised.
    """
    name = check_regular_file(path)
    with open(name, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise FormatError(f"{name}: the file is empty")
        head = fh.read(512)
        if _is_hdf5(fh, size):
            return "hdf5"
        if is_torch_legacy_header(head):
            return "torch-legacy"
        if head.startswith(b"PK"):
            kind = _zip_kind(fh, head)
            if kind is not None:
                return kind
        if _is_safetensors(head):
            return "safetensors"
        if _is_onnx(fh, size):
            return "onnx"
    if name.lower().endswith(".onnx"):
        return "onnx"
    raise FormatError(
        f"{name}: unrecognised file format; pylstm reads {', '.join(FORMATS)} "
        "(torch.save zip or legacy, .safetensors, .keras, .h5, .onnx)"
    )
