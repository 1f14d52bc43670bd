"""GACN in PyTorch: the reference the other paths are checked against (spec sections 2-6).

The network takes K >= 2 luma planes stacked as ``[K, 1, H, W]``: frame 0 is the reference
(source A) and each other frame k is a source B. It returns D and M for the K-1 pairs
(0, k), so a pair is K = 2 and a focus stack's decision calibration (spec section 8) shares
frame 0's features across the batch. The steps are separate methods so the PyTorch-CUDA
backend can replace the activity, spatial-gate and boundary steps with its kernels.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.checkpoint import load_gacn
from engine.spec import (ACTIVITY_RADIUS, BN_EPS, CONV_BLOCKS, GAUSS_RADIUS, GF_EPS, GF_RADIUS, SHARPNESS,
                         SSE_CHANNELS, THRESH_HIGH, THRESH_LOW, bn_key, conv_key, cse_keys, gaussian_taps, sse_key)


class ConvBlock(nn.Module):
    """Conv3x3 -> ReLU -> BatchNorm (inference). BatchNorm comes after the ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=(1, 1))
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def bn_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """BatchNorm as y = scale * x + shift per channel."""
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + BN_EPS)
        return scale, self.bn.bias - self.bn.running_mean * scale

    def forward(self, x):
        scale, shift = self.bn_affine()
        return F.relu(self.conv(x)) * scale[:, None, None] + shift[:, None, None]


class ChannelSE(nn.Module):
    """Squeeze-excitation over channels; its global mean ties every pixel to the whole image."""

    def __init__(self, c: int = 16, hidden: int = 2):
        super().__init__()
        self.fc1 = nn.Linear(c, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, c, bias=False)

    def forward(self, x, scale=None):
        """``scale`` [B,16]: given scales (tiled execution) in place of the excitation of the mean."""
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3)))))) if scale is None else scale
        return x * s[:, :, None, None]


class SpatialSE(nn.Module):
    """x * sigmoid(conv7x7(x; C -> 1))."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, 1, 7, padding=(3, 3), bias=False)

    def forward(self, x):
        return x * torch.sigmoid(self.conv(x))


def box_sum(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Sum over the (2r+1)^2 window with zero padding, per channel, as two 1-D passes."""
    c = x.shape[1]
    k = 2 * radius + 1
    ones_h = torch.ones((c, 1, 1, k), dtype=x.dtype, device=x.device)
    x = F.conv2d(x, ones_h, padding=(0, radius), groups=c)
    return F.conv2d(x, ones_h.transpose(2, 3), padding=(radius, 0), groups=c)


def squared_gradient(f: torch.Tensor) -> torch.Tensor:
    """G of spec section 4: squared differences to the left and upper neighbours (zero outside)."""
    left = F.pad(f, (1, 0, 0, 0))[:, :, :, :-1]
    up = F.pad(f, (0, 0, 1, 0))[:, :, :-1, :]
    return (left - f) ** 2 + (up - f) ** 2


