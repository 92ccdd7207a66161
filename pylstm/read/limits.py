"""Limits on the work an untrusted file may cause: ``pylstm.load(path, max_bytes=...)``.

Every reader asks :func:`max_bytes_for` how many bytes it may inflate, declare or allocate while
reading one file, and refuses with :class:`~pylstm.errors.FormatError` (naming the limit and how
to raise it) before allocating more. The limit is, unless ``max_bytes=`` says otherwise::

    max(256 MiB, min(64 x size, 4 GiB), 4 x size)

where ``size`` is the file's size in bytes (for ONNX, the model file plus the external data files
it names). So a small file may grow at most to 256 MiB, a larger one to 64 times its size up to
4 GiB, and a file larger than 1 GiB to 4 times its size: a real model's weights always fit, a
decompression bomb or a lying size field does not.

The limit is held in a context variable for the duration of one ``load`` (:func:`load_limit`), so
that readers called on their own (``read_torch_file(path)``) fall back to the default.
"""

from __future__ import annotations

import contextlib
import contextvars
import zipfile

from ..errors import FormatError

MiB = 1 << 20
GiB = 1 << 30
DEFAULT_FLOOR = 256 * MiB
DEFAULT_PER_FILE_BYTE = 64
DEFAULT_CAP = 4 * GiB
DEFAULT_LARGE_FILE_MULTIPLE = 4

_CURRENT = contextvars.ContextVar("pylstm_max_bytes", default=None)

HOW_TO_RAISE = "if you trust the file, pass a larger limit: pylstm.load(path, max_bytes=N)"


def default_max_bytes(size: int) -> int:
    """The default limit for a file of ``size`` bytes (see the module docstring)."""
    size = max(int(size), 0)
    return max(
        DEFAULT_FLOOR,
        min(DEFAULT_PER_FILE_BYTE * size, DEFAULT_CAP),
        DEFAULT_LARGE_FILE_MULTIPLE * size,
    )


def check_max_bytes(max_bytes) -> int | None:
    """Validate a ``max_bytes=`` argument: None or a positive int.

    Raises
    ------
    TypeError
        Not an int (bool included).
    ValueError
        Zero or negative.
    """
    if max_bytes is None:
        return None
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        raise TypeError(f"max_bytes must be an int or None, got {type(max_bytes).__name__}")
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    return int(max_bytes)


@contextlib.contextmanager
def load_limit(max_bytes):
    """Set the limit that readers see while the ``with`` block runs (None: the default)."""
    token = _CURRENT.set(check_max_bytes(max_bytes))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def explicit_max_bytes() -> int | None:
    """The ``max_bytes=`` given to the ``load`` in progress, or None."""
    return _CURRENT.get()


def max_bytes_for(size: int) -> int:
    """The limit for a file of ``size`` bytes: the explicit ``max_bytes=`` or the default."""
    explicit = _CURRENT.get()
    return explicit if explicit is not None else default_max_bytes(size)


def over_limit(path: str, what: str, need: int, limit: int) -> FormatError:
    """The FormatError for ``what`` needing ``need`` bytes past a limit of ``limit``."""
    return FormatError(
        f"{path}: {what} would take {need} bytes, more than the limit of {limit} bytes "
        f"(max_bytes; default max(256 MiB, min(64 x file size, 4 GiB), 4 x file size)); "
        f"{HOW_TO_RAISE}"
    )


class Budget:
    """Bytes still allowed while reading one file.

    Parameters
    ----------
    path : str
        Named in messages.
    limit : int
        The total allowed.
    """

    def __init__(self, path: str, limit: int):
        self.path = path
        self.limit = int(limit)
        self.used = 0

    def take(self, nbytes: int, what: str) -> None:
        """Account for ``nbytes`` more; FormatError when the total passes the limit."""
        nbytes = int(nbytes)
        if nbytes < 0 or self.used + nbytes > self.limit:
            raise over_limit(self.path, what, self.used + max(nbytes, 0), self.limit)
        self.used += nbytes


def read_zip_member(zf: zipfile.ZipFile, name: str, budget: Budget, what: str = "") -> bytes:
    """Read one archive member whole, never inflating more than ``budget`` allows.

    The member's declared size is checked first; the bytes are then read in pieces, so that a
    member that lies about its size still stops at the limit.

    Raises
    ------
    FormatError
        Over the limit, truncated, or corrupt (bad CRC, bad deflate stream, bad offsets).
    KeyError
        No such member.
    """
    info = zf.getinfo(name)
    what = what or f"archive member {name!r}"
    if info.file_size > budget.limit - budget.used:
        raise over_limit(
            budget.path, f"{what} (inflated)", budget.used + info.file_size, budget.limit
        )
    room = budget.limit - budget.used
    pieces, total = [], 0
    try:
        with zf.open(info) as member:
            while True:
                piece = member.read(min(1 << 20, room - total + 1))
                if not piece:
                    break
                total += len(piece)
                if total > room:
                    raise over_limit(
                        budget.path, f"{what} (inflated)", budget.used + total, budget.limit
                    )
                pieces.append(piece)
    except FormatError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, RuntimeError) as exc:
        raise FormatError(f"{budget.path}: {what} is corrupt or truncated ({exc})") from None
    except Exception as exc:  # zlib.error, lzma/bz2 errors
        raise FormatError(f"{budget.path}: {what} is corrupt ({exc})") from None
    budget.take(total, what)
    data = b"".join(pieces)
    if len(data) != info.file_size:
        raise FormatError(f"{budget.path}: {what} is truncated")
    return data
