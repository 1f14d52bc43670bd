"""Test and benchmark helpers for the kernel libraries (engine.kernels), not used by the runtime:
``build`` compiles them from a source checkout with CMake, and the ``cpu_*`` functions drive a
host library (``cpu`` by default, or ``emu``) on numpy arrays, as the kernel tests, the ONNX
Runtime plugin-graph runners (engine.testing.ort_plugins) and the GPU checks call them."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from engine.errors import BackendError
from engine import kernels
from engine.kernels import CONV_COUT, CONV_FFMA, F16, F32, NCHW, NHWC, KernelLibrary

log = logging.getLogger(__name__)


def build(build_dir: str | os.PathLike | None = None, cuda_architectures: str | None = None) -> Path:
    """Configure and build the libraries (Release) with CMake; returns the folder holding them.

    ``cuda_architectures`` overrides GACN_CUDA_ARCHITECTURES, e.g. ``"90"`` for an H100 only.
    """
    root = kernels.REPO_ROOT   # read at the call: tests point it at a fake checkout
    if not (root / "CMakeLists.txt").is_file():
        raise BackendError(f"{root} is an installed package, not a source checkout: its kernel libraries are "
                           "built with the wheel (reinstall gacn-engine where the toolkit is on PATH)")
    cmake = shutil.which("cmake")
    if cmake is None:
        raise BackendError("cmake is not installed: it is needed to build the GACN kernel libraries")
    build_dir = Path(build_dir) if build_dir is not None else root / "build"
    configure = [cmake, "-S", str(root), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release"]
    if cuda_architectures:
        configure.append(f"-DGACN_CUDA_ARCHITECTURES={cuda_architectures}")
    for cmd in (configure, [cmake, "--build", str(build_dir), "-j", str(os.cpu_count() or 2)]):
        log.info("running %s", " ".join(cmd))
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log.debug("%s", proc.stdout)
        if proc.returncode != 0:
            raise BackendError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}")
    return build_dir / "lib"


# ---- numpy drivers of a host library ------------------------------------------------------------
_DTYPES = {np.dtype(np.float32): F32, np.dtype(np.float16): F16}
_BITS = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}
_LAYOUTS = {"NCHW": NCHW, "NHWC": NHWC, NCHW: NCHW, NHWC: NHWC}


def _host_lib(lib: KernelLibrary | None) -> KernelLibrary:
    lib = lib or KernelLibrary.load("cpu")
    if lib.backend == "cuda":
        raise ValueError("the numpy helpers need a host library (cpu or emu), not the CUDA one")
    return lib


def _ptr(a: np.ndarray | None) -> int:
    return 0 if a is None else a.ctypes.data


def _float_array(a, what: str, dtype=None) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.dtype not in _DTYPES:
        raise TypeError(f"{what} must be float32 or float16, not {a.dtype}")
    return a


def _output(out: np.ndarray | None, shape, dtype) -> np.ndarray:
    """A new output array, or the caller's (C-contiguous, of the exact shape and dtype)."""
    if out is None:
        return np.empty(shape, dtype)
    if out.shape != tuple(shape) or out.dtype != np.dtype(dtype) or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"out must be a writeable C-contiguous {np.dtype(dtype)} array of shape {tuple(shape)}, "
                         f"got {out.dtype} {out.shape}")
    return out


def _image_nhwc(img, what: str) -> np.ndarray:
    """uint8/uint16 images as [N, H, W, channels]: a batch is 4-D; [H, W] and [H, W, ch] are one image."""
    img = np.ascontiguousarray(img)
    if img.dtype not in _BITS:
        raise TypeError(f"{what} must be uint8 or uint16, not {img.dtype}")
    if img.ndim == 2:
        img = img[None, :, :, None]
    elif img.ndim == 3:
        img = img[None]
    if img.ndim != 4:
        raise ValueError(f"{what} must have 2 to 4 dimensions, got shape {img.shape}")
    return img


