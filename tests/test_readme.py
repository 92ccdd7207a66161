"""Every ```python block of README.md runs when pasted in order, as a new user would paste them.

The blocks run one after the other in one namespace, in a child process started in an empty
folder (they write files such as ``lstm.pt``), with the installed pylstm. A block whose first
line is ``# needs: a CUDA GPU`` runs only where pylstm sees a CUDA device.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
_NEEDS_GPU = "# needs: a CUDA GPU"

# Run by the child: each block compiled with its index in the file name, so a traceback says
# which block failed.
_RUNNER = """
import json, sys
blocks = json.load(sys.stdin)
namespace = {"__name__": "__main__"}
for index, line, code in blocks:
    exec(compile(code, f"README.md block {index} (line {line})", "exec"), namespace)
print(f"ran {len(blocks)} blocks")
"""


def python_blocks(text: str) -> list:
    """``[(index, first line number, code)]`` of the ```python blocks of ``text``, in order."""
    blocks = []
    for index, match in enumerate(_BLOCK.finditer(text)):
        line = text.count("\n", 0, match.start(1)) + 1
        blocks.append((index, line, match.group(1)))
    return blocks


def _cuda_available() -> bool:
    import pylstm

    return bool(pylstm.info()["cuda_devices"])


def test_readme_has_python_blocks():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 4, "the README's quick starts are ```python blocks"


def _run_blocks(blocks, cwd) -> None:
    import json

    env = dict(os.environ, KERAS_BACKEND="torch", PYTHONWARNINGS="ignore")
    # Run outside the repository, so the child imports the installed pylstm.
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER],
        input=json.dumps(blocks),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"a README block failed:\n{proc.stderr[-4000:]}"
    assert f"ran {len(blocks)} blocks" in proc.stdout


def test_readme_python_blocks_run_in_order(tmp_path):
    """Every block a machine without a GPU can run."""
    blocks = python_blocks(README.read_text())
    _run_blocks([b for b in blocks if not b[2].startswith(_NEEDS_GPU)], tmp_path)


def test_readme_gpu_blocks_run_in_order(tmp_path):
    blocks = python_blocks(README.read_text())
    if not any(b[2].startswith(_NEEDS_GPU) for b in blocks):
        pytest.skip("the README has no GPU block")
    if not _cuda_available():
        pytest.skip("the README's GPU blocks need a CUDA device; pylstm sees none here")
    _run_blocks(blocks, tmp_path)
