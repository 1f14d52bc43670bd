"""Host-side pixel arithmetic of spec sections 1 and 7, shared by every backend's checks."""
from __future__ import annotations

import numpy as np

from engine.errors import InputError

MIN_SIDE = 8  # the guided filter (r = 3) needs H, W > 2r + 1
LUMA_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])  # skimage rgb2gray, as the authors used


def max_value(dtype) -> int:
    return 255 if np.dtype(dtype) == np.uint8 else 65535


def check_image(img, what: str = "image") -> np.ndarray:
    """An image the engine accepts: uint8/uint16, (H, W) or (H, W, 3), both sides >= 8."""
    if not isinstance(img, np.ndarray):
        raise InputError(f"{what}: expected a numpy array, got {type(img).__name__}")
    if img.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{what}: unsupported dtype {img.dtype}; pass uint8 or uint16 pixels")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise InputError(f"{what}: shape {img.shape} is neither gray (H, W) nor RGB (H, W, 3)")
    if min(img.shape[:2]) < MIN_SIDE:
        raise InputError(f"{what}: {img.shape[1]}x{img.shape[0]} is too small; both sides must be >= {MIN_SIDE} px")
    return np.ascontiguousarray(img)


def check_sources(images, names=None) -> list[np.ndarray]:
    """Registered sources: same size, same pixel type, all gray or all RGB."""
    names = names or [f"source {i}" for i in range(len(images))]
    imgs = [check_image(im, n) for im, n in zip(images, names)]
    ref, ref_name = imgs[0], names[0]
    for im, n in zip(imgs[1:], names[1:]):
        if im.shape[:2] != ref.shape[:2]:
            raise InputError(f"size mismatch: {ref_name} is {ref.shape[1]}x{ref.shape[0]}, {n} is {im.shape[1]}x{im.shape[0]}")
        if im.ndim != ref.ndim:
            kinds = {2: "gray", 3: "RGB"}
            raise InputError(f"mode mismatch: {ref_name} is {kinds[ref.ndim]}, {n} is {kinds[im.ndim]}; "
                             "convert both to the same mode first")
        if im.dtype != ref.dtype:
            raise InputError(f"pixel type mismatch: {ref_name} is {ref.dtype}, {n} is {im.dtype}")
    return imgs


def luma(img: np.ndarray) -> np.ndarray:
    """Spec section 1: float32 luma in [0, 1], computed in float64 and rounded once."""
    peak = max_value(img.dtype)
    if img.ndim == 2:
        return img.astype(np.float32) / np.float32(peak)
    rgb = img * (1.0 / peak)  # float64, as skimage's img_as_float
    w = LUMA_WEIGHTS
    return (rgb[..., 0] * w[0] + rgb[..., 1] * w[1] + rgb[..., 2] * w[2]).astype(np.float32)


def blend(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Spec section 7 in float32: round(clip(M*A + (1-M)*B, 0, 1) * max), same dtype as the sources."""
    peak = max_value(a.dtype)
    m = mask if a.ndim == 2 else mask[:, :, None]
    fa = a.astype(np.float32) / np.float32(peak)
    fb = b.astype(np.float32) / np.float32(peak)
    fused = m * fa + (np.float32(1) - m) * fb
    return np.rint(np.clip(fused, 0, 1) * np.float32(peak)).astype(a.dtype)