def cpu_activity(fa, fb, layout="NCHW", out=None, lib=None) -> np.ndarray:
    """Bm for features fa [1 or N, ...] and fb [N, ...] of the same float dtype in ``layout``."""
    lay = _LAYOUTS[layout]
    fa, fb = _float_array(fa, "fa"), _float_array(fb, "fb")
    if fa.dtype != fb.dtype or fa.ndim != 4 or fa.shape[1:] != fb.shape[1:] or fa.shape[0] not in (1, fb.shape[0]):
        raise ValueError(f"fa {fa.shape} {fa.dtype} and fb {fb.shape} {fb.dtype} do not match")
    n, c, h, w = fb.shape if lay == NCHW else (fb.shape[0], fb.shape[3], fb.shape[1], fb.shape[2])
    bm = _output(out, fb.shape, fb.dtype)
    _host_lib(lib).activity(_ptr(fa), _ptr(fb), _ptr(bm), n, fa.shape[0], c, h, w, _DTYPES[fb.dtype], lay)
    return bm


def cpu_spatial_gate(x, weight, bn=None, relu=False, layout="NCHW", out=None, lib=None) -> np.ndarray:
    """y = u * sigmoid(conv7x7(u)), u = relu/BatchNorm of x; weight [C,7,7] (or [1,C,7,7]), bn [2,C] or None."""
    lay = _LAYOUTS[layout]
    x = _float_array(x, "x")
    n, c, h, w = x.shape if lay == NCHW else (x.shape[0], x.shape[3], x.shape[1], x.shape[2])
    weight = np.ascontiguousarray(weight, dtype=np.float32).reshape(c, 7, 7)
    bn = None if bn is None else np.ascontiguousarray(bn, dtype=np.float32).reshape(2, c)
    y = _output(out, x.shape, x.dtype)
    _host_lib(lib).spatial_gate(_ptr(x), _ptr(weight), _ptr(bn), int(bool(relu)), _ptr(y), n, c, h, w,
                                _DTYPES[x.dtype], lay)
    return y


def cpu_boundary_refine(d4, ya, yb, out=None, lib=None) -> tuple[np.ndarray, np.ndarray]:
    """(D, M) float32 [N,1,H,W] from d4 [N,1,H,W] (float32/16) and lumas ya [1 or N,1,H,W], yb [N,1,H,W].

    ``out`` may give the (D, M) arrays to fill."""
    d4 = _float_array(d4, "d4")
    ya = np.ascontiguousarray(ya, dtype=np.float32)
    yb = np.ascontiguousarray(yb, dtype=np.float32)
    n, _, h, w = d4.shape
    if yb.shape != d4.shape or ya.shape[1:] != d4.shape[1:] or ya.shape[0] not in (1, n):
        raise ValueError(f"d4 {d4.shape}, ya {ya.shape}, yb {yb.shape} do not match")
    d, m = (_output(o, (n, 1, h, w), np.float32) for o in (out or (None, None)))
    _host_lib(lib).boundary_refine(_ptr(d4), _ptr(ya), _ptr(yb), _ptr(d), _ptr(m), n, ya.shape[0], h, w,
                                   _DTYPES[d4.dtype])
    return d, m


def cpu_luma(img, dtype=np.float32, out=None, lib=None) -> np.ndarray:
    """Luma [N,1,H,W] of ``dtype`` from uint8/uint16 gray or RGB images (spec section 1)."""
    img = _image_nhwc(img, "img")
    n, h, w, ch = img.shape
    out = _output(out, (n, 1, h, w), dtype)
    _host_lib(lib).luma(_ptr(img), _ptr(out), n, h, w, ch, _BITS[img.dtype], _DTYPES[out.dtype])
    return out


def cpu_blend(a, b, m, out=None, lib=None) -> np.ndarray:
    """round(clip(m*A + (1-m)*B, 0, 1) * max) per colour plane; a [1 or N,...], b, m [N,1,H,W] -> b's shape."""
    shape = np.shape(b)
    a, b = _image_nhwc(a, "a"), _image_nhwc(b, "b")
    n, h, w, ch = b.shape
    m = np.ascontiguousarray(m, dtype=np.float32)
    if a.dtype != b.dtype or a.shape[1:] != b.shape[1:] or a.shape[0] not in (1, n) or m.size != n * h * w:
        raise ValueError(f"a {a.shape} {a.dtype}, b {b.shape} {b.dtype}, m {m.shape} do not match")
    out = _output(out, shape, b.dtype)
    _host_lib(lib).blend(_ptr(a), _ptr(b), _ptr(m), _ptr(out), n, a.shape[0], h, w, ch, _BITS[b.dtype])
    return out


