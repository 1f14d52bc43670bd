"""Exact tiled execution of GACN: the tile plan and the CSE means computed pass by pass.

Everything in GACN is local except the CSE means (spec section 2): block k's scale s_k is a
function of the mean of its output u_k over the whole frame, and u_k depends on s_0..s_{k-1}.
So a frame too large to run whole is run in two stages (engine.pipeline drives them):

1. Four ``sums`` passes over tiles (k = 0..3): each tile runs feature blocks 0..k with the scales
   known so far and returns the row sums of u_k; the rows and columns of the tile's own core
   (the cores partition the frame) are added in float64, so every pixel counts once. After pass
   k the mean gives s_k (``excite``). u_k sees the luma within ``block_radius(k)`` = k + 1
   pixels, so these windows need only a 4-pixel overlap.
2. The ``tile`` network over windows that overlap by ``HALO`` = 35 pixels (engine.spec: the
   receptive field of D and M), with the frame's scales as inputs; each window's core is exact.

Windows have one size per plan (at most the tile side: one TensorRT shape, one ONNX Runtime
memory plan, one captured CUDA graph): border windows are shifted inwards rather than cut, so that a window edge
is either the frame's edge, where the network sees the same zero padding and clipped guided-
filter windows as the whole frame does, or at least HALO pixels from its core. The price is the
recomputation: the sums passes run the feature blocks 1 + 2 + 3 + 4 times per frame (measured
in benchmarks/RESULTS.md) and overlapping windows recompute their halo.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.spec import CSE_COUNT, HALO, block_radius, cse_keys

SUMS_HALO = block_radius(3)     # the widest reach among the sums passes
MIN_TILE = 2 * HALO + 8          # a window must leave a core of at least 8 pixels
TILE_ALIGN = 16                  # chosen tile sides are multiples of this (kernels, engine shapes)


@dataclass(frozen=True)
class Tile:
    """A window of the frame the network runs on and the core of it whose output is kept."""
    window: tuple[int, int, int, int]   # y0, y1, x0, x1 in the frame
    core: tuple[int, int, int, int]     # y0, y1, x0, x1 in the frame, inside the window

    @property
    def core_in_window(self) -> tuple[slice, slice]:
        (wy, _, wx, _), (y0, y1, x0, x1) = self.window, self.core
        return slice(y0 - wy, y1 - wy), slice(x0 - wx, x1 - wx)

    @property
    def window_slices(self) -> tuple[slice, slice]:
        y0, y1, x0, x1 = self.window
        return slice(y0, y1), slice(x0, x1)

    @property
    def core_slices(self) -> tuple[slice, slice]:
        y0, y1, x0, x1 = self.core
        return slice(y0, y1), slice(x0, x1)


def _spans(n: int, side: int, halo: int) -> list[tuple[int, int, int, int]]:
    """(core0, core1, win0, win1) along one axis: cores split n evenly; every window has the one
    length that the largest core needs (at most ``side``), shifted inwards at the borders."""
    if n <= side:
        return [(0, n, 0, n)]
    count = math.ceil(n / (side - 2 * halo))
    edges = [round(i * n / count) for i in range(count + 1)]
    length = min(side, max(b - a for a, b in zip(edges, edges[1:])) + 2 * halo)
    spans = []
    for c0, c1 in zip(edges, edges[1:]):
        w0 = min(max(c0 - halo - (length - (c1 - c0) - 2 * halo) // 2, 0), n - length)
        assert w0 <= max(c0 - halo, 0) and w0 + length >= min(c1 + halo, n), (n, side, halo, c0, c1, w0)
        spans.append((c0, c1, w0, w0 + length))
    return spans


def check_tile(tile: int | None) -> int | None:
    """A user's tile side: None (choose), 0 (never tile) or at least MIN_TILE."""
    from engine.errors import InputError
    if tile is not None and (not isinstance(tile, int) or tile < 0 or 0 < tile < MIN_TILE):
        raise InputError(f"--tile {tile}: a tile must be at least {MIN_TILE} px, twice the network's {HALO} px "
                         "overlap plus a core of 8 px (or 0 to never tile)")
    return tile


def plan(height: int, width: int, side: int, halo: int = HALO) -> list[Tile]:
    """Tiles covering a ``height`` x ``width`` frame with windows of ``side`` (clipped to the frame)."""
    if side < 2 * halo + 1:
        raise ValueError(f"a tile side of {side} px leaves no core inside a {halo} px overlap")
    return [Tile((wy0, wy1, wx0, wx1), (cy0, cy1, cx0, cx1))
            for cy0, cy1, wy0, wy1 in _spans(height, side, halo)
            for cx0, cx1, wx0, wx1 in _spans(width, side, halo)]


def window_shape(height: int, width: int, side: int, halo: int = HALO) -> tuple[int, int]:
    """The one window shape of a plan: at most ``side``, the frame where it is smaller."""
    (_, _, y0, y1), (_, _, x0, x1) = _spans(height, side, halo)[0], _spans(width, side, halo)[0]
    return y1 - y0, x1 - x0


def excite(fc1: np.ndarray, fc2: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """The CSE's squeeze-excitation (spec section 2) of per-frame channel means [K,16], in float64."""
    hidden = np.maximum(mean.astype(np.float64) @ fc1.astype(np.float64).T, 0.0)
    return 1.0 / (1.0 + np.exp(-(hidden @ fc2.astype(np.float64).T)))


def tiles_unsupported(variant: str, cse_weights) -> str | None:
    """Why ``variant`` cannot run without the CSE weights (tiles need them; only a checkpoint has them), or None."""
    if variant != "whole" and cse_weights is None:
        return ("an exported graph (--onnx) runs whole frames only; give the checkpoint (--weights) "
                "to run frames in tiles")
    return None


def cse_weights(params: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fc1 [2,16], fc2 [16,2]) of the four CSE blocks, from checkpoint parameters."""
    return [tuple(params[k] for k in cse_keys(i)) for i in range(CSE_COUNT)]
