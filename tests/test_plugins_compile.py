"""The TensorRT plugin sources (kernels/plugins) compile against a TensorRT header set, and behave.

TensorRT's headers are not part of this repository (and must not be committed), so these tests
run only where a developer points ``GACN_TRT_INCLUDE`` at a TensorRT ``include`` directory (the
one holding NvInferRuntime.h), e.g. from a TensorRT tarball or from a checkout of
github.com/NVIDIA/TensorRT (``git archive v10.13.3 include | tar -x -C /tmp/trt10``). They need
a C++17 compiler and the CUDA toolkit's headers (TensorRT's headers include cuda_runtime_api.h).
CI has no TensorRT headers: there they are skipped with that reason.

1. every plugin source compiles with -Wall -Wextra -Werror;
2. tests/plugin_harness.cpp, linked with the sources, stub kernels and a stub logger (no GPU,
   no libnvinfer), drives the plugins through getCreators() and the IPluginV3 interfaces.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "kernels" / "plugins"
SOURCES = sorted(PLUGINS.glob("*/*.cpp")) + [PLUGINS / "registration.cpp"]


def _trt_include() -> Path:
    value = os.environ.get("GACN_TRT_INCLUDE")
    if not value:
        pytest.skip("GACN_TRT_INCLUDE is not set: point it at a TensorRT include/ directory "
                    "(TensorRT headers are not in the repository and not in CI)")
    path = Path(value)
    if not (path / "NvInferRuntime.h").is_file():
        pytest.skip(f"GACN_TRT_INCLUDE={value} has no NvInferRuntime.h")
    if "class IPluginV3OneRuntime" not in (path / "NvInferRuntime.h").read_text(errors="replace"):
        pytest.skip(f"TensorRT headers in {value} predate IPluginV3 (TensorRT 10 or later needed)")
    return path


def _cuda_home() -> Path:
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parents[1]))
    for c in candidates:
        if c and (Path(c) / "include" / "cuda_runtime_api.h").is_file():
            return Path(c)
    pytest.skip("CUDA toolkit headers (cuda_runtime_api.h) not found: set CUDA_HOME")


def _compiler() -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++") or shutil.which("c++")
    if not cxx:
        pytest.skip("no C++ compiler found (set CXX)")
    return cxx


def _flags(trt: Path, cuda: Path) -> list[str]:
    return ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-fPIC", "-fvisibility=hidden",
            "-isystem", str(trt), "-isystem", str(cuda / "include"),
            "-I", str(ROOT / "kernels" / "include"), "-I", str(PLUGINS)]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.relative_to(PLUGINS).as_posix())
def test_plugin_source_compiles(source: Path, tmp_path: Path):
    trt, cuda, cxx = _trt_include(), _cuda_home(), _compiler()
    _run([cxx, *_flags(trt, cuda), "-c", str(source), "-o", str(tmp_path / "out.o")])


def test_plugin_harness(tmp_path: Path):
    trt, cuda, cxx = _trt_include(), _cuda_home(), _compiler()
    libdirs = [d for d in (cuda / "lib64", cuda / "lib", cuda / "targets" / "x86_64-linux" / "lib")
               if any(d.glob("libcudart.so*"))]
    if not libdirs:
        pytest.skip(f"libcudart not found under {cuda}")
    exe = tmp_path / "plugin_harness"
    _run([cxx, *_flags(trt, cuda), *map(str, SOURCES), str(ROOT / "tests" / "plugin_harness.cpp"),
          "-L", str(libdirs[0]), f"-Wl,-rpath,{libdirs[0]}", "-lcudart", "-o", str(exe)])
    proc = _run([str(exe)])
    assert "0 failures" in proc.stdout, proc.stdout
