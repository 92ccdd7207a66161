"""Weights are held once (issue 12): loading a state dict raises a fresh process's resident memory
by about the packed weights and nothing else of them. bench/weight_memory.py measures each case in
its own interpreter; LSTM(1024, 1024, num_layers=4) has 128 MiB of float32 weights."""

import importlib.util
import pathlib
import sys

import pytest

pytest.importorskip("torch")
if not sys.platform.startswith("linux"):
    pytest.skip("reads /proc/self/statm", allow_module_level=True)

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "bench" / "weight_memory.py"
spec = importlib.util.spec_from_file_location("weight_memory", SCRIPT)
weight_memory = importlib.util.module_from_spec(spec)
spec.loader.exec_module(weight_memory)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return weight_memory.write_files(str(tmp_path_factory.mktemp("weights")))


@pytest.mark.parametrize("kind", ["pt", "safetensors", "onnx"])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_load_holds_the_packed_weights_only(files, kind, precision):
    if kind not in files:
        pytest.skip(f"the package that writes .{kind} files is not installed")
    row = weight_memory.measure(files[kind], precision)
    # the targets: fp32 <= 1.15x, bf16 <= 0.6x, int8 <= 0.35x the float32 weight bytes
    # (measured 1.01x, 0.51x, 0.26x on 2026-11-30)
    assert row["ratio"] <= weight_memory.TARGETS[precision], row
