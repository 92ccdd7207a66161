"""Build driver: runs CMake to compile the C++ core (and the CUDA backend when asked) into pylstm/.

Environment:
    PYLSTM_CUDA        AUTO (default: build the CUDA backend when nvcc is found), ON (required), OFF
    PYLSTM_BUILD_TYPE  CMake build type, default Release
    PYLSTM_BUILD_JOBS  parallel compile jobs, default: number of CPUs
"""

import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve() / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
        cuda = os.environ.get("PYLSTM_CUDA", "AUTO").upper()
        if cuda not in ("AUTO", "ON", "OFF"):
            raise ValueError(f"PYLSTM_CUDA must be AUTO, ON or OFF, got {cuda!r}")
        config = [
            f"-DCMAKE_BUILD_TYPE={os.environ.get('PYLSTM_BUILD_TYPE', 'Release')}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPYLSTM_OUTPUT_DIR={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DPYLSTM_CUDA={cuda}",
        ]
        try:
            import ninja  # noqa: F401

            config.append("-GNinja")
        except ImportError:
            pass
        jobs = os.environ.get("PYLSTM_BUILD_JOBS", str(os.cpu_count() or 2))
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_dir), *config], check=True)
        subprocess.run(["cmake", "--build", str(build_dir), "-j", jobs], check=True)


setup(ext_modules=[CMakeExtension("pylstm._core")], cmdclass={"build_ext": CMakeBuild})
