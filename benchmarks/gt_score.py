"""Scoring a fused result against the ground truth of a synthetic stack.

The result may be in another frame's geometry (focus-stack keeps its middle frame's) or
exposure, so it is first registered to the sharp image (ECC affine and a per-channel gain, with
``engine.align``); PSNR and SSIM are then taken over the pixels every frame of the stack covers
(``SyntheticStack.covered``) that the registered result also covers.
"""
from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

from engine import align
from engine.testing.registration import register_stack
from engine.synthetic import SyntheticStack


def register_to_truth(result: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, align.Transform]:
    t = register_stack([truth, result], "affine", strict=True)[1]
    warped, valid = align.warp(result, t, truth.shape[:2])
    return warped, valid, t


def score(result: np.ndarray, stack: SyntheticStack, margin: int = 4) -> dict:
    """{'psnr', 'ssim'} of ``result`` against ``stack.truth`` (see the module docstring)."""
    if result.shape != stack.truth.shape:
        raise ValueError(f"result {result.shape} and truth {stack.truth.shape} differ in shape")
    warped, valid, t = register_to_truth(result, stack.truth)
    region = stack.covered(margin) & valid
    a = warped.astype(np.float64)
    b = stack.truth.astype(np.float64)
    mse = float(np.mean((a[region] - b[region]) ** 2))
    psnr = math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
    _, smap = structural_similarity(warped, stack.truth, data_range=255, full=True,
                                    channel_axis=2 if warped.ndim == 3 else None)
    if smap.ndim == 3:
        smap = smap.mean(-1)
    return {"psnr": psnr, "ssim": float(smap[region].mean()), "scale": t.scale}
