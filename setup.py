"""Build hook: the GACN kernel libraries are compiled with CMake (the root CMakeLists.txt) as
part of every build of the package. Metadata lives in pyproject.toml.

* Wheel (``pip install .``, ``pip wheel .``): a private CMake tree under setuptools' build
  folder, without the test-only emulator; ``cmake --install`` puts the runtime libraries into
  ``engine/_libs`` inside the wheel, which engine.kernels searches before anything else but
  $GACN_KERNELS_DIR. libgacn_kernels_cpu always (its failure fails the build), libgacn_kernels
  when nvcc is found, libgacn_plugins when TensorRT is found too. One line says what was built
  (``pip -v`` shows it) and ``engine/_libs/BUILD.json`` keeps it. A machine without CMake or a
  C++ compiler gets a wheel without kernels (ONNX Runtime only) and a warning saying so; a
  build that fails with both there fails the install.
* Editable (``pip install -e .``): the same build in ``<repo>/build``, the tree that
  ``cmake -S . -B build`` and engine.testing.kernels.build() use (emulator included, for the tests);
  nothing is copied into the source package. A failure is only a warning there: the ONNX
  Runtime path needs no kernels and the tests build or skip what they need.

Environment: GACN_BUILD_KERNELS=0 builds no kernels (a pure-Python, ONNX-Runtime-only wheel);
GACN_CUDA_ARCHITECTURES (e.g. ``90``) overrides the CUDA architectures; CMAKE_ARGS adds CMake
arguments (e.g. ``-DTENSORRT_ROOT=/opt/TensorRT-10.13``); CMAKE_BUILD_PARALLEL_LEVEL sets the jobs.

Why setuptools and not scikit-build-core: the libraries are loaded with ctypes, not imported
as extension modules, and an editable install must leave them in the developer's build/ tree
(scikit-build-core's editable mode installs built files where a source-tree package cannot
see them). A build step around the existing CMakeLists.txt keeps both installs simple.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Command, Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build import build
from setuptools.errors import SetupError

ROOT = Path(__file__).resolve().parent
LIBRARIES = {"cpu": "gacn_kernels_cpu", "cuda": "gacn_kernels", "plugins": "gacn_plugins"}
OFF = ("0", "no", "off", "false")


def kernels_enabled() -> bool:
    return os.environ.get("GACN_BUILD_KERNELS", "1").strip().lower() not in OFF


def lib_file(stem: str) -> str:
    if sys.platform == "win32":
        return f"{stem}.dll"
    return f"lib{stem}.dylib" if sys.platform == "darwin" else f"lib{stem}.so"


def say(msg: str) -> None:
    print(f"gacn-engine: {msg}", file=sys.stderr, flush=True)


def _cache(build_dir: Path) -> dict[str, str]:
    values = {}
    cache = build_dir / "CMakeCache.txt"
    if cache.is_file():
        for line in cache.read_text(errors="replace").splitlines():
            if ":" in line and "=" in line and not line.startswith(("#", "//")):
                key, _, value = line.partition("=")
                values[key.split(":")[0]] = value
    return values


def _why_not(kind: str, cache: dict[str, str], built: set[str]) -> str:
    if kind == "cuda":
        return "no CUDA compiler (nvcc) found; put the CUDA toolkit's bin on PATH or set CUDACXX"
    if "cuda" not in built:
        return "needs the CUDA library"
    if cache.get("TensorRT_INCLUDE_DIR", "").endswith("NOTFOUND") or not cache.get("TensorRT_INCLUDE_DIR"):
        return "TensorRT headers (NvInfer.h) not found; set TENSORRT_ROOT"
    if cache.get("TensorRT_LIBRARY", "").endswith("NOTFOUND"):
        return "TensorRT's libnvinfer not found; set TENSORRT_ROOT"
    return "see the CMake output (pip -v)"


class build_kernels(Command):
    """Compile and (for a wheel) install the kernel libraries with CMake."""

    description = "build the GACN kernel libraries with CMake"
    user_options: list = []

    def initialize_options(self):
        self.editable_mode = False
        self.build_lib = self.build_temp = None
        self._outputs: list[str] = []

    def finalize_options(self):
        self.set_undefined_options("build", ("build_lib", "build_lib"), ("build_temp", "build_temp"))

    def get_outputs(self):
        return self._outputs

    def get_output_mapping(self):
        return {}

    def run(self):
        if not kernels_enabled():
            say("GACN_BUILD_KERNELS=0: no kernel libraries built (ONNX Runtime only)")
            return
        if self.editable_mode:
            try:
                self._build(ROOT / "build", install_prefix=None, emu=True)
            except SetupError as e:
                say(f"WARNING: {e}\ngacn-engine: the editable install goes on without kernel libraries "
                    f"(build them later with: cmake -S . -B build && cmake --build build -j)")
            return
        prefix = Path(self.build_lib) / "engine"
        shutil.rmtree(prefix / "_libs", ignore_errors=True)  # build_lib persists: ship only this build's libraries
        self._build(Path(self.build_temp) / "gacn-cmake", install_prefix=prefix, emu=False)

    def _run(self, cmd: list[str], what: str) -> None:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if self.verbose or proc.returncode:
            print(proc.stdout, file=sys.stderr)
        if proc.returncode:
            tail = "\n".join(proc.stdout.splitlines()[-40:])
            raise SetupError(f"{what} failed (exit {proc.returncode}: {shlex.join(cmd)}):\n{tail}\n"
                             "The CPU kernel library needs CMake >= 3.24 and a C++17 compiler; set "
                             "GACN_BUILD_KERNELS=0 to build without kernels (ONNX Runtime only).")

    def _build(self, build_dir: Path, install_prefix: Path | None, emu: bool) -> None:
        cmake = shutil.which("cmake")
        compilers = [c for c in (os.environ.get("CXX", ""), "c++", "g++", "clang++") if c]
        missing_tool = ("cmake" if cmake is None else
                        None if any(shutil.which(c.split()[0]) for c in compilers) else "a C++ compiler")
        if missing_tool:
            # The machine lacks a tool, nothing is broken: install what runs without kernels
            # (ONNX Runtime), and say so, rather than fail on a fresh machine.
            say(f"WARNING: no kernel libraries built: {missing_tool} is not on PATH "
                f"(looked for {'cmake' if cmake is None else ', '.join(compilers)}); ONNX Runtime works without "
                "them; install one and reinstall for the CUDA backend and the CPU twin")
            if install_prefix is not None:
                lib_dir = install_prefix / "_libs"
                lib_dir.mkdir(parents=True, exist_ok=True)
                (lib_dir / "BUILD.json").write_text(json.dumps(
                    {"built": [], "not_built": {k: f"{missing_tool} not found" for k in LIBRARIES}}, indent=2) + "\n")
                self._outputs = [str(lib_dir / "BUILD.json")]
            return
        cache = build_dir / "CMakeCache.txt"
        if cache.is_file() and Path(_cache(build_dir).get("CMAKE_HOME_DIRECTORY", str(ROOT))).resolve() != ROOT:
            cache.unlink()  # a tree configured for another checkout
        configure = [cmake, "-S", str(ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                     f"-DGACN_BUILD_EMU={'ON' if emu else 'OFF'}", "-DGACN_INSTALL_LIBDIR=_libs"]
        if os.environ.get("GACN_CUDA_ARCHITECTURES"):
            configure.append(f"-DGACN_CUDA_ARCHITECTURES={os.environ['GACN_CUDA_ARCHITECTURES']}")
        configure += shlex.split(os.environ.get("CMAKE_ARGS", ""))
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 2)
        self._run(configure, "CMake configure")
        self._run([cmake, "--build", str(build_dir), "--parallel", jobs], "CMake build")
        values = _cache(build_dir)
        if install_prefix is None:
            lib_dir = build_dir / "lib"
        else:
            self._run([cmake, "--install", str(build_dir), "--prefix", str(install_prefix)], "CMake install")
            lib_dir = install_prefix / "_libs"
        built = {k for k, stem in LIBRARIES.items() if (lib_dir / lib_file(stem)).is_file()}
        if "cpu" not in built:
            raise SetupError(f"CMake ran but {lib_file(LIBRARIES['cpu'])} is not in {lib_dir}")
        missing = {k: _why_not(k, values, built) for k in LIBRARIES if k not in built}
        cuda = values.get("GACN_CUDA_VERSION") or ""
        line = ("built kernel libraries " + ", ".join(lib_file(LIBRARIES[k]) for k in LIBRARIES if k in built)
                + (f" (CUDA {cuda}, architectures {values.get('GACN_CUDA_ARCHITECTURES', '?')})" if "cuda" in built else "")
                + f" into {lib_dir}")
        if missing:
            line += "; not built: " + "; ".join(f"{lib_file(LIBRARIES[k])} ({why})" for k, why in missing.items())
        say(line)
        if install_prefix is not None:
            manifest = lib_dir / "BUILD.json"
            manifest.write_text(json.dumps({
                "built": sorted(built), "not_built": missing, "cuda_version": cuda or None,
                "cuda_architectures": values.get("GACN_CUDA_ARCHITECTURES") if "cuda" in built else None,
                "cmake": values.get("CMAKE_COMMAND"), "cxx": values.get("CMAKE_CXX_COMPILER"),
            }, indent=2) + "\n")
            self._outputs = [str(p) for p in lib_dir.iterdir()]


class build_with_kernels(build):
    sub_commands = build.sub_commands + [("build_kernels", None)]


class KernelDistribution(Distribution):
    """Binary content (the kernel libraries) makes the wheel platform-specific and puts the
    package in platlib."""

    def has_ext_modules(self):
        return kernels_enabled()


class bdist_wheel_with_kernels(bdist_wheel):
    """A platform wheel tagged py3-none-<platform>: the libraries are loaded with ctypes, so
    any Python 3 on that platform can use them (no CPython ABI tag)."""

    def get_tag(self):
        python, abi, platform = super().get_tag()
        return ("py3", "none", platform) if kernels_enabled() else (python, abi, platform)


setup(
    distclass=KernelDistribution,
    cmdclass={"build": build_with_kernels, "build_kernels": build_kernels, "bdist_wheel": bdist_wheel_with_kernels},
    options={"build": {"build_base": "build/wheel"}},
)
