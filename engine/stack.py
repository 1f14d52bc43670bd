"""Focus-stack accumulators on the host (spec section 8), constant memory in the frame count.

The authors keep all N frames and the whole decision volume; V_i needs only M_i and V_0, so a
running maximum, its frame index and the running output give the same selection frame by frame.
"""
from __future__ import annotations

import numpy as np

from engine import preprocess

EPS = np.float32(1e-4)


def _take(dst: np.ndarray, src: np.ndarray, where: np.ndarray) -> None:
    np.copyto(dst, src, where=where if dst.ndim == 2 else where[:, :, None])


class Calibration:
    """Decision calibration: per pixel, the frame with the largest V_i (first on ties)."""

    def __init__(self, m1: np.ndarray, frame0: np.ndarray, frame1: np.ndarray):
        self.v0 = m1.astype(np.float32, copy=True)
        self.best = self.v0.copy()
        self.index = np.zeros(m1.shape, np.int32)
        self.out = frame0.copy()
        self._offer(np.float32(1) - m1, frame1, 1)

    def _offer(self, v: np.ndarray, frame: np.ndarray, i: int) -> None:
        win = v > self.best
        np.copyto(self.best, v, where=win)
        self.index[win] = i
        _take(self.out, frame, win)

    def update(self, m: np.ndarray, frame: np.ndarray, i: int) -> None:
        self._offer(self.v0 / (m + EPS) * (np.float32(1) - m), frame, i)


class Sequential:
    """The authors' one-after-another fusion: blend 0 with 1, the result with 2, and so on.

    The running result stays float32 (as in the original) and its luma is re-derived with the
    section 1 coefficients. ``index`` is the frame with the largest blending weight.
    """

    def __init__(self, frame0: np.ndarray):
        self.peak = np.float32(preprocess.max_value(frame0.dtype))
        self.dtype = frame0.dtype
        self.fused = frame0.astype(np.float32) / self.peak
        self.best = np.ones(frame0.shape[:2], np.float32)
        self.index = np.zeros(frame0.shape[:2], np.int32)

    def luma(self) -> np.ndarray:
        if self.fused.ndim == 2:
            return self.fused
        w = preprocess.LUMA_WEIGHTS.astype(np.float32)
        out = np.empty(self.fused.shape[:2], np.float32)
        for rows in preprocess.bands(*out.shape[:2]):
            f = self.fused[rows]
            out[rows] = w[0] * f[:, :, 0] + w[1] * f[:, :, 1] + w[2] * f[:, :, 2]
        return out

    def update(self, m: np.ndarray, frame: np.ndarray, i: int) -> None:
        for rows in preprocess.bands(*m.shape[:2]):  # bands: bounded float temporaries
            mm = m[rows] if frame.ndim == 2 else m[rows, :, None]
            self.fused[rows] = mm * self.fused[rows] + (np.float32(1) - mm) * (frame[rows].astype(np.float32) / self.peak)
        mc = np.clip(m, 0, 1)
        self.best *= mc
        w = np.float32(1) - mc
        win = w > self.best
        np.copyto(self.best, w, where=win)
        self.index[win] = i

    @property
    def out(self) -> np.ndarray:
        out = np.empty(self.fused.shape, self.dtype)
        for rows in preprocess.bands(*out.shape[:2]):
            out[rows] = np.rint(np.clip(self.fused[rows], 0, 1) * self.peak)
        return out
