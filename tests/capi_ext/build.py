"""Builds the C API demo extensions (capi_demo.pyx with Cython, capi_cdemo.c in plain C) into a
folder, the way a user's extension is built: setuptools, include_dirs=[pylstm.get_include()],
no link against pylstm. Used by tests/test_capi.py and bench/capi_overhead.py."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = ("capi_demo.pyx", "capi_cdemo.c")

SETUP = """
import os, pylstm
from setuptools import Extension, setup
from Cython.Build import cythonize

include = [pylstm.get_include()]
# where `cimport pylstm.capi` finds pylstm/capi.pxd: on sys.path for a regular install; named
# here too for an editable install, whose package folder is not on sys.path
pxd_root = os.path.dirname(os.path.dirname(pylstm.__file__))
cython_exts = [Extension(name, [name + ".pyx"], include_dirs=include) for name in PYX]
c_ext = Extension("capi_cdemo", ["capi_cdemo.c"], include_dirs=include,
                  extra_compile_args=["-pthread"], extra_link_args=["-pthread"])
setup(name="capi_demo", ext_modules=cythonize(cython_exts, include_path=[pxd_root], quiet=True)
      + [c_ext], script_args=["build_ext", "--inplace"])
"""


def missing_tools() -> str | None:
    """Why the extensions cannot be built here (no C compiler, no Cython), or None."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc!r} is not on the PATH)"
    try:
        import Cython  # noqa: F401
    except ImportError:
        return "Cython is not installed (pip install cython)"
    return None


def build(dest, extra_pyx: dict | None = None) -> dict:
    """Compile both extensions in ``dest`` and import them: returns ``{name: module}`` with
    ``capi_demo`` and ``capi_cdemo``, and one Cython module per ``extra_pyx`` entry
    (``{name: source text}``).

    Raises
    ------
    RuntimeError
        The build failed (the message holds the compiler's output).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        shutil.copy(HERE / name, dest / name)
    extra_pyx = dict(extra_pyx or {})
    for name, text in extra_pyx.items():
        (dest / f"{name}.pyx").write_text(text)
    pyx = ["capi_demo", *extra_pyx]
    (dest / "setup_capi.py").write_text(f"PYX = {pyx!r}\n" + SETUP)
    run = subprocess.run(
        [sys.executable, "setup_capi.py"], cwd=dest, capture_output=True, text=True, check=False
    )
    if run.returncode != 0:
        raise RuntimeError(
            f"building the C API demo extensions failed:\n{run.stdout}\n{run.stderr}"
        )
    sys.path.insert(0, os.fspath(dest))
    try:
        return {name: importlib.import_module(name) for name in [*pyx, "capi_cdemo"]}
    finally:
        sys.path.remove(os.fspath(dest))
