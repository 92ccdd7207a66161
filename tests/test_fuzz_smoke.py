"""A short run of every fuzz harness (fuzz/), as CI runs it: a fixed number of executions each,
with atheris (coverage-guided, libFuzzer); skipped when atheris is not installed (the pure-Python
driver, ``python -m fuzz run --driver random``, can be run by hand). A harness fails on any undocumented exception, crash, hang (30 s per input) or a
process over 4 GiB. The HDF5 harnesses read each input through a child process first
(pylstm/read/hdf5_probe.py, a fork per input), which bounds their speed: they run fewer
executions."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = {"h5": 500, "keras": 1000}
DEFAULT_RUNS = 2000

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("safetensors")


def _driver() -> str:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return "random"
    return "atheris"


@pytest.fixture(scope="module")
def corpus():
    if not os.path.isdir(os.path.join(ROOT, "fuzz", "corpus")):
        subprocess.run([sys.executable, "-m", "fuzz", "seeds"], cwd=ROOT, check=True)


@pytest.mark.parametrize(
    "harness", ["torch_zip", "torch_legacy", "safetensors", "h5", "keras", "onnx", "call"]
)
def test_fuzz_harness_smoke(corpus, harness):
    if _driver() == "random":
        pytest.skip(
            "atheris is not installed (pip install atheris); without it run python -m fuzz run --driver random"
        )
    runs = RUNS.get(harness, DEFAULT_RUNS)
    cmd = [sys.executable, "-m", "fuzz", "run", "--harness", harness, "--runs", str(runs)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    # libFuzzer may count one execution more than -runs (its initial empty input)
    executed = re.search(r"(\d+) executions", done.stdout)
    assert executed and int(executed.group(1)) >= runs, done.stdout
