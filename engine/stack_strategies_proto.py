"""PROTOTYPE stack strategies for issue 8, built on the public pair API only.

Not wired into ``Fuser``/``gacn-fuse``: the lead ports the winner into the pipeline. Everything
here uses ``Fuser.fuse(a, b, maps=True)`` on host numpy arrays (any backend) and
``engine.align`` for registration, so the strategies can be compared before they are ported.

Every strategy takes frames already in the reference's geometry with a validity mask each (see
``aligned``) and returns ``(fused, index)``: ``index`` (int32 H x W) is the frame each output
pixel takes most of its value from (its depth, in frame order). Where a frame is not valid
(uncovered after warping) the pairwise merge takes the other side (M forced to 1 or 0).

Memory: ``sequential`` holds one running result; ``tree`` holds at most ceil(log2 N) + 1
pending intermediates (a binary-counter merge: a node is merged as soon as its sibling exists);
``FocusWeights`` holds four planes whatever N.

Measured (benchmarks/stack_quality.py, benchmarks/STACKS.md): ``focus_weights`` beats
focus-stack by +2.1..+3.8 dB PSNR on every ground-truth stack (registered and with 3 %
breathing), ``tree`` by -0.4..+1.7 dB, ``sequential`` by -1.4..+1.6 dB, the authors' calibration
loses 2.6..11.9 dB; on the real stacks focus-weights shows no mosaic and no doubled edges. On
two-frame pairs GACN's own fusion stays best on the no-reference metrics.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from engine import align, preprocess

log = logging.getLogger(__name__)


def aligned(frames: Iterable[np.ndarray], model: str = "auto", *, names: Sequence[str] | None = None,
            strict: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray, align.Transform]]:
    """Frames warped to frame 0 one at a time (constant memory), with their validity masks.

    ``model='none'`` passes them through. A frame that cannot be registered is passed through
    unaligned under ``strict=False`` (a warning is logged), or raises ``AlignmentError``."""
    if model == "none":
        for i, f in enumerate(frames):
            yield f, np.ones(f.shape[:2], bool), align.Transform(frame=i)
        return
    aligner = align.StackAligner(model, strict=strict, names=names)
    for f in frames:
        t = aligner.add(f)
        if not t.ok:
            yield f, np.ones(f.shape[:2], bool), t
            continue
        w, v = align.warp(f, t)
        yield w, v, t


def _mask(fuser, a, b, va, vb) -> np.ndarray:
    """GACN's M for (a, b) (1 = take a), overridden where only one side is valid."""
    m = fuser.fuse(a, b, maps=True).mask
    if not (va.all() and vb.all()):
        m = np.where(va & ~vb, np.float32(1), np.where(vb & ~va, np.float32(0), m))
    return m.astype(np.float32)


def _as_image(f: np.ndarray, dtype) -> np.ndarray:
    """A float [0, 1] intermediate as the engine's input pixel type."""
    peak = preprocess.max_value(dtype)
    return np.rint(np.clip(f, 0, 1) * peak).astype(dtype)


def _to_float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / np.float32(preprocess.max_value(img.dtype))


@dataclass
class _Node:
    image: np.ndarray      # float32 [0, 1], H x W (x 3)
    valid: np.ndarray      # bool
    weight: np.ndarray     # float32: blend weight of ``index`` in ``image``
    index: np.ndarray      # int32
    level: int


def _merge(fuser, a: _Node, b: _Node, dtype) -> _Node:
    ia, ib = _as_image(a.image, dtype), _as_image(b.image, dtype)
    m = _mask(fuser, ia, ib, a.valid, b.valid)
    mm = m if a.image.ndim == 2 else m[..., None]
    image = mm * a.image + (1 - mm) * b.image
    wa, wb = m * a.weight, (1 - m) * b.weight
    take_a = wa >= wb
    return _Node(image, a.valid | b.valid, np.where(take_a, wa, wb), np.where(take_a, a.index, b.index),
                 max(a.level, b.level) + 1)


