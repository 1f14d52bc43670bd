"""What a runner can run: the variants of the GACN network (engine/onnx_graph.py documents each
one's tensors, engine/tiling.py why they exist)."""
from __future__ import annotations

VARIANTS = ("whole", "tile", "sums0", "sums1", "sums2", "sums3")
"""``whole`` (luma -> decision, mask; CSE means in the network), ``tile`` (luma, cse -> decision,
mask) and ``sums<k>`` (luma, cse of blocks < k, colmask -> sums of block k's output)."""


def sums_block(variant: str) -> int | None:
    """k of a ``sums<k>`` variant, None for the others."""
    return int(variant[4:]) if variant.startswith("sums") else None
