"""What a runner can run: the variants of the GACN network (engine/onnx_graph.py documents each
one's tensors, engine/tiling.py why they exist): ``whole`` (luma -> decision, mask; CSE means
in the network), ``tile`` (luma, cse -> decision, mask) and ``sums0`` .. ``sums3`` (luma, cse of
blocks < k, colmask -> sums of block k's output)."""
from __future__ import annotations

DECISION_SCOPE = "decision/"
"""Node-name prefix of the decision path (spec section 5) in the graphs engine/onnx_graph.py
builds: OpenVINO's bfloat16 decision path (engine/backends/openvino_bf16.py) finds it by it."""


def sums_block(variant: str) -> int | None:
    """k of a ``sums<k>`` variant, None for the others."""
    return int(variant[4:]) if variant.startswith("sums") else None
