"""Build driver: runs CMake to compile the C++ core (and the CUDA backend when asked) into pylstm/.

Environment:
    PYLSTM_CUDA        AUTO (default: build the CUDA backend when nvcc is found and this machine
                       has an NVIDIA driver), ON (required, e.g. for wheels built without a GPU),
                       OFF (never)
    PYLSTM_BUILD_TYPE  CMake build type, default Release
    PYLSTM_BUILD_JOBS  parallel compile jobs, default: number of CPUs
    PYLSTM_WERROR      1/ON: compiler warnings are errors (CI and test builds; -Wall -Wextra
                       are always on)
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "build_backend"))
from pylstm_build import cuda_decision  # noqa: E402  (the same decision as the build backend's)

# Entries of a CMakeCache.txt that name files of the environment that configured it. pip builds
# in a throw-away environment (/tmp/pip-build-env-*) whose cmake, ninja and pybind11 are deleted
# afterwards: a later build in the same checkout must not reuse a cache that points at them.
_CACHE_PATH_ENTRIES = ("CMAKE_MAKE_PROGRAM", "CMAKE_COMMAND", "pybind11_DIR", "Python_EXECUTABLE")


def _cached_values(cache: Path) -> dict:
    """``{name: value}`` of the :data:`_CACHE_PATH_ENTRIES` in a CMakeCache.txt."""
    values = {}
    for line in cache.read_text(errors="replace").splitlines():
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*):[A-Z]+=(.*)$", line)
        if m and m.group(1) in _CACHE_PATH_ENTRIES:
            values[m.group(1)] = m.group(2)
    return values


def stale_cache_reason(build_dir: Path, wanted: dict) -> str:
    """Why the CMake cache in ``build_dir`` cannot be reused ('' when it can): a file it names is
    gone, or it was configured for another Python or pybind11 than ``wanted``."""
    cache = build_dir / "CMakeCache.txt"
    if not cache.exists():
        return ""
    cached = _cached_values(cache)
    for name, value in cached.items():
        if name in ("CMAKE_MAKE_PROGRAM", "CMAKE_COMMAND") and value and not Path(value).exists():
            return f"{name} {value} no longer exists"
        if name in wanted and Path(value) != Path(wanted[name]):
            return f"it was configured with {name}={value}, this build uses {wanted[name]}"
    return ""


def _env_on(name: str) -> bool:
    """Whether the environment variable ``name`` is set to 1/ON/TRUE/YES (any case)."""
    return os.environ.get(name, "").strip().lower() in ("1", "on", "true", "yes")


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    """Configures and builds the CMake project; every Python module it makes (pylstm._core, and
    pylstm._cuda / _cuda_emu when CUDA is built) lands in the package, for regular and editable
    installs alike."""

    def run(self):
        self._extra_modules = []
        super().run()

    def build_extension(self, ext):
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve() / "cmake"
        wanted = {"pybind11_DIR": pybind11.get_cmake_dir(), "Python_EXECUTABLE": sys.executable}
        reason = stale_cache_reason(build_dir, wanted)
        if reason:
            print(f"pylstm: starting a fresh CMake build folder ({reason})", flush=True)
            shutil.rmtree(build_dir)
        build_dir.mkdir(parents=True, exist_ok=True)
        # Modules of an earlier build (e.g. _cuda from a build that had CUDA) must not ship.
        for old in out_dir.glob("_*.so"):
            old.unlink()
        cuda, why = cuda_decision()
        print(f"pylstm: CUDA backend {'ON' if cuda == 'ON' else 'OFF'}: {why}", flush=True)
        config = [
            f"-DCMAKE_BUILD_TYPE={os.environ.get('PYLSTM_BUILD_TYPE', 'Release')}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPYLSTM_OUTPUT_DIR={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DPYLSTM_CUDA={cuda}",
            f"-DPYLSTM_WERROR={'ON' if _env_on('PYLSTM_WERROR') else 'OFF'}",
        ]
        if shutil.which("ninja") or _ninja_module_available():
            config.append("-GNinja")
        jobs = os.environ.get("PYLSTM_BUILD_JOBS", str(os.cpu_count() or 2))
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_dir), *config], check=True)
        subprocess.run(["cmake", "--build", str(build_dir), "-j", jobs], check=True)
        # CMake lists the modules it built (CMakeLists.txt: pylstm_modules.txt).
        built = (build_dir / "pylstm_modules.txt").read_text().split()
        main = Path(self.get_ext_fullpath(ext.name)).resolve()
        self._extra_modules = [Path(p) for p in built if Path(p).resolve() != main]

    def copy_extensions_to_source(self):
        super().copy_extensions_to_source()
        package_dir = ROOT / "pylstm"
        for old in package_dir.glob("_cuda*.so"):
            old.unlink()
        for module in self._extra_modules:
            self.copy_file(str(module), str(package_dir / module.name))

    def get_output_mapping(self):
        mapping = super().get_output_mapping()
        if self.inplace:  # editable installs: the extra modules are copied next to _core
            for module in getattr(self, "_extra_modules", []):
                mapping[str(module)] = str(ROOT / "pylstm" / module.name)
        return mapping


def _ninja_module_available() -> bool:
    try:
        import ninja  # noqa: F401
    except ImportError:
        return False
    return True


setup(ext_modules=[CMakeExtension("pylstm._core")], cmdclass={"build_ext": CMakeBuild})
