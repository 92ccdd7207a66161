"""The CUDA backend as a build and runtime option, on any machine (no GPU needed):

* ``pylstm.info()`` reports ``cuda_compiled``, ``cuda_devices`` and, without a device, why;
* asking for ``device="cuda"`` where it cannot work raises ``pylstm.DeviceError`` saying why
  (not compiled, cuBLAS missing, no driver, no GPU), and importing pylstm never loads CUDA;
* precisions are checked per device;
* the build backend adds the cuBLAS wheel to the build requirements exactly when nvcc is there
  and its toolkit has no cuBLAS;
* opt-in (``PYLSTM_TEST_CUDA_BUILD=1``, minutes): CMake compiles the CUDA module with nvcc.
  ``PYLSTM_EXPECT_CUDA=1`` asserts that the installed pylstm has the CUDA backend (for CI
  machines with nvcc).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from child_process import child_env

import pylstm
from pylstm.runtime.system import cuda_status

ROOT = Path(__file__).resolve().parent.parent


def test_info_reports_cuda():
    info = pylstm.info()
    assert isinstance(info["cuda_compiled"], bool)
    assert isinstance(info["cuda_devices"], list)
    assert isinstance(info["cuda_status"], str)
    assert bool(info["cuda_devices"]) != bool(info["cuda_status"])
    if not info["cuda_compiled"]:
        assert "built without the CUDA backend" in info["cuda_status"]


def test_import_does_not_load_cuda(tmp_path):
    code = "import sys, pylstm; pylstm.from_arrays; print('pylstm._cuda' in sys.modules)"
    out = subprocess.run(  # the same pylstm as this process, not the source tree in the cwd
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=child_env(),
        cwd=tmp_path,
    )
    assert out.stdout.strip() == "False"


@pytest.mark.skipif(bool(cuda_status()[0]), reason="this machine has a CUDA device")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_device_error_says_why(device):
    torch = pytest.importorskip("torch")
    with pytest.raises(pylstm.DeviceError) as err:
        pylstm.from_torch(torch.nn.LSTM(3, 4), device=device)
    message = str(err.value)
    assert repr(device) in message
    assert any(
        why in message
        for why in (
            "built without the CUDA backend",
            "could not be loaded",
            "no CUDA device is available",
        )
    ), message
    if pylstm.info()["cuda_compiled"] and "could not be loaded" not in message:
        assert any(w in message for w in ("driver", "GPU", "CUDA-capable")), message


def test_device_names_are_checked():
    torch = pytest.importorskip("torch")
    for bad in ("cuda:x", "cuda:", "gpu"):
        with pytest.raises(ValueError, match="device"):
            pylstm.from_torch(torch.nn.GRU(3, 4), device=bad)


def test_precision_per_device():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=r"fp32, bf16, int8.*fp16 is for device='cuda'"):
        pylstm.from_torch(torch.nn.LSTM(3, 4), precision="fp16")
    from pylstm.runtime.engine import check_precision

    assert check_precision("fp16", "cuda:0") == "fp16"
    with pytest.raises(ValueError, match="int8 weights are CPU-only"):
        check_precision("int8", "cuda:0")


@pytest.mark.skipif(os.environ.get("PYLSTM_EXPECT_CUDA") != "1", reason="PYLSTM_EXPECT_CUDA!=1")
def test_cuda_backend_compiled():
    assert pylstm.info()["cuda_compiled"], "this pylstm was expected to have the CUDA backend"


# -- the build backend ---------------------------------------------------------------------


def load_build_backend():
    spec = importlib.util.spec_from_file_location(
        "pylstm_build", ROOT / "build_backend" / "pylstm_build.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_nvcc(tmp_path, release: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    nvcc = bin_dir / "nvcc"
    nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.1'\n")
    nvcc.chmod(0o755)
    return nvcc


def test_build_backend_cublas_requirement(tmp_path, monkeypatch):
    pytest.importorskip("setuptools")
    backend = load_build_backend()
    for var in ("CUDACXX", "CUDA_HOME", "CUDA_PATH", "PYLSTM_CUDA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(backend, "_toolkit_has_cublas", lambda nvcc: False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert backend.cublas_requirement() == []  # no nvcc: CPU-only build
    nvcc = fake_nvcc(tmp_path, "13.0")
    monkeypatch.setenv("PATH", str(nvcc.parent))
    # AUTO with nvcc: CUDA (and so cuBLAS) only where an NVIDIA driver is present
    monkeypatch.setattr(backend, "_nvidia_driver_present", lambda: False)
    assert backend.cuda_decision()[0] == "OFF"
    assert backend.cublas_requirement() == []
    monkeypatch.setattr(backend, "_nvidia_driver_present", lambda: True)
    assert backend.cuda_decision()[0] == "ON"
    assert backend.cublas_requirement() == ["nvidia-cublas>=13,<14"]
    monkeypatch.setenv("PYLSTM_CUDA", "off")
    assert backend.cublas_requirement() == []
    monkeypatch.setenv("PYLSTM_CUDA", "ON")
    monkeypatch.setattr(backend, "_nvidia_driver_present", lambda: False)  # ON: a driver or not
    monkeypatch.setattr(backend, "_cuda_major", lambda nvcc: 12)
    assert backend.cublas_requirement() == ["nvidia-cublas-cu12"]
    monkeypatch.setattr(backend, "_toolkit_has_cublas", lambda nvcc: True)
    assert backend.cublas_requirement() == []  # the toolkit's own cuBLAS


# -- compiling (opt-in: minutes) -------------------------------------------------------------


@pytest.mark.skipif(
    os.environ.get("PYLSTM_TEST_CUDA_BUILD") != "1", reason="PYLSTM_TEST_CUDA_BUILD!=1 (minutes)"
)
def test_cmake_builds_the_cuda_module(tmp_path):
    if shutil.which("nvcc") is None or shutil.which("cmake") is None:
        pytest.skip("needs nvcc and cmake on the PATH")
    pybind11 = pytest.importorskip("pybind11")
    out_dir = tmp_path / "out"
    configure = [
        "cmake",
        "-S",
        str(ROOT),
        "-B",
        str(tmp_path / "build"),
        "-DPYLSTM_CUDA=ON",
        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
        f"-DPython_EXECUTABLE={sys.executable}",
        f"-DPYLSTM_OUTPUT_DIR={out_dir}",
    ]
    if shutil.which("ninja"):
        configure.append("-GNinja")
    subprocess.run(configure, check=True, capture_output=True)
    subprocess.run(
        [
            "cmake",
            "--build",
            str(tmp_path / "build"),
            "-j",
            str(os.cpu_count() or 2),
            "--target",
            "_cuda",
        ],
        check=True,
        capture_output=True,
    )
    built = list(out_dir.glob("_cuda*.so"))
    assert built, "no _cuda module was built"
    if shutil.which("readelf"):
        dyn = subprocess.run(["readelf", "-d", str(built[0])], capture_output=True, text=True)
        assert "libcublas.so" in dyn.stdout and "$ORIGIN/../nvidia" in dyn.stdout
        assert "libcudart" not in dyn.stdout  # the CUDA runtime is linked statically
