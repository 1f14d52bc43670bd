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

# Receptive field (tiled execution, engine/tiling.py). Every step but the CSE means is local;
# these are the radii, in pixels of the luma input, over which each output can see:
FEATURE_RADIUS = 4                  # four 3x3 ConvBlocks (section 3)
ACTIVITY_REACH = 1 + ACTIVITY_RADIUS  # G's left/upper neighbour, then the 11x11 sum (section 4)
DECISION_RADIUS = 5 * 3 + 4 * 1     # five 7x7 spatial gates and four 3x3 ConvBlocks (section 5)
REFINE_RADIUS = max(GAUSS_RADIUS, 2 * GF_RADIUS)  # Gaussian; guided filter's box of boxes (section 6)
# A pixel of D and M depends on luma within this many pixels (left and up; one less right and
# down, where G looks at no neighbour): the overlap a tile needs to be exact in its core.
HALO = FEATURE_RADIUS + ACTIVITY_REACH + DECISION_RADIUS + REFINE_RADIUS  # = 35


def block_radius(block: int) -> int:
    """Reach of feature block ``block``'s output u_k (before its CSE) into the luma: k + 1."""
    return block + 1