def cpu_stack_first(m1, frame0, frame1, lib=None) -> dict[str, np.ndarray]:
    """Decision-calibration state after frames 0 and 1 (spec section 8): v0, best, index, out."""
    shape = np.shape(frame0)
    f0, f1 = _image_nhwc(frame0, "frame0"), _image_nhwc(frame1, "frame1")
    _, h, w, ch = f0.shape
    m1 = np.ascontiguousarray(m1, dtype=np.float32)
    if f1.shape != f0.shape or f1.dtype != f0.dtype or f0.shape[0] != 1 or m1.size != h * w:
        raise ValueError(f"m1 {m1.shape}, frame0 {f0.shape}, frame1 {f1.shape} do not match")
    st = {"v0": np.empty((h, w), np.float32), "best": np.empty((h, w), np.float32),
          "index": np.empty((h, w), np.int32), "out": np.empty_like(f0)}
    _host_lib(lib).stack_first(_ptr(m1), _ptr(f0), _ptr(f1), _ptr(st["v0"]), _ptr(st["best"]), _ptr(st["index"]),
                               _ptr(st["out"]), h, w, ch, _BITS[f0.dtype])
    st["out"] = st["out"].reshape(shape)
    return st


def cpu_stack_next(state: dict[str, np.ndarray], mi, frame, i: int, lib=None) -> dict[str, np.ndarray]:
    """Folds frame ``i`` >= 2 with its mask ``mi`` into ``state`` (updated in place and returned)."""
    f = _image_nhwc(frame, "frame")
    _, h, w, ch = f.shape
    mi = np.ascontiguousarray(mi, dtype=np.float32)
    out = state["out"]
    if f.dtype != out.dtype or f.size != out.size or mi.size != h * w or not out.flags.c_contiguous:
        raise ValueError(f"mi {mi.shape}, frame {f.shape} {f.dtype} do not match the state")
    _host_lib(lib).stack_next(_ptr(mi), _ptr(f), i, _ptr(state["v0"]), _ptr(state["best"]), _ptr(state["index"]),
                              _ptr(out), h, w, ch, _BITS[f.dtype])
    return state


