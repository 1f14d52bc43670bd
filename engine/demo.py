"""A synthetic multi-focus pair with a known answer, from scikit-image's bundled sample photo."""
from __future__ import annotations

import cv2
import numpy as np

from engine.errors import GacnError

BAND = 12  # px either side of the focus boundary where "which is sharp" is ambiguous


def demo_pair(sigma: float = 2.5):
    """(A, B, sharp_in_a): A is sharp inside a centred disc, B outside it."""
    try:
        from skimage import data
    except ImportError:
        raise GacnError("--demo needs scikit-image's sample images: pip install 'gacn-engine[demo]'") from None
    img = data.astronaut()
    h, w = img.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    sharp_in_a = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (0.3 * min(h, w)) ** 2
    blurred = cv2.GaussianBlur(img, (0, 0), sigma)
    sel = sharp_in_a[:, :, None]
    return np.where(sel, img, blurred), np.where(sel, blurred, img), sharp_in_a


def decision_agreement(decision: np.ndarray, sharp_in_a: np.ndarray) -> tuple[float, float]:
    """Fraction of pixels where D > 0.5 matches the truth: everywhere, and away from the boundary."""
    agree = (decision > 0.5) == sharp_in_a
    edge = cv2.morphologyEx(sharp_in_a.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    band = cv2.dilate(edge, np.ones((2 * BAND + 1, 2 * BAND + 1), np.uint8)).astype(bool)
    return float(agree.mean()), float(agree[~band].mean())