class GACN(nn.Module):
    def __init__(self):
        super().__init__()
        fe = [(1, 16), (16, 16), (32, 16), (48, 16)]
        self.fe_blocks = nn.ModuleList(ConvBlock(i, o) for i, o in fe)
        self.cse = nn.ModuleList(ChannelSE() for _ in range(4))
        dp = [(64, 48), (48, 32), (32, 16), (16, 1)]
        self.dp_blocks = nn.ModuleList(ConvBlock(i, o) for i, o in dp)
        self.sse = nn.ModuleList(SpatialSE(c) for c in (64, 48, 32, 16, 1))
        g = torch.from_numpy(gaussian_taps()).float()
        self.register_buffer("gauss", g, persistent=False)

    # -- weights --------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> "GACN":
        """Build from an official checkpoint, strictly (its own key names)."""
        return cls().load_official(load_gacn(path)).eval()

    def load_official(self, params: dict[str, np.ndarray]) -> "GACN":
        t = lambda k: torch.from_numpy(params[k].copy())  # noqa: E731
        names = list(CONV_BLOCKS)
        with torch.no_grad():
            for blk, block in zip(names, [*self.fe_blocks, *self.dp_blocks]):
                block.conv.weight.copy_(t(conv_key(blk, "weight")))
                block.conv.bias.copy_(t(conv_key(blk, "bias")))
                for p in ("weight", "bias", "running_mean", "running_var"):
                    getattr(block.bn, p).copy_(t(bn_key(blk, p)))
            for i, cse in enumerate(self.cse):
                fc1, fc2 = cse_keys(i)
                cse.fc1.weight.copy_(t(fc1))
                cse.fc2.weight.copy_(t(fc2))
            for i, sse in zip(SSE_CHANNELS, self.sse):
                sse.conv.weight.copy_(t(sse_key(i)))
        return self

    # -- the steps --------------------------------------------------------------------------
    def features(self, y: torch.Tensor, cse: torch.Tensor | None = None) -> torch.Tensor:
        """Spec section 3: [B,1,H,W] luma -> [B,64,H,W] features (shared weights); ``cse``
        [B,64]: the four CSE scales of each frame, given (tiled execution, engine.tiling)."""
        s = [None] * 4 if cse is None else [cse[:, 16 * i:16 * (i + 1)] for i in range(4)]
        f0 = self.cse[0](self.fe_blocks[0](y), s[0])
        f1 = self.cse[1](self.fe_blocks[1](f0), s[1])
        f2 = self.cse[2](self.fe_blocks[2](torch.cat((f0, f1), 1)), s[2])
        f3 = self.cse[3](self.fe_blocks[3](torch.cat((f0, f1, f2), 1)), s[3])
        return torch.cat((f0, f1, f2, f3), 1)

    def cse_scales(self, y: torch.Tensor) -> torch.Tensor:
        """[B,64]: the CSE scales the whole frames give (what the sums passes compute in tiles)."""
        scales, parts = [], []
        x = y
        for block, cse in zip(self.fe_blocks, self.cse):
            u = block(x)
            s = torch.sigmoid(cse.fc2(F.relu(cse.fc1(u.mean(dim=(2, 3))))))
            scales.append(s)
            parts.append(u * s[:, :, None, None])
            x = torch.cat(parts, 1)
        return torch.cat(scales, 1)

    @staticmethod
    def activity(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
        """Spec section 4: Bm = sigmoid(1000 * boxsum(G_A - G_B)); fa may have batch 1."""
        diff = squared_gradient(fa) - squared_gradient(fb)
        return torch.sigmoid(SHARPNESS * box_sum(diff, ACTIVITY_RADIUS))

    def decision_logits(self, bm: torch.Tensor) -> torch.Tensor:
        """Spec section 5 up to d4 (before the final sigmoid)."""
        x = self.sse[0](bm)
        for block, sse in zip(self.dp_blocks, self.sse[1:]):
            x = sse(block(x))
        return x

    def boundary_refine(self, d4, ya, yb):
        """Spec sections 5 (last line) and 6: d4 and the luma planes -> (D, M)."""
        d = torch.sigmoid(SHARPNESS * d4)
        g = self.gauss.to(d.dtype)
        bl = F.conv2d(F.conv2d(d, g.view(1, 1, 1, -1), padding=(0, GAUSS_RADIUS)),
                      g.view(1, 1, -1, 1), padding=(GAUSS_RADIUS, 0))
        m1 = (bl > THRESH_HIGH).to(d.dtype)
        m2 = (bl < THRESH_LOW).to(d.dtype)
        m3 = m1 * bl + m2 * (1 - bl)
        bd = 1 - torch.abs(2 * (bl * m3 + 0.5 * (1 - m3)) - 1)
        guide = ya * d + (1 - d) * yb
        gf = guided_filter(guide, d, GF_RADIUS, GF_EPS)
        return d, gf * bd + d * (1 - bd)

    def forward(self, luma: torch.Tensor, cse: torch.Tensor | None = None):
        """[K,1,H,W] luma (frame 0 = reference) -> D, M each [K-1,1,H,W]; ``cse`` [K,64] as in features."""
        f = self.features(luma, cse)
        bm = self.activity(f[:1], f[1:])
        d4 = self.decision_logits(bm)
        return self.boundary_refine(d4, luma[:1], luma[1:])


def guided_filter(guide, src, radius: int, eps: float):
    """He et al.'s guided filter with box means over the window clipped to the image."""
    ones = torch.ones_like(guide[:1])
    n = box_sum(ones, radius)
    mean = lambda x: box_sum(x, radius) / n  # noqa: E731
    mi, mp = mean(guide), mean(src)
    a = (mean(guide * src) - mi * mp) / (mean(guide * guide) - mi * mi + eps)
    b = mp - a * mi
    return mean(a) * guide + mean(b)
