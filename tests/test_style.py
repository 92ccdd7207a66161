"""Style is checked where the tests run (CI included): ruff's lint and format rules
(pyproject.toml [tool.ruff]) on every Python file of the repository. The test extra installs ruff;
without it (a bare `pip install pytest`) the checks are skipped, saying so."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYTHON_FOLDERS = ["pylstm", "tests", "fuzz", "bench", "tools", "build_backend", "setup.py"]


def ruff(*args):
    exe = shutil.which("ruff") or shutil.which(
        "ruff", path=str(pathlib.Path(sys.executable).parent)
    )
    if exe is None:
        pytest.skip("ruff is not installed (pip install '.[test]' installs it)")
    folders = [f for f in PYTHON_FOLDERS if (ROOT / f).exists()]
    return subprocess.run([exe, *args, *folders], cwd=ROOT, capture_output=True, text=True)


def test_ruff_lint_is_clean():
    done = ruff("check", "--no-cache")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_ruff_format_is_clean():
    done = ruff("format", "--check", "--no-cache")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
