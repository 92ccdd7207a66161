"""Load a pickle with an allow-list of globals, after scanning it without building anything.

Each pickle is first walked opcode by opcode (:func:`_scan_pickle`): truncation, garbage, refused
globals, absurd memo indices or integers and the extension-registry opcodes are caught before
anything is built. It is then loaded by :class:`_RestrictedUnpickler`, whose ``find_class`` returns
only the stand-ins of :data:`pylstm.read.torch_objects.ALLOWED_GLOBALS` and whose
``persistent_load`` turns torch storage ids into :class:`~pylstm.read.torch_objects.StorageRef`.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import struct
import zipfile
import zlib

from pylstm.errors import FormatError
from pylstm.read.torch_objects import (
    ALLOWED_GLOBALS,
    Invalid,
    StorageRef,
    TypeMarker,
    check_int,
    refusal,
)

__all__ = ["MALFORMED", "unpickle", "unpickle_from_stream"]

# Errors that malformed input can raise from the standard library or numpy; all become FormatError.
MALFORMED = (
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


# Most opcodes one pickle may hold, unless the caller gives a limit (max_ops): walking them costs
# about a microsecond each, and a deflated archive member can hold a few hundred million.
DEFAULT_MAX_OPS = 1_000_000
# The readers give max_bytes // BYTES_PER_OP (a torch state dict's pickle holds a few dozen
# opcodes per tensor, whose data is far larger).
BYTES_PER_OP = 256


def _scan_pickle(
    stream, path: str, what: str, max_int_bits: int, max_ops: int | None = None
) -> int:
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
    max_ops : int, optional
        Most opcodes allowed (:data:`DEFAULT_MAX_OPS` when None).

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
    max_ops = DEFAULT_MAX_OPS if max_ops is None else max_ops
    try:
        for opcode, arg, _pos in pickletools.genops(stream):
            n_ops += 1
            if n_ops > max_ops:
                raise FormatError(
                    f"{path}: {what} holds more than {max_ops} pickle opcodes (max_bytes // "
                    f"{BYTES_PER_OP}); if you trust the file, pass pylstm.load(path, "
                    "max_bytes=N) with a larger N"
                )
            name = opcode.name
            if name == "GLOBAL":
                module, _, attr = arg.partition(" ")
                if (module, attr) not in ALLOWED_GLOBALS:
                    raise refusal(path, module, attr)
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
    except MALFORMED as exc:
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
        stand_in = ALLOWED_GLOBALS.get((module, name))
        if stand_in is None:
            raise refusal(self.path, str(module), str(name))
        return stand_in

    def persistent_load(self, pid):
        """Turn a torch storage persistent id into a :class:`StorageRef`."""
        if not isinstance(pid, tuple) or not pid:
            raise Invalid(f"unexpected persistent id of type {type(pid).__name__}")
        typename = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if typename == "module":
            raise FormatError(
                f"{self.path}: the file holds a whole pickled module (torch.save(module)); "
                "save module.state_dict() instead"
            )
        if typename != "storage" or len(pid) not in (5, 6):
            raise Invalid(f"unexpected persistent id {str(typename)[:40]!r} of {len(pid)} fields")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, TypeMarker) or not storage_type.is_storage:
            raise Invalid(f"storage type must be a torch storage class, got {storage_type!r}")
        if isinstance(key, int) and not isinstance(key, bool):
            key = str(key)
        if not isinstance(key, str) or len(key) > 256:
            raise Invalid("storage key must be a short string")
        numel = check_int(numel, f"element count of storage {key!r}")
        known = self.storages.setdefault(key, (storage_type.dtype, numel))
        if known != (storage_type.dtype, numel):
            raise Invalid(f"storage {key!r} is described twice, differently")
        view_offset, view_numel = 0, numel
        if view is not None:
            if not isinstance(view, tuple) or len(view) != 3:
                raise Invalid(f"storage {key!r}: malformed view metadata")
            view_offset = check_int(view[1], f"view offset of storage {key!r}")
            view_numel = check_int(view[2], f"view size of storage {key!r}")
            if view_offset + view_numel > numel:
                raise Invalid(
                    f"storage {key!r}: view [{view_offset}, {view_offset + view_numel}) "
                    f"lies outside its {numel} elements"
                )
        return StorageRef(key, storage_type.dtype, numel, view_offset, view_numel)


def unpickle(
    data: bytes,
    path: str,
    what: str,
    max_int_bits: int = 64,
    scanned: bool = False,
    max_ops: int | None = None,
):
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
    max_ops : int, optional
        Most opcodes allowed.

    Returns
    -------
    obj : object
        The unpickled object, tensors as :class:`~pylstm.read.torch_objects.TensorRecord`.
    storages : dict
        ``key -> (dtype, numel)`` for every storage the pickle refers to.

    Raises
    ------
    FormatError
        Malformed, truncated or hostile pickle.
    """
    if not scanned:
        _scan_pickle(_BoundedReader(io.BytesIO(data), len(data)), path, what, max_int_bits, max_ops)
    unpickler = _RestrictedUnpickler(data, path, what)
    try:
        obj = unpickler.load()
    except FormatError:
        raise
    except MALFORMED as exc:
        raise FormatError(f"{path}: cannot unpickle {what}: {exc}") from None
    return obj, unpickler.storages


def unpickle_from_stream(
    fh, end: int, path: str, what: str, max_int_bits: int = 64, max_ops: int | None = None
):
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
    max_ops : int, optional
        Most opcodes allowed.

    Returns
    -------
    obj, storages
        As :func:`unpickle`.

    Raises
    ------
    FormatError
        Malformed, truncated or hostile pickle.
    """
    start = fh.tell()
    stop = _scan_pickle(_BoundedReader(fh, end), path, what, max_int_bits, max_ops)
    fh.seek(start)
    data = fh.read(stop - start)
    return unpickle(data, path, what, max_int_bits, scanned=True)
