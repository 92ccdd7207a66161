"""C++/CUDA style is checked where the tests run (CI included): every C++, CUDA and C header of
the repository (cpp/, cuda/, pylstm/include/) is as clang-format (.clang-format) writes it. The
test extra installs clang-format, pinned (formatting changes between major versions); without it
the check is skipped, saying so. Python style: tests/test_style.py."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDERS = ["cpp", "cuda", "pylstm/include"]
SUFFIXES = {".c", ".h", ".cc", ".cpp", ".hpp", ".cu", ".cuh"}


def clang_format():
    exe = shutil.which("clang-format") or shutil.which(
        "clang-format", path=str(pathlib.Path(sys.executable).parent)
    )
    if exe is None:
        pytest.skip("clang-format is not installed (pip install '.[test]' installs it)")
    return exe


def sources():
    return sorted(
        str(path.relative_to(ROOT))
        for folder in FOLDERS
        for path in (ROOT / folder).rglob("*")
        if path.suffix in SUFFIXES and path.is_file()
    )


def test_sources_found():
    files = sources()
    assert "cpp/include/pylstm/backend.hpp" in files and any(f.endswith(".cu") for f in files)


def test_clang_format_is_clean():
    exe = clang_format()
    done = subprocess.run(
        [exe, "--dry-run", "--Werror", *sources()], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-6000:]
