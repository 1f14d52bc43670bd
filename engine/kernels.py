"""ctypes access to GACN's kernel libraries (the C ABI of kernels/include/gacn_kernels.h).

Three builds of that ABI, found by :func:`find_library` (see :func:`library_dirs` for the
order) and built by CMake (a wheel build compiles them itself; engine.testing.kernels.build
from a checkout):
``cuda`` (libgacn_kernels.so, device pointers, CUDA streams), ``cpu`` (libgacn_kernels_cpu.so,
host pointers, the same arithmetic on the host) and ``emu`` (libgacn_kernels_emu.so, the CUDA
kernels themselves run on the host by a block emulator, for tests). ``plugins`` locates the
TensorRT plugin library, which TensorRT loads itself.

No torch here: the runtime must work without it. Pointers are plain integers (0 = NULL); the
numpy drivers of a host library (tests, benchmarks) are engine.testing.kernels.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import sys
from pathlib import Path

from engine.errors import BackendError

log = logging.getLogger(__name__)

F32, F16 = 0, 1
NCHW, NHWC = 0, 1
ERR_INVALID = -1
ABI_VERSION = 3
REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_LIB_DIR = Path(__file__).resolve().parent / "_libs"  # filled by the wheel build (setup.py)
BUILD_HINT = "cmake -S . -B build && cmake --build build -j"
_LIBRARIES = {"cuda": "gacn_kernels", "cpu": "gacn_kernels_cpu", "emu": "gacn_kernels_emu", "plugins": "gacn_plugins"}


def _file_name(stem: str) -> str:
    if sys.platform == "win32":
        return f"{stem}.dll"
    return f"lib{stem}.dylib" if sys.platform == "darwin" else f"lib{stem}.so"


def library_dirs() -> list[Path]:
    """Where :func:`find_library` looks, in order.

    1. ``$GACN_KERNELS_DIR``: an explicit choice (a build for another GPU, say) wins.
    2. ``engine/_libs`` inside the installed package: what the wheel build compiled for it.
    3. ``<repo>/build/lib``: the developer's CMake build, only when running from a source
       checkout (where an editable install builds and nothing is copied into the package).
    """
    dirs = [Path(d) for d in [os.environ.get("GACN_KERNELS_DIR")] if d]
    dirs.append(PACKAGE_LIB_DIR)
    if (REPO_ROOT / "CMakeLists.txt").is_file() and (REPO_ROOT / "kernels").is_dir():
        dirs.append(REPO_ROOT / "build" / "lib")
    return dirs


def find_library(kind: str) -> Path:
    """Path of the ``kind`` library: the first of :func:`library_dirs` that holds it."""
    if kind not in _LIBRARIES:
        raise ValueError(f"unknown kernel library kind {kind!r}; expected one of {sorted(_LIBRARIES)}")
    name = _file_name(_LIBRARIES[kind])
    dirs = library_dirs()
    for d in dirs:
        if (d / name).is_file():
            return d / name
    where = ", ".join(str(d) for d in dirs)
    need = " (needs a CUDA toolkit)" if kind == "cuda" else " (needs TensorRT)" if kind == "plugins" else ""
    raise BackendError(f"{name} not found in {where}{need}; reinstall gacn-engine where the toolkit is on PATH "
                       f"(the wheel build compiles it), or from a source checkout run: {BUILD_HINT}, "
                       "or set GACN_KERNELS_DIR to the folder that holds it")


_P, _I, _L = ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong
_SIGNATURES = {  # argument order of gacn_kernels.h, stream last
    "activity": [_P, _P, _P, _I, _I, _I, _I, _I, _I, _I, _P],
    "spatial_gate": [_P, _P, _P, _I, _P, _I, _I, _I, _I, _I, _I, _P],
    "boundary_refine": [_P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _P],
    "luma": [_P, _P, _I, _I, _I, _I, _I, _I, _P],
    "blend": [_P, _P, _P, _P, _I, _I, _I, _I, _I, _I, _P],
    "stack_first": [_P, _P, _P, _P, _P, _P, _P, _I, _I, _I, _I, _P],
    "stack_next": [_P, _P, _I, _P, _P, _P, _P, _I, _I, _I, _I, _P],
    "conv3x3_c16": [_P, _I, _P, _P, _P, _P, _P, _I, _I, _I, _L, _L, _P],
    # ABI 3
    "feature_conv": [_P, _I, _P, _L, _P, _P, _P, _P, _P, _I, _I, _I, _L, _L, _I, _P],
    "cse_scale": [_P, _I, _I, _L, _P, _P, _P, _L, _P],
    "activity_scaled": [_P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _I, _I, _I, _I, _P],
}
CONV_COUT = 16  # output channels of gacn_conv3x3_c16
CONV_FFMA, CONV_3XTF32 = 0, 1  # algorithms of gacn_feature_conv


class KernelLibrary:
    """One loaded kernel library; each operation is a method taking the header's arguments."""

    def __init__(self, path: Path):
        try:
            self._dll = ctypes.CDLL(str(path))
        except OSError as e:
            raise BackendError(f"cannot load {path}: {e}") from e
        self.path = path
        self._dll.gacn_backend.restype = ctypes.c_char_p
        self._dll.gacn_abi_version.restype = ctypes.c_int
        self.backend: str = self._dll.gacn_backend().decode()
        self.abi_version: int = self._dll.gacn_abi_version()
        if self.abi_version != ABI_VERSION:
            raise BackendError(f"{path} has kernel ABI version {self.abi_version}, this engine needs {ABI_VERSION}; "
                               f"rebuild it: {BUILD_HINT}")
        self._fn = {}
        for name, argtypes in _SIGNATURES.items():
            fn = getattr(self._dll, f"gacn_{name}")
            fn.argtypes, fn.restype = argtypes, ctypes.c_int
            self._fn[name] = fn
        self._dll.gacn_conv3x3_c16_partials.argtypes = [_I, _I]
        self._dll.gacn_conv3x3_c16_partials.restype = ctypes.c_size_t
        self._dll.gacn_feature_conv_algo.argtypes = [_I, _I]
        self._dll.gacn_feature_conv_algo.restype = ctypes.c_int

    @classmethod
    def load(cls, kind: str = "cuda") -> "KernelLibrary":
        """The library of ``kind`` ("cuda", "cpu" or "emu"), loaded once per path."""
        if kind == "plugins":
            raise ValueError("the plugin library has no kernel ABI; TensorRT loads it (see find_library)")
        return _load_path(find_library(kind))

    def __repr__(self):
        return f"KernelLibrary({self.backend!r}, {str(self.path)!r})"

    def _call(self, name: str, *args) -> None:
        rc = self._fn[name](*args)
        if rc != 0:
            why = "invalid arguments" if rc == ERR_INVALID else f"CUDA error {rc}"
            raise BackendError(f"gacn_{name} ({self.backend}) failed with code {rc}: {why}")

    def activity(self, fa, fb, bm, n, na, c, h, w, dtype, layout, stream=0):
        self._call("activity", fa, fb, bm, n, na, c, h, w, dtype, layout, stream)

    def spatial_gate(self, x, weight, bn, relu, y, n, c, h, w, dtype, layout, stream=0):
        self._call("spatial_gate", x, weight, bn, relu, y, n, c, h, w, dtype, layout, stream)

    def boundary_refine(self, d4, ya, yb, d, m, n, na, h, w, dtype, stream=0):
        self._call("boundary_refine", d4, ya, yb, d, m, n, na, h, w, dtype, stream)

    def luma(self, img, luma, n, h, w, channels, bits, dtype, stream=0):
        self._call("luma", img, luma, n, h, w, channels, bits, dtype, stream)

    def blend(self, a, b, m, out, n, na, h, w, channels, bits, stream=0):
        self._call("blend", a, b, m, out, n, na, h, w, channels, bits, stream)

    def stack_first(self, m1, frame0, frame1, v0, best, index, out, h, w, channels, bits, stream=0):
        self._call("stack_first", m1, frame0, frame1, v0, best, index, out, h, w, channels, bits, stream)

    def stack_next(self, mi, frame, i, v0, best, index, out, h, w, channels, bits, stream=0):
        self._call("stack_next", mi, frame, i, v0, best, index, out, h, w, channels, bits, stream)

    def conv3x3_c16(self, x, cin, weight, bias, bn, y, partial_sums, n, h, w, x_batch_stride, y_batch_stride,
                    stream=0):
        """y = BatchNorm(ReLU(conv3x3(x) + bias)), 16 channels, float32 NCHW; see gacn_kernels.h."""
        self._call("conv3x3_c16", x, cin, weight, bias, bn, y, partial_sums, n, h, w, x_batch_stride,
                   y_batch_stride, stream)

    def conv3x3_c16_partials(self, h: int, w: int) -> int:
        """Blocks of gacn_conv3x3_c16 per image: partial_sums holds N * blocks * 16 floats."""
        return int(self._dll.gacn_conv3x3_c16_partials(h, w))

    def feature_conv(self, x, cin, in_scale, scale_batch_stride, weight, bias, bn, y, partial_sums, n, h, w,
                     x_batch_stride, y_batch_stride, algo=CONV_FFMA, stream=0):
        """gacn_conv3x3_c16 on an unscaled input with its per-channel scale folded into the weights;
        ``algo`` CONV_FFMA or CONV_3XTF32 (tensor cores); see gacn_kernels.h."""
        self._call("feature_conv", x, cin, in_scale, scale_batch_stride, weight, bias, bn, y, partial_sums, n, h, w,
                   x_batch_stride, y_batch_stride, algo, stream)

    def feature_conv_algo(self, cin: int, algo: int) -> int:
        """The kernel gacn_feature_conv runs for (cin, algo) here: CONV_FFMA or CONV_3XTF32."""
        return int(self._dll.gacn_feature_conv_algo(cin, algo))

    def cse_scale(self, partial_sums, n, blocks, count, fc1, fc2, s, s_batch_stride, stream=0):
        """CSE scales [n, 16] (at s + b * s_batch_stride) from gacn_conv3x3_c16's partial sums."""
        self._call("cse_scale", partial_sums, n, blocks, count, fc1, fc2, s, s_batch_stride, stream)

    def activity_scaled(self, fa, fb, scale_a, scale_b, bm, n, na, c, h, w, in_dtype, in_layout, out_dtype,
                        out_layout, stream=0):
        """gacn_activity on unscaled features with per-channel scales [na|n, C] (0 = none), any output
        type, NCHW -> NHWC allowed."""
        self._call("activity_scaled", fa, fb, scale_a, scale_b, bm, n, na, c, h, w, in_dtype, in_layout, out_dtype,
                   out_layout, stream)


@functools.lru_cache(maxsize=None)
def _load_path(path: Path) -> KernelLibrary:
    lib = KernelLibrary(path)
    log.info("loaded %r (kernel ABI %d)", lib, lib.abi_version)
    return lib
