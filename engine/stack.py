"""Every focus-stack accumulator on the host, each constant in memory in the frame count.

``FocusWeights`` (the default strategy, no network); the authors' ``Calibration`` (spec section
8: they keep all N frames and the whole decision volume, but V_i needs only M_i and V_0, so a
running maximum, its frame index and the running output give the same selection frame by frame)
and ``Sequential``. engine.strategies drives them; the executors wrap the authors' two
(engine.pipeline_api.StackAccumulators).
"""
from __future__ import annotations

import cv2
import numpy as np

from engine import preprocess

EPS = np.float32(1e-4)


def to_float(img: np.ndarray) -> np.ndarray:
    """A uint8/uint16 frame as float32 in [0, 1]."""
    return img.astype(np.float32) / np.float32(preprocess.max_value(img.dtype))


def as_image(f: np.ndarray, dtype) -> np.ndarray:
    """Float [0, 1] back to the frames' type: round(clip(f) * max), in bands of rows."""
    peak = np.float32(preprocess.max_value(dtype))
    out = np.empty(f.shape, dtype)
    for rows in preprocess.bands(*f.shape[:2]):
        out[rows] = np.rint(np.clip(f[rows], 0, 1) * peak)
    return out


class FocusWeights:
    """Per-pixel soft selection by a local focus measure, one frame at a time.

    The measure is the local energy of the luma Laplacian, E = G_sigma * (lap L)^2 (L in [0, 1]);
    each frame's weight is E ** power normalised over the frames, so the sharpest frame
    dominates while frames about as sharp (a pixel between two focus planes, a flat region where
    only noise differs) are averaged, which also lowers the noise. Accumulated in the log domain
    with a running maximum (log-sum-exp): memory is the weighted sum, the weight sum, the running
    maximum and the index map, whatever the number of frames. The measure is computed in bands
    of rows with a halo of HALO rows, the same values as over the whole frame. Uncovered pixels
    (``valid`` False) get weight 0."""

    FLOOR = 1e-8     # energy floor (luma^2 units): flat regions get equal weights
    INVALID = np.float32(-1e30)
    HALO = 8         # rows: the 3x3 Laplacian (1) and OpenCV's float Gaussian kernel at sigma 1.5 (6)
    BAND = 256

    def __init__(self, sigma: float = 1.5, power: float = 3.0):
        self.sigma, self.power = sigma, np.float32(power)
        self.num = self.den = self.top = self.index = None
        self.dtype = None

    def measure(self, frame: np.ndarray, rows: slice | None = None) -> np.ndarray:
        """E over ``rows`` of the frame (all rows by default), from a band with its halo."""
        h = frame.shape[0]
        rows = rows or slice(0, h)
        y0, y1 = max(rows.start - self.HALO, 0), min(rows.stop + self.HALO, h)
        lap = cv2.Laplacian(preprocess.luma(frame[y0:y1]), cv2.CV_32F, ksize=3)
        energy = cv2.GaussianBlur(lap * lap, (0, 0), self.sigma)
        return energy[rows.start - y0:rows.stop - y0]

    def add(self, frame: np.ndarray, valid: np.ndarray | None, i: int) -> None:
        h, w = frame.shape[:2]
        if self.num is None:
            self.dtype = frame.dtype
            self.num = np.zeros(frame.shape, np.float32)
            self.den = np.zeros((h, w), np.float32)
            self.top = np.full((h, w), self.INVALID, np.float32)
            self.index = np.zeros((h, w), np.int32)
        for y in range(0, h, self.BAND):
            rows = slice(y, min(y + self.BAND, h))
            lw = self.power * np.log(self.measure(frame, rows) + np.float32(self.FLOOR))
            if valid is not None:
                lw[~valid[rows]] = self.INVALID
            top = self.top[rows]
            new_top = np.maximum(top, lw)
            old, new = np.exp(top - new_top), np.exp(lw - new_top)
            f = to_float(frame[rows])
            if f.ndim == 3:
                self.num[rows] = self.num[rows] * old[..., None] + f * new[..., None]
            else:
                self.num[rows] = self.num[rows] * old + f * new
            self.den[rows] = self.den[rows] * old + new
            self.index[rows][lw > top] = i
            self.top[rows] = new_top

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty(self.num.shape, np.float32)
        for rows in preprocess.bands(*out.shape[:2]):
            d = np.maximum(self.den[rows], np.float32(1e-30))
            out[rows] = self.num[rows] / (d[..., None] if out.ndim == 3 else d)
        return as_image(out, self.dtype), self.index


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
        self.dtype = frame0.dtype
        self.fused = to_float(frame0)
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
            self.fused[rows] = mm * self.fused[rows] + (np.float32(1) - mm) * to_float(frame[rows])
        mc = np.clip(m, 0, 1)
        self.best *= mc
        w = np.float32(1) - mc
        win = w > self.best
        np.copyto(self.best, w, where=win)
        self.index[win] = i

    @property
    def out(self) -> np.ndarray:
        return as_image(self.fused, self.dtype)
