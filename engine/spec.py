"""The constants of GACN_SPEC.md, in one place for the PyTorch model, the ONNX graph and the
parameter folding (the CUDA kernels carry the same numbers in kernels/src/gacn_math.h)."""
from __future__ import annotations

import numpy as np

BN_EPS = 1e-5                       # BatchNorm2d, inference (section 2)
SHARPNESS = 1000.0                  # sigmoid(1000 * x), sections 4 and 5
ACTIVITY_RADIUS = 5                 # 11x11 box sum (section 4)
GAUSS_RADIUS, GAUSS_SIGMA = 4, 8.0  # 9x9 Gaussian (section 6)
GF_RADIUS, GF_EPS = 3, 0.1          # guided filter (section 6)
THRESH_HIGH, THRESH_LOW = 0.8, 0.1  # threshold smoothing (section 6)


def gaussian_taps() -> np.ndarray:
    """1-D taps whose outer product is the normalised 9x9 Gaussian (it is separable)."""
    x = np.arange(-GAUSS_RADIUS, GAUSS_RADIUS + 1, dtype=np.float64)
    g = np.exp(-x * x / (2 * GAUSS_SIGMA ** 2))
    return g / g.sum()
