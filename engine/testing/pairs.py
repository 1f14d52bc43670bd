"""Synthetic pairs at any size, for the memory tests and benchmarks."""
from __future__ import annotations

import cv2
import numpy as np


def camera_pair(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured RGB scene with a sharp left half in A and a sharp right half in B (both
    blurred where the other is sharp), at any size without holding more than the two frames."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(height // 8, 8), max(width // 8, 8), 3), dtype=np.uint8)
    scene = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    scene = cv2.addWeighted(scene, 0.6, rng.integers(0, 256, (height, width, 3), dtype=np.uint8), 0.4, 0)
    blurred = cv2.GaussianBlur(scene, (0, 0), 3)
    a, b = scene.copy(), scene
    a[:, width // 2:] = blurred[:, width // 2:]
    b[:, :width // 2] = blurred[:, :width // 2]
    return a, b
