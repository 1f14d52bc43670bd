"""Focus-stack strategies: how N frames (already in the reference frame's geometry) become one image.

Each takes an iterator of ``(frame, valid)`` pairs (host frames; ``valid`` a bool mask of the
pixels the frame covers after alignment, or None for all) and returns ``(fused, index, n)``:
``index`` (int32 H x W) says which frame each output pixel comes from (its meaning per strategy
is in STRATEGY_HELP), ``n`` the frames read. Memory is constant in the number of frames (the
tree's O(log N) pending merges aside), and in pixels wherever the network runs (the pipeline
tiles it); the elementwise work runs in bands of rows.

Measured on rendered ground truth (benchmarks/stack_quality.py, benchmarks/RESULTS.md):
``focus-weights`` is the best strategy on stacks, GACN's own pairwise strategies are not, so
it is the default; the authors' ``calibration`` stays exact against their stack output.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Iterator

import cv2
import numpy as np

from engine import preprocess
from engine.errors import InputError

log = logging.getLogger(__name__)

STACK_BATCH = 2      # calibration: frames compared with the reference per network run (K = 1 + STACK_BATCH)
DEFAULT = "focus-weights"
STRATEGY_HELP = {
    "focus-weights": "per pixel, a soft choice of the sharpest frame by local Laplacian energy (no network); "
                     "index: the sharpest frame, a depth map in frame order",
    "tree": "GACN on neighbours first, then on their results (N-1 fusions, depth log2 N); "
            "index: the frame with the largest blending weight",
    "sequential": "the authors' one-after-another GACN fusion; index: the frame with the largest blending weight",
    "calibration": "the authors' decision calibration against frame 0 (spec section 8); index: the frame chosen",
}
STRATEGIES = tuple(STRATEGY_HELP)
NETWORK_FREE = {"focus-weights"}   # strategies that run no network (no checkpoint needed)
FRAME0_STRATEGIES = {"calibration"}  # defined against frame 0: aligned stacks keep its geometry


def _to_float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / np.float32(preprocess.max_value(img.dtype))


def _as_image(f: np.ndarray, dtype) -> np.ndarray:
    peak = np.float32(preprocess.max_value(dtype))
    out = np.empty(f.shape, dtype)
    for rows in preprocess.bands(*f.shape[:2]):
        out[rows] = np.rint(np.clip(f[rows], 0, 1) * peak)
    return out


# -- focus-weights -----------------------------------------------------------------------------------
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
            f = _to_float(frame[rows])
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
        return _as_image(out, self.dtype), self.index


def focus_weights(pipeline, items: Iterator) -> tuple[np.ndarray, np.ndarray, int]:
    acc, n = FocusWeights(), 0
    for i, (frame, valid) in enumerate(items):
        acc.add(frame, valid, i)
        n += 1
    if n < 2:
        return None, None, n
    return (*acc.result(), n)


# -- GACN pairwise: tree ---------------------------------------------------------------------------------
@dataclass
class _Node:
    image: np.ndarray      # float32 [0, 1], H x W (x 3)
    valid: np.ndarray      # bool
    weight: np.ndarray     # float32: the blending weight of ``index`` in ``image``
    index: np.ndarray      # int32
    level: int


def _merge(pipeline, a: _Node, b: _Node, dtype) -> _Node:
    """GACN's fusion of two nodes (its input quantised to the frames' type, the blend in float),
    taking the covered side where only one side is valid."""
    m = pipeline.pair_mask(_as_image(a.image, dtype), _as_image(b.image, dtype))
    if not (a.valid.all() and b.valid.all()):
        m = np.where(a.valid & ~b.valid, np.float32(1), np.where(b.valid & ~a.valid, np.float32(0), m))
    for rows in preprocess.bands(*m.shape[:2]):
        mm = m[rows] if a.image.ndim == 2 else m[rows, :, None]
        a.image[rows] = mm * a.image[rows] + (np.float32(1) - mm) * b.image[rows]
    wa, wb = m * a.weight, (np.float32(1) - m) * b.weight
    take_a = wa >= wb
    return _Node(a.image, a.valid | b.valid, np.where(take_a, wa, wb), np.where(take_a, a.index, b.index),
                 max(a.level, b.level) + 1)


def tree(pipeline, items: Iterator) -> tuple[np.ndarray, np.ndarray, int]:
    """A balanced tree of pairwise fusions, neighbours first: (0,1), (2,3), ..., then their
    results: N - 1 fusions, depth ceil(log2 N), at most ceil(log2 N) + 1 pending float nodes (a
    binary counter: a node merges as soon as its sibling exists)."""
    pending: list[_Node] = []
    dtype, n = None, 0
    for i, (frame, valid) in enumerate(items):
        dtype = frame.dtype
        h, w = frame.shape[:2]
        node = _Node(_to_float(frame), np.ones((h, w), bool) if valid is None else valid,
                     np.ones((h, w), np.float32), np.full((h, w), i, np.int32), 0)
        n += 1
        while pending and pending[-1].level == node.level:
            node = _merge(pipeline, pending.pop(), node, dtype)
        pending.append(node)
    if n < 2:
        return None, None, n
    node = pending.pop()
    while pending:
        node = _merge(pipeline, pending.pop(), node, dtype)
    return _as_image(node.image, dtype), node.index, n


# -- the authors' strategies, on the executor ---------------------------------------------------------
def _with_stack_workspaces(pipeline, items: Iterator, body) -> tuple[np.ndarray, np.ndarray, int]:
    """``body(pipeline, frame0, items, ref, job)`` on the pipeline's two stack workspaces."""
    ex = pipeline.ex
    first = next(items, None)
    if first is None:
        return None, None, 0
    ref, job = pipeline.workspaces("stack", 2)
    ex.begin(ref)
    ex.begin(job)
    try:
        return body(pipeline, first[0], items, ref, job)
    finally:
        pipeline.fence("stack frames")
        ex.end(ref)
        ex.end(job)


