"""The constants of GACN_SPEC.md, the architecture and the checkpoint's key names, in one place
for the checkpoint reader, the PyTorch model, the ONNX graph, the torch-cuda network and the
parameter folding (the CUDA kernels carry the same numbers in kernels/src/gacn_math.h)."""
from __future__ import annotations

import numpy as np

# The architecture (spec section 0): block name -> (in channels, out channels) of its 3x3 conv.
CONV_BLOCKS = {
    "feature_extraction_conv0": (1, 16), "feature_extraction_conv1": (16, 16),
    "feature_extraction_conv2": (32, 16), "feature_extraction_conv3": (48, 16),
    "decision_path_conv1": (64, 48), "decision_path_conv2": (48, 32),
    "decision_path_conv3": (32, 16), "decision_path_conv4": (16, 1),
}
FEATURE_BLOCKS = tuple(CONV_BLOCKS)[:4]     # each followed by CSE i (i = 0..3)
DECISION_BLOCKS = tuple(CONV_BLOCKS)[4:]
CSE_COUNT = 4
SSE_CHANNELS = {4: 64, 5: 48, 6: 32, 7: 16, 8: 1}   # spatial gate i -> the channels it reads


# The checkpoint's key names (the authors' state dict).
def conv_key(block: str, param: str) -> str:
    """``weight`` or ``bias`` of a block's 3x3 conv."""
    return f"{block}.{block}_Conv2d.{param}"


def bn_key(block: str, param: str) -> str:
    """``weight``, ``bias``, ``running_mean``, ``running_var`` or ``num_batches_tracked`` of a block's BatchNorm."""
    return f"{block}.{block}_BatchNorm.{param}"


def cse_keys(i: int) -> tuple[str, str]:
    """The two fully connected layers (fc1 [2,16], fc2 [16,2]) of channel gate ``i`` (0..3)."""
    return f"se_{i}.fc.0.weight", f"se_{i}.fc.2.weight"


def sse_key(i: int) -> str:
    """The 7x7 conv [1,C,7,7] of spatial gate ``i`` (4..8)."""
    return f"se_{i}.fc.0.weight"

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
