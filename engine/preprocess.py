"""Host-side pixel arithmetic of spec sections 1 and 7, shared by every backend's checks."""
from __future__ import annotations

import numpy as np

from engine.errors import InputError

MIN_SIDE = 8  # the guided filter (r = 3) needs H, W > 2r + 1
LUMA_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])  # skimage rgb2gray, as the authors used


def max_value(dtype) -> int:
    return 255 if np.dtype(dtype) == np.uint8 else 65535


def check_meta(shape, dtype, what: str = "image") -> tuple:
    """The checks on an image's geometry and pixel type; returns its (H, W) or (H, W, 3) shape."""
    if np.dtype(dtype) not in (np.uint8, np.uint16):
        raise InputError(f"{what}: unsupported dtype {np.dtype(dtype)}; pass uint8 or uint16 pixels")
    shape = tuple(shape)
    if len(shape) == 3 and shape[2] == 1:
        shape = shape[:2]
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)):
        raise InputError(f"{what}: shape {shape} is neither gray (H, W) nor RGB (H, W, 3)")
    if min(shape[:2]) < MIN_SIDE:
        raise InputError(f"{what}: {shape[1]}x{shape[0]} is too small; both sides must be >= {MIN_SIDE} px")
    return shape


def check_image(img, what: str = "image") -> np.ndarray:
    """An image the engine accepts: uint8/uint16, (H, W) or (H, W, 3), both sides >= 8."""
    if not isinstance(img, np.ndarray):
        raise InputError(f"{what}: expected a numpy array, got {type(img).__name__}")
    return np.ascontiguousarray(img.reshape(check_meta(img.shape, img.dtype, what)))


def check_source_metas(metas, names) -> tuple:
    """Sources given as (shape, dtype), before any pixel is decoded: each one checked
    (check_meta) and all alike (check_same); returns the first one's checked shape."""
    shapes = [check_meta(shape, dtype, name) for (shape, dtype), name in zip(metas, names)]
    check_same([(s, d) for s, (_, d) in zip(shapes, metas)], list(names))
    return shapes[0]


def check_same(metas, names) -> None:
    """Registered sources: same size, same pixel type, all gray or all RGB. ``metas``: (shape, dtype)."""
    (ref_shape, ref_dtype), ref_name = metas[0], names[0]
    kinds = {2: "gray", 3: "RGB"}
    for (shape, dtype), n in zip(metas[1:], names[1:]):
        if shape[:2] != ref_shape[:2]:
            raise InputError(f"size mismatch: {ref_name} is {ref_shape[1]}x{ref_shape[0]}, {n} is {shape[1]}x{shape[0]}")
        if len(shape) != len(ref_shape):
            raise InputError(f"mode mismatch: {ref_name} is {kinds[len(ref_shape)]}, {n} is {kinds[len(shape)]}; "
                             "convert both to the same mode first")
        if np.dtype(dtype) != np.dtype(ref_dtype):
            raise InputError(f"pixel type mismatch: {ref_name} is {np.dtype(ref_dtype)}, {n} is {np.dtype(dtype)}")


def check_sources(images, names=None) -> list[np.ndarray]:
    """Host sources that can be fused together (see check_image and check_same)."""
    names = names or [f"source {i}" for i in range(len(images))]
    imgs = [check_image(im, n) for im, n in zip(images, names)]
    check_same([(im.shape, im.dtype) for im in imgs], names)
    return imgs


CHUNK_PIXELS = 1 << 20  # elementwise work runs in row bands of about this many pixels


def bands(height: int, width: int):
    """Row slices of about CHUNK_PIXELS pixels covering ``height`` rows: the per-pixel arithmetic
    is unchanged, but float temporaries stay a few MB at any size (a whole 24 MP RGB frame in
    float64 is 576 MB)."""
    rows = max(1, CHUNK_PIXELS // max(width, 1))
    return [slice(y, min(y + rows, height)) for y in range(0, height, rows)]


def luma(img: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Spec section 1: float32 luma in [0, 1], computed in float64 and rounded once."""
    peak = max_value(img.dtype)
    out = np.empty(img.shape[:2], np.float32) if out is None else out
    w = LUMA_WEIGHTS
    for rows in bands(*img.shape[:2]):
        if img.ndim == 2:
            np.divide(img[rows], np.float32(peak), out=out[rows], dtype=np.float32)
            continue
        rgb = img[rows] * (1.0 / peak)  # float64, as skimage's img_as_float
        out[rows] = rgb[..., 0] * w[0] + rgb[..., 1] * w[1] + rgb[..., 2] * w[2]
    return out


def blend(a: np.ndarray, b: np.ndarray, mask: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Spec section 7 in float32: round(clip(M*A + (1-M)*B, 0, 1) * max), same dtype as the sources."""
    peak = np.float32(max_value(a.dtype))
    out = np.empty_like(a) if out is None else out
    for rows in bands(*a.shape[:2]):
        m = mask[rows] if a.ndim == 2 else mask[rows, :, None]
        fa = a[rows].astype(np.float32) / peak
        fb = b[rows].astype(np.float32) / peak
        fused = m * fa + (np.float32(1) - m) * fb
        out[rows] = np.rint(np.clip(fused, 0, 1) * peak)
    return out
