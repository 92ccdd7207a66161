"""The machine and software a benchmark ran on, as recorded in its JSON."""

from __future__ import annotations

import os
import platform

import numpy as np

import pylstm


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
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


#: The /proc/cpuinfo flags that matter to the kernels (vector width, FMA, reduced precision).
ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8",
)  # fmt: skip


def _cpu_flags() -> list:
    """The :data:`ISA_FLAGS` this CPU reports (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [f for f in ISA_FLAGS if f in have]
    except OSError:
        pass
    return []


def _cpu_field(name: str) -> str:
    """A ``/proc/cpuinfo`` field of the first CPU (``vendor_id``, ``cpu family``...); "" if
    absent."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.split(":", 1)[0].strip() == name:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _cache_sharing() -> dict:
    """``{"L3u": "0-1", ...}``: the CPUs sharing each cache of CPU 0 (Linux sysfs)."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    out = {}
    for entry in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        try:
            with open(f"{base}/{entry}/level") as fh:
                level = fh.read().strip()
            with open(f"{base}/{entry}/type") as fh:
                kind = fh.read().strip()[0].lower()
            with open(f"{base}/{entry}/shared_cpu_list") as fh:
                out[f"L{level}{kind}"] = fh.read().strip()
        except (OSError, IndexError):
            continue
    return out


def _pylstm_backend() -> str:
    """The kernel pylstm's engine picks for a CPU model (``model.engine.backend``, e.g.
    ``cpu/avx512``), read from a tiny LSTM."""
    try:
        zeros = np.zeros
        d = pylstm.Direction(w=zeros((4, 1)), r=zeros((4, 1)), bias_w=zeros(4), bias_r=zeros(4))
        return pylstm.from_arrays([pylstm.Layer("lstm", [d])]).engine.backend
    except Exception as exc:  # recorded, never fatal to a benchmark
        return f"unknown ({type(exc).__name__})"


def load_average() -> list:
    """The system's load average over 1, 5 and 15 minutes (runnable processes; more than the
    CPU count: other work competes with the benchmark); empty where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return []


def machine_description() -> dict:
    """CPU model, CPU counts, caches, the SIMD level pylstm uses, OS and Python version.

    Returns
    -------
    dict
        ``cpu`` (model name), ``cpus`` (CPUs this process may run on), ``logical_cpus`` (all of
        the machine's), ``caches``, ``simd`` (pylstm's instruction set), ``simd_available``,
        ``platform`` (OS), ``python``, ``vendor`` and ``cpu_family``/``cpu_model`` (numbers),
        ``isa`` (the vector-relevant CPU flags), ``cache_shared_by`` (CPUs per cache),
        ``kernel`` (OS kernel release), ``pylstm_backend`` (the kernel pylstm's engine chose,
        ``model.engine.backend``), ``load_average`` (1, 5, 15 minutes, when the record
        starts: other work on the machine).
    """
    info = pylstm.info()
    return {
        "cpu": cpu_model(),
        "vendor": _cpu_field("vendor_id"),
        "cpu_family": _cpu_field("cpu family"),
        "cpu_model": _cpu_field("model"),
        "isa": _cpu_flags(),
        "cache_shared_by": _cache_sharing(),
        "kernel": platform.release(),
        "pylstm_backend": _pylstm_backend(),
        "load_average": load_average(),
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
