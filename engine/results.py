"""What the public API returns: one fused pair, one fused stack, one streamed frame."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FusionResult:
    fused: np.ndarray                     # same dtype and mode as the sources
    decision: np.ndarray | None = None    # D, float32 H x W (spec section 5)
    mask: np.ndarray | None = None        # M, float32 H x W (spec section 6)
    timings: dict = field(default_factory=dict)  # device executors: h2d, compute, d2h, total in ms


@dataclass
class StackResult:
    fused: np.ndarray
    index: np.ndarray                     # int32 H x W: which frame each pixel came from
    frames: int
    transforms: list | None = None        # alignment: one engine.align.Transform per frame, if aligned
    valid_rect: tuple | None = None       # (x0, y0, x1, y1): the area every aligned frame covers
    reference: int | None = None          # aligned: the frame whose geometry the output has


@dataclass
class StreamResult:
    index: int
    fused: np.ndarray | None = None
    decision: np.ndarray | None = None
    mask: np.ndarray | None = None
    error: Exception | None = None
    timings: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None
