"""Inference-time rewrites of GACN's parameters shared by the ONNX graph and the CUDA backend."""
from __future__ import annotations

import numpy as np

from engine.spec import BN_EPS, bn_key, conv_key


def bn_affine(params: dict[str, np.ndarray], blk: str) -> tuple[np.ndarray, np.ndarray]:
    """Inference BatchNorm of a block as per-channel (scale, shift), computed in float64."""
    p = lambda n: params[bn_key(blk, n)].astype(np.float64)  # noqa: E731
    scale = p("weight") / np.sqrt(p("running_var") + BN_EPS)
    return scale, p("bias") - p("running_mean") * scale


def fold_conv_block(params: dict[str, np.ndarray], blk: str):
    """ConvBlock = BN(ReLU(conv(x))) as ``relu(conv'(x)) * rest + shift``.

    ReLU(x) * s == ReLU(x * s) for s > 0, so positive BatchNorm scales move into the conv
    weights and bias; ``rest`` is 1 there and the original scale elsewhere. Returns float64
    (weight, bias, rest, shift).
    """
    w = params[conv_key(blk, "weight")].astype(np.float64)
    bias = params[conv_key(blk, "bias")].astype(np.float64)
    scale, shift = bn_affine(params, blk)
    fold = np.where(scale > 0, scale, 1.0)
    return w * fold[:, None, None, None], bias * fold, scale / fold, shift
