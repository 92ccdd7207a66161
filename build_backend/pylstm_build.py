"""PEP 517 build backend of pylstm: setuptools' own, plus one build requirement that depends on
the machine. When the CUDA backend (pylstm._cuda) is built (:func:`cuda_decision`), it needs
cuBLAS headers and libraries; a toolkit without them gets them from NVIDIA's cuBLAS wheel for the
same CUDA major version (about 500 MB with its dependencies), installed into the isolated build
environment only (pyproject.toml: ``build-backend = "pylstm_build"``,
``backend-path = ["build_backend"]``). At run time cuBLAS comes from the ``cuda`` extra
(``pip install 'pylstm[cuda]'``) or the toolkit. setup.py asks :func:`cuda_decision` too, so the
download and the compilation follow one decision.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the PEP 517 hooks we do not change)


def _nvcc() -> str | None:
    """The CUDA compiler CMake would find: $CUDACXX, else nvcc on the PATH."""
    cudacxx = os.environ.get("CUDACXX")
    if cudacxx and os.path.exists(cudacxx):
        return cudacxx
    return shutil.which("nvcc")


def _cuda_major(nvcc: str) -> int | None:
    """CUDA major version of ``nvcc`` ("release 13.0" in ``nvcc --version``), or None."""
    try:
        out = subprocess.run(
            [nvcc, "--version"], capture_output=True, text=True, timeout=60, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+)\.", out)
    return int(m.group(1)) if m else None


def _toolkit_has_cublas(nvcc: str) -> bool:
    """Whether the toolkit of ``nvcc`` (or $CUDA_HOME / $CUDA_PATH) ships cublas_v2.h."""
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    roots.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for root in filter(None, roots):
        for inc in ("include", os.path.join("targets", "x86_64-linux", "include")):
            if os.path.exists(os.path.join(root, inc, "cublas_v2.h")):
                return True
    return False


def _nvidia_driver_present() -> bool:
    """Whether this machine has an NVIDIA driver (a GPU the CUDA backend could run on)."""
    import ctypes.util

    if os.path.exists("/proc/driver/nvidia/version"):
        return True
    return ctypes.util.find_library("cuda") is not None


def cuda_decision() -> tuple:
    """``("ON" | "OFF", reason)``: whether this build compiles the CUDA backend.

    ``PYLSTM_CUDA=ON`` builds it (and fails without nvcc), ``OFF`` never does. ``AUTO`` (the
    default) builds it when nvcc is found *and* this machine has an NVIDIA driver: compiling it
    adds minutes and a large cuBLAS download, useless where no GPU can run it. Wheels meant for
    GPU machines are built with ``PYLSTM_CUDA=ON``.
    """
    mode = os.environ.get("PYLSTM_CUDA", "AUTO").strip().upper() or "AUTO"
    if mode not in ("AUTO", "ON", "OFF"):
        raise ValueError(f"PYLSTM_CUDA must be AUTO, ON or OFF, got {mode!r}")
    if mode == "OFF":
        return "OFF", "PYLSTM_CUDA=OFF"
    if mode == "ON":
        return "ON", "PYLSTM_CUDA=ON"
    if _nvcc() is None:
        return "OFF", "no CUDA compiler (nvcc) on the PATH; PYLSTM_CUDA=ON to require it"
    if not _nvidia_driver_present():
        return "OFF", (
            "nvcc found but no NVIDIA driver on this machine; PYLSTM_CUDA=ON builds it anyway "
            "(adds a few minutes and a ~500 MB cuBLAS download)"
        )
    return "ON", "nvcc and an NVIDIA driver found; PYLSTM_CUDA=OFF skips it"


def cublas_requirement() -> list:
    """``["nvidia-cublas..."]`` when this build compiles the CUDA backend and the toolkit lacks
    cuBLAS; ``[]`` otherwise."""
    if cuda_decision()[0] == "OFF":
        return []
    nvcc = _nvcc()
    if nvcc is None or _toolkit_has_cublas(nvcc):
        return []
    major = _cuda_major(nvcc)
    if major is None:
        return []
    if major >= 13:  # one wheel name from CUDA 13 on, versioned like the toolkit
        return [f"nvidia-cublas>={major},<{major + 1}"]
    return [f"nvidia-cublas-cu{major}"]


def get_requires_for_build_wheel(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings) + cublas_requirement()


def get_requires_for_build_editable(config_settings=None):
    return _setuptools.get_requires_for_build_editable(config_settings) + cublas_requirement()
