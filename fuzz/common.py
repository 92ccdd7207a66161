"""Shared by the harnesses: where files go, which exceptions are allowed, how a finding looks."""

from __future__ import annotations

import os
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
FINDINGS = os.path.join(HERE, "findings")

_TMP = None


def tmp_dir() -> str:
    """A private folder for the files a harness writes (on tmpfs when there is one)."""
    global _TMP
    if _TMP is None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        _TMP = tempfile.mkdtemp(prefix="pylstm-fuzz-", dir=base)
    return _TMP


def write_case(data: bytes, name: str) -> str:
    """Write ``data`` to ``name`` in the private folder; return its path."""
    path = os.path.join(tmp_dir(), name)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def allowed_load_errors():
    """What ``pylstm.load`` may raise on a bad file (API.md, Errors)."""
    return (ValueError, NotImplementedError)


def load_bytes(data: bytes, name: str, **options):
    """``pylstm.load`` of ``data`` saved as ``name``; None when it raised an allowed error.

    Anything else propagates: that is a finding.
    """
    import pylstm

    path = write_case(data, name)
    try:
        return pylstm.load(path, max_bytes=64 << 20, **options)
    except allowed_load_errors():
        return None
