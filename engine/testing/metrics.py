"""Agreement with the authors' golden outputs, and the tolerances every path is held to."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    min_agreement: float    # fraction of pixels where (D > 0.5) matches the golden D
    min_psnr_db: float      # fused image against the golden fused image
    max_mask_p999: float    # 99.9th percentile of |M - golden M|


FP32 = Tolerance(0.9999, 60.0, 1e-3)
FP16 = Tolerance(0.995, 40.0, 5e-2)
STACK_MIN_IDENTICAL = 0.995


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    peak = 255.0 if a.dtype == np.uint8 else 65535.0
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


def golden_report(fused, decision, mask, golden_fused, golden_decision, golden_mask) -> dict:
    return {
        "agreement": float(np.mean((decision > 0.5) == (golden_decision > 0.5))),
        "psnr_db": psnr(fused, golden_fused),
        "mask_p999": float(np.percentile(np.abs(mask.astype(np.float64) - golden_mask), 99.9)),
    }


def within(report: dict, tol: Tolerance) -> bool:
    return (report["agreement"] >= tol.min_agreement and report["psnr_db"] >= tol.min_psnr_db
            and report["mask_p999"] <= tol.max_mask_p999)