def _conv_operands(x, weight, bias, bn, cin, y):
    """The feature convolutions' operands as the kernels take them (C-contiguous float32), and
    ``y`` made or checked: [N,16,H,W] float32 with dense channel planes (it may be a channel slice)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, c, h, w = x.shape
    cin = c if cin is None else int(cin)
    if not 1 <= cin <= c:
        raise ValueError(f"cin {cin} out of range for x {x.shape}")
    weight = np.ascontiguousarray(weight, dtype=np.float32).reshape(CONV_COUT, cin, 3, 3)
    bias = np.ascontiguousarray(bias, dtype=np.float32).reshape(CONV_COUT)
    bn = None if bn is None else np.ascontiguousarray(bn, dtype=np.float32).reshape(2, CONV_COUT)
    if y is None:
        y = np.empty((n, CONV_COUT, h, w), np.float32)
    plane = h * w
    if (y.shape != (n, CONV_COUT, h, w) or y.dtype != np.float32 or y.strides[1:] != (plane * 4, w * 4, 4)
            or not y.flags.writeable):
        raise ValueError(f"y must be a writeable float32 [N,16,H,W] array with dense channel planes, got {y.shape}")
    return x, cin, weight, bias, bn, y


def cpu_conv3x3_c16(x, weight, bias, bn=None, partials=True, cin=None, y=None, lib=None):
    """Feature ConvBlock on the host: BatchNorm(ReLU(conv3x3(x) + bias)) -> [N,16,H,W] float32.

    x [N,C,H,W] float32 (the first ``cin`` channels are read, all by default), weight [16,cin,3,3],
    bias [16], bn [2,16] (scale, shift) or None. ``y`` may be a [N,16,H,W] float32 view into a wider
    C-contiguous buffer (a channel slice; the batch stride is taken from it). Returns y, or
    (y, partial sums [N, blocks, 16]) when ``partials``.
    """
    lib = _host_lib(lib)
    x, cin, weight, bias, bn, y = _conv_operands(x, weight, bias, bn, cin, y)
    n, c, h, w = x.shape
    plane = h * w
    y_stride = y.strides[0] // 4
    ps = np.empty((n, lib.conv3x3_c16_partials(h, w), CONV_COUT), np.float32) if partials else None
    lib.conv3x3_c16(_ptr(x), cin, _ptr(weight), _ptr(bias), _ptr(bn), y.ctypes.data, _ptr(ps), n, h, w, c * plane,
                    y_stride)
    return (y, ps) if partials else y


def cpu_feature_conv(x, weight, bias, bn=None, in_scale=None, algo=CONV_FFMA, partials=True, cin=None, y=None,
                     lib=None):
    """gacn_feature_conv on the host: :func:`cpu_conv3x3_c16` with the input's per-channel scale
    ``in_scale`` ([N, cin] float32, or None) folded into the weights, and ``algo`` CONV_FFMA or
    CONV_3XTF32 (the tensor-core kernel's arithmetic)."""
    lib = _host_lib(lib)
    x, cin, weight, bias, bn, y = _conv_operands(x, weight, bias, bn, cin, y)
    n, c, h, w = x.shape
    plane = h * w
    if in_scale is not None:
        in_scale = np.ascontiguousarray(np.broadcast_to(np.asarray(in_scale, np.float32), (n, cin)))
    ps = np.empty((n, lib.conv3x3_c16_partials(h, w), CONV_COUT), np.float32) if partials else None
    lib.feature_conv(_ptr(x), cin, _ptr(in_scale), cin, _ptr(weight), _ptr(bias), _ptr(bn), y.ctypes.data, _ptr(ps),
                     n, h, w, c * plane, y.strides[0] // 4, algo)
    return (y, ps) if partials else y


def cpu_cse_scale(partial_sums, count: int, fc1, fc2, lib=None) -> np.ndarray:
    """CSE scales [N, 16] from partial sums [N, blocks, 16] of an image of ``count`` pixels."""
    ps = np.ascontiguousarray(partial_sums, dtype=np.float32)
    fc1 = np.ascontiguousarray(fc1, dtype=np.float32).reshape(2, CONV_COUT)
    fc2 = np.ascontiguousarray(fc2, dtype=np.float32).reshape(CONV_COUT, 2)
    n, blocks, _ = ps.shape
    s = np.empty((n, CONV_COUT), np.float32)
    _host_lib(lib).cse_scale(_ptr(ps), n, blocks, int(count), _ptr(fc1), _ptr(fc2), _ptr(s), CONV_COUT)
    return s


def cpu_activity_scaled(fa, fb, scale_a=None, scale_b=None, in_layout="NCHW", out_layout=None, out_dtype=None,
                        out=None, lib=None) -> np.ndarray:
    """Bm from unscaled features fa [1 or N, ...], fb [N, ...] (``in_layout``) with per-channel
    scales [1 or N, C] / [N, C] (or None), written as ``out_dtype`` (default: the input's) in
    ``out_layout`` (default: the input's; NCHW -> NHWC allowed)."""
    lay_in = _LAYOUTS[in_layout]
    lay_out = lay_in if out_layout is None else _LAYOUTS[out_layout]
    fa, fb = _float_array(fa, "fa"), _float_array(fb, "fb")
    if fa.dtype != fb.dtype or fa.ndim != 4 or fa.shape[1:] != fb.shape[1:] or fa.shape[0] not in (1, fb.shape[0]):
        raise ValueError(f"fa {fa.shape} {fa.dtype} and fb {fb.shape} {fb.dtype} do not match")
    n, c, h, w = fb.shape if lay_in == NCHW else (fb.shape[0], fb.shape[3], fb.shape[1], fb.shape[2])
    odt = np.dtype(out_dtype) if out_dtype is not None else fb.dtype
    if odt not in _DTYPES:
        raise TypeError(f"out_dtype must be float32 or float16, not {odt}")
    sa = None if scale_a is None else np.ascontiguousarray(scale_a, np.float32).reshape(fa.shape[0], c)
    sb = None if scale_b is None else np.ascontiguousarray(scale_b, np.float32).reshape(n, c)
    bm = _output(out, (n, c, h, w) if lay_out == NCHW else (n, h, w, c), odt)
    _host_lib(lib).activity_scaled(_ptr(fa), _ptr(fb), _ptr(sa), _ptr(sb), _ptr(bm), n, fa.shape[0], c, h, w,
                                   _DTYPES[fb.dtype], lay_in, _DTYPES[odt], lay_out)
    return bm
