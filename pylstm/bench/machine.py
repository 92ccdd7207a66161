"""The machine and software a benchmark ran on, as recorded in its JSON."""

from __future__ import annotations

import os
import platform

import numpy as np

import pylstm


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _caches() -> dict:
    """``{"L1d": "48K", "L2u": "2048K", ...}`` of CPU 0 (Linux sysfs; empty elsewhere)."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    out = {}
    for entry in sorted(os.listdir(base)) if os.path.isdir(base) else []:

        def read(name, entry=entry):
            with open(f"{base}/{entry}/{name}") as fh:
                return fh.read().strip()

        try:
            out[f"L{read('level')}{read('type')[0].lower()}"] = read("size")
        except OSError:
            continue
    return out


def machine_description() -> dict:
    """CPU model, CPU counts, caches, the SIMD level pylstm uses, OS and Python version.

    Returns
    -------
    dict
        ``cpu`` (model name), ``cpus`` (CPUs this process may run on), ``logical_cpus`` (all of
        the machine's), ``caches``, ``simd`` (pylstm's instruction set), ``simd_available``,
        ``platform`` (OS), ``python``.
    """
    info = pylstm.info()
    return {
        "cpu": _cpu_model(),
        "cpus": info["cpus"],
        "logical_cpus": os.cpu_count(),
        "caches": _caches(),
        "simd": info["simd"],
        "simd_available": info["simd_available"],
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def engine_versions() -> dict:
    """Versions of pylstm, numpy and, where installed, torch and onnxruntime."""
    out = {"pylstm": pylstm.__version__, "numpy": np.__version__}
    for name in ("torch", "onnxruntime"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            continue
    return out