def tree(fuser, frames: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Balanced tree of pairwise fusions, neighbours first: (0,1), (2,3), ... then their results;
    N - 1 fusions, depth ceil(log2 N); float32 intermediates (quantised only as GACN's input)."""
    pending: list[_Node] = []
    dtype = None
    for i, (f, v) in enumerate(frames):
        dtype = f.dtype
        node = _Node(_to_float(f), v, np.ones(f.shape[:2], np.float32), np.full(f.shape[:2], i, np.int32), 0)
        while pending and pending[-1].level == node.level:
            node = _merge(fuser, pending.pop(), node, dtype)
        pending.append(node)
    if len(pending) == 1 and pending[0].level == 0:
        raise ValueError("a focus stack needs at least 2 frames")
    node = pending.pop()
    while pending:
        node = _merge(fuser, pending.pop(), node, dtype)
    return _as_image(node.image, dtype), node.index


def sequential(fuser, frames: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The authors' one-after-another fusion with float running result, validity-aware."""
    it = iter(frames)
    f0, v0 = next(it)
    dtype = f0.dtype
    node = _Node(_to_float(f0), v0, np.ones(f0.shape[:2], np.float32), np.zeros(f0.shape[:2], np.int32), 0)
    for i, (f, v) in enumerate(it, 1):
        leaf = _Node(_to_float(f), v, np.ones(f.shape[:2], np.float32), np.full(f.shape[:2], i, np.int32), 0)
        node = _merge(fuser, node, leaf, dtype)
    return _as_image(node.image, dtype), node.index


class FocusWeights:
    """Per-pixel soft selection by a local focus measure, one frame at a time.

    The measure is the local energy of the luma Laplacian, E = G_sigma * (lap L)^2 (L in [0, 1]);
    each frame's weight is E ** power, normalised over the frames, so the sharpest frame
    dominates while frames that are about as sharp (a pixel between two focus planes, or a flat
    region where only noise differs) are averaged, which also lowers the noise. Accumulated in
    the log domain with a running maximum (log-sum-exp), so memory is constant in the number of
    frames: the weighted sum, the weight sum, the running maximum and the index map.
    ``index`` is the frame with the largest weight (the sharpest), i.e. a depth map in frame
    order. Invalid (uncovered) pixels get weight 0."""

    FLOOR = 1e-8   # energy floor (luma^2 units): flat regions get equal weights

    def __init__(self, sigma: float = 1.5, power: float = 3.0):
        self.sigma, self.power = sigma, power
        self.num = self.den = self.top = self.index = None
        self.dtype = None

    def measure(self, frame: np.ndarray) -> np.ndarray:
        lap = cv2.Laplacian(preprocess.luma(frame), cv2.CV_32F, ksize=3)
        return cv2.GaussianBlur(lap * lap, (0, 0), self.sigma)

    def add(self, frame: np.ndarray, valid: np.ndarray, i: int) -> None:
        lw = np.float32(self.power) * np.log(self.measure(frame) + np.float32(self.FLOOR))
        lw[~valid] = -np.inf
        f = _to_float(frame)
        if self.num is None:
            self.dtype = frame.dtype
            self.top = np.where(valid, lw, np.float32(-1e30)).astype(np.float32)
            w = np.where(valid, np.float32(1), np.float32(0))
            self.num = f * (w if f.ndim == 2 else w[..., None])
            self.den = w
            self.index = np.full(frame.shape[:2], i, np.int32)
            return
        new_top = np.maximum(self.top, lw)
        old = np.exp(self.top - new_top)
        w = np.exp(lw - new_top)
        ex = (lambda a: a) if f.ndim == 2 else (lambda a: a[..., None])
        self.num = self.num * ex(old) + f * ex(w)
        self.den = self.den * old + w
        self.index[lw > self.top] = i
        self.top = new_top

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        d = self.den if self.num.ndim == 2 else self.den[..., None]
        return _as_image(self.num / np.maximum(d, np.float32(1e-30)), self.dtype), self.index


def focus_weights(fuser, frames: Iterable[tuple[np.ndarray, np.ndarray]], sigma: float = 1.5,
                  power: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """``FocusWeights`` over a stack (``fuser`` unused: no network runs)."""
    acc = FocusWeights(sigma, power)
    n = 0
    for i, (f, v) in enumerate(frames):
        acc.add(f, v, i)
        n += 1
    if n < 2:
        raise ValueError("a focus stack needs at least 2 frames")
    return acc.result()


STRATEGIES = {"tree": tree, "sequential-proto": sequential, "focus-weights": focus_weights}