def calibration(pipeline, items: Iterator) -> tuple[np.ndarray, np.ndarray, int]:
    """Spec section 8 in constant memory, STACK_BATCH frames per network run: the reference's
    features are computed once per run, its CSE scales once per stack."""
    return _with_stack_workspaces(pipeline, items, _calibration)


def _calibration(pipeline, frame0, items, ref, job):
    ex = pipeline.ex
    f0 = ex.put(ref, "frame", frame0, "frame 0")
    l0 = ex.luma(ref, "luma", f0)
    h, w = f0.shape[:2]
    reference: dict = {}
    acc, n, batch = None, 1, []

    def plan(k, per_run):
        # frame 0, the batch's frames (twice: the next batch uploads), lumas, masks, accumulator
        return pipeline.plan(k, h, w, pipeline.resident(f0.shape, f0.dtype, 2 + 2 * per_run, 2 * k, k - 1, 12 * h * w))

    # Batching shares the reference's features, unless only single frames run whole: tiles cost
    # more than the sharing saves (measured at 1600x1200 under 2 GiB: 60 s in tiles, 22 s whole).
    per_run = min(STACK_BATCH, (ex.runner.max_frames or 1 + STACK_BATCH) - 1)
    if per_run > 1:
        try:
            if plan(1 + per_run, per_run).side is not None and plan(2, 1).side is None:
                per_run = 1
        except InputError:          # a batch does not fit at all (e.g. --tile 0): single frames may
            per_run = 1

    def flush():
        nonlocal acc
        k = 1 + len(batch)
        lumas = [l0] + [luma for _, _, _, luma in batch]
        _, m = pipeline.maps(job, lumas, plan(k, per_run), decision=False, reference=reference)
        for j, (i, ws, img, _) in enumerate(batch):
            if acc is None:
                acc = ex.calibration(job, m, f0, img)
            else:
                acc.update(m, j, img, i)
            ex.end(ws)
        batch.clear()

    for item in pipeline.frames_on_executor((f for f, _ in items), 2 * per_run):
        batch.append(item)
        n += 1
        if len(batch) == per_run:
            flush()
    if batch:
        flush()
    if acc is None:
        return None, None, n
    return (*acc.result(), n)


def sequential(pipeline, items: Iterator) -> tuple[np.ndarray, np.ndarray, int]:
    """The authors' one-after-another fusion (a float running result)."""
    return _with_stack_workspaces(pipeline, items, _sequential)


def _sequential(pipeline, frame0, items, ref, job):
    ex = pipeline.ex
    f0 = ex.put(ref, "frame", frame0, "frame 0")
    h, w = f0.shape[:2]
    acc = ex.sequential(ref, f0)
    n = 1
    for i, ws, img, luma in pipeline.frames_on_executor((f for f, _ in items), 2):
        resident = pipeline.resident(f0.shape, f0.dtype, 3, 4, 1, 20 * h * w)
        _, m = pipeline.maps(job, [acc.luma(job), luma], pipeline.plan(2, h, w, resident), decision=False)
        acc.update(m, 0, img, i)
        ex.end(ws)
        n += 1
    if n < 2:
        return None, None, n
    return (*acc.result(), n)


RUN = {"focus-weights": focus_weights, "tree": tree, "sequential": sequential, "calibration": calibration}


def check(strategy: str) -> None:
    if strategy not in RUN:
        raise InputError(f"unknown stack strategy '{strategy}'; choose one of {', '.join(STRATEGIES)}")


def fuse_stack(pipeline, items: Iterable, strategy: str = DEFAULT) -> tuple[np.ndarray, np.ndarray, int]:
    """Run ``strategy`` over ``(frame, valid)`` items; at least 2 frames."""
    check(strategy)
    fused, index, n = RUN[strategy](pipeline, iter(items))
    if n < 2:
        raise InputError(f"a focus stack needs at least 2 frames, got {n}")
    return fused, index, n
