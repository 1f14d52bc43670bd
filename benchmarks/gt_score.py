"""Scoring a fused result against the ground truth of a synthetic stack, in a geometry that
favours no tool.

A result is in the geometry of the frame its tool aligned to (this engine: the middle frame by
default; focus-stack: its middle frame, or ``--reference``), and in some exposure. Scoring it in
the truth's geometry (frame 0's, for engine.synthetic) would resample every result that is not
in frame 0's geometry, softening it, and favour frame-0 results; scoring in the middle frame's
would favour those. So the sharp truth is carried into each result's *own* geometry instead:
ECC (affine, ``engine.align``) registers the truth to the result, the truth is warped by that
transform (cubic, as the renderer warps each frame), a per-channel gain is fitted (least squares,
truth to result: a stack has no one right exposure), and PSNR / SSIM are taken over the pixels
every frame of the stack covers (``SyntheticStack.covered``, carried the same way) that the warped
truth covers. ``score`` also reports the other way round as a check (the result warped into the
truth's geometry, ``psnr_truth_geometry``).
"""
from __future__ import annotations

import math

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from engine import align
from engine.testing.registration import register_stack
from engine.synthetic import SyntheticStack


def register(moving: np.ndarray, reference: np.ndarray) -> align.Transform:
    """The affine transform (ECC on ``engine.align``'s thumbnails) from ``reference`` px to ``moving`` px."""
    return register_stack([reference, moving], "affine", strict=True)[1]


def carry(img: np.ndarray, t: align.Transform, interpolation=cv2.INTER_CUBIC) -> tuple[np.ndarray, np.ndarray]:
    """``img`` resampled by ``t``'s geometry only (no gain) and its validity mask."""
    return align.warp(img, align.Transform(t.matrix), interpolation=interpolation)


def register_to_truth(result: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, align.Transform]:
    """``result`` warped into the truth's geometry (for pictures and the check)."""
    t = register(result, truth)
    warped, valid = align.warp(result, t, truth.shape[:2])
    return warped, valid, t


def compare(image: np.ndarray, truth: np.ndarray, region: np.ndarray) -> dict:
    """PSNR and SSIM of ``image`` against ``truth`` (same geometry) over ``region``, after a
    per-channel least-squares gain on the truth."""
    a = image.astype(np.float64)
    b = truth.astype(np.float64)
    a3, b3 = (a[..., None], b[..., None]) if a.ndim == 2 else (a, b)
    gain = (a3[region] * b3[region]).sum(0) / np.maximum((b3[region] ** 2).sum(0), 1e-9)
    b = (b3 * gain).reshape(b.shape)
    mse = float(np.mean((a[region] - b[region]) ** 2))
    psnr = math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
    _, smap = structural_similarity(a, b, data_range=255, full=True, channel_axis=2 if a.ndim == 3 else None)
    if smap.ndim == 3:
        smap = smap.mean(-1)
    return {"psnr": psnr, "ssim": float(smap[region].mean()), "gain": gain}


def score(result: np.ndarray, stack: SyntheticStack, margin: int = 4) -> dict:
    """{'psnr', 'ssim'} in the result's geometry, {'psnr_truth_geometry', 'ssim_truth_geometry'}
    the other way round, 'scale' of the result against the truth (see the module docstring)."""
    if result.shape != stack.truth.shape:
        raise ValueError(f"result {result.shape} and truth {stack.truth.shape} differ in shape")
    covered = stack.covered(margin).astype(np.uint8)
    t = register(stack.truth, result)                                # result px -> truth px
    truth, valid = carry(stack.truth, t)
    region = valid & (carry(covered, t, cv2.INTER_NEAREST)[0] > 0)
    own = compare(result, truth, region)
    back = register(result, stack.truth)                             # truth px -> result px
    warped, valid = carry(result, back)
    check = compare(warped, stack.truth, valid & covered.astype(bool))
    return {"psnr": own["psnr"], "ssim": own["ssim"], "psnr_truth_geometry": check["psnr"],
            "ssim_truth_geometry": check["ssim"], "scale": 1 / t.scale}
