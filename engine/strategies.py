"""Focus-stack strategies: how N frames (already in the reference frame's geometry) become one image.

Each takes a pipeline (engine.pipeline_api.StackPipeline: its declared interface, or None for
a strategy that runs no network), an iterator of ``(frame, valid)`` pairs (host frames;
``valid`` a bool mask of the pixels the frame covers after alignment, or None for all) and
``done(n)``, told the frames fused so far; it returns ``(fused, index, n)``:
``index`` (int32 H x W) says which frame each output pixel comes from (its meaning per strategy
is in STRATEGY_HELP), ``n`` the frames read. Memory is constant in the number of frames (the
tree's O(log N) pending merges aside), and in pixels wherever the network runs (the pipeline
tiles it); the elementwise work runs in bands of rows. The host accumulators are engine.stack's.

Measured on rendered ground truth (benchmarks/stack_quality.py, benchmarks/RESULTS.md):
``focus-weights`` is the best strategy on stacks, GACN's own pairwise strategies are not, so
it is the default; the authors' ``calibration`` stays exact against their stack output.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from engine import preprocess
from engine.errors import InputError
from engine.pipeline_api import StackJob, StackPipeline
from engine.stack import FocusWeights, as_image, to_float

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


Done = Callable[[int], None] | None   # told the number of frames fused so far
Result = tuple[np.ndarray, np.ndarray, int]


def _tell(done: Done, n: int) -> None:
    if done is not None:
        done(n)


def focus_weights(pipeline: StackPipeline | None, items: Iterator, done: Done = None) -> Result:
    acc, n = FocusWeights(), 0
    for i, (frame, valid) in enumerate(items):
        acc.add(frame, valid, i)
        n += 1
        _tell(done, n)
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


def _merge(pipeline: StackPipeline, a: _Node, b: _Node, dtype) -> _Node:
    """GACN's fusion of two nodes (its input quantised to the frames' type, the blend in float),
    taking the covered side where only one side is valid."""
    m = pipeline.pair_mask(as_image(a.image, dtype), as_image(b.image, dtype))
    if not (a.valid.all() and b.valid.all()):
        m = np.where(a.valid & ~b.valid, np.float32(1), np.where(b.valid & ~a.valid, np.float32(0), m))
    for rows in preprocess.bands(*m.shape[:2]):
        mm = m[rows] if a.image.ndim == 2 else m[rows, :, None]
        a.image[rows] = mm * a.image[rows] + (np.float32(1) - mm) * b.image[rows]
    wa, wb = m * a.weight, (np.float32(1) - m) * b.weight
    take_a = wa >= wb
    return _Node(a.image, a.valid | b.valid, np.where(take_a, wa, wb), np.where(take_a, a.index, b.index),
                 max(a.level, b.level) + 1)


def tree(pipeline: StackPipeline, items: Iterator, done: Done = None) -> Result:
    """A balanced tree of pairwise fusions, neighbours first: (0,1), (2,3), ..., then their
    results: N - 1 fusions, depth ceil(log2 N), at most ceil(log2 N) + 1 pending float nodes (a
    binary counter: a node merges as soon as its sibling exists)."""
    pending: list[_Node] = []
    dtype, n = None, 0
    for i, (frame, valid) in enumerate(items):
        dtype = frame.dtype
        h, w = frame.shape[:2]
        node = _Node(to_float(frame), np.ones((h, w), bool) if valid is None else valid,
                     np.ones((h, w), np.float32), np.full((h, w), i, np.int32), 0)
        n += 1
        while pending and pending[-1].level == node.level:
            node = _merge(pipeline, pending.pop(), node, dtype)
        pending.append(node)
        _tell(done, n)
    if n < 2:
        return None, None, n
    node = pending.pop()
    while pending:
        node = _merge(pipeline, pending.pop(), node, dtype)
    return as_image(node.image, dtype), node.index, n


# -- the authors' strategies, on the executor ---------------------------------------------------------
def _in_stack_job(pipeline: StackPipeline, items: Iterator, done: Done, body) -> Result:
    """``body(job, frame0, items, done)`` in one of the pipeline's StackJobs (none for no frames)."""
    first = next(items, None)
    if first is None:
        return None, None, 0
    with pipeline.stack_job() as job:
        return body(job, first[0], items, done)


def calibration(pipeline: StackPipeline, items: Iterator, done: Done = None) -> Result:
    """Spec section 8 in constant memory, STACK_BATCH frames per network run: the reference's
    features are computed once per run, its CSE scales once per stack."""
    return _in_stack_job(pipeline, items, done, _calibration)


def _calibration(job: StackJob, frame0, items, done: Done) -> Result:
    f0, l0 = job.reference(frame0)
    h, w = f0.shape[:2]
    reference: dict = {}
    acc, n, batch = None, 1, []

    def plan(k, per_run):
        # frame 0, the batch's frames (twice: the next batch uploads), lumas, masks, accumulator
        return job.plan(k, 2 + 2 * per_run, 2 * k, k - 1, 12 * h * w)

    # Batching shares the reference's features, unless only single frames run whole: tiles cost
    # more than the sharing saves (measured at 1600x1200 under 2 GiB: 60 s in tiles, 22 s whole).
    per_run = min(STACK_BATCH, (job.max_frames or 1 + STACK_BATCH) - 1)
    if per_run > 1:
        try:
            if plan(1 + per_run, per_run).side is not None and plan(2, 1).side is None:
                per_run = 1
        except InputError:          # a batch does not fit at all (e.g. --tile 0): single frames may
            per_run = 1

    def flush():
        nonlocal acc
        k = 1 + len(batch)
        m = job.mask([l0] + [f.luma for f in batch], plan(k, per_run), reference)
        for j, f in enumerate(batch):
            if acc is None:
                acc = job.calibration(m, f0, f.image)
            else:
                acc.update(m, j, f.image, f.index)
            job.release(f)
        batch.clear()
        _tell(done, n)

    for frame in job.frames((f for f, _ in items), 2 * per_run):
        batch.append(frame)
        n += 1
        if len(batch) == per_run:
            flush()
    if batch:
        flush()
    if acc is None:
        return None, None, n
    return (*acc.result(), n)


def sequential(pipeline: StackPipeline, items: Iterator, done: Done = None) -> Result:
    """The authors' one-after-another fusion (a float running result)."""
    return _in_stack_job(pipeline, items, done, _sequential)


def _sequential(job: StackJob, frame0, items, done: Done) -> Result:
    f0, _ = job.reference(frame0)
    h, w = f0.shape[:2]
    acc = job.sequential(f0)
    n = 1
    for frame in job.frames((f for f, _ in items), 2):
        m = job.mask([acc.luma(), frame.luma], job.plan(2, 3, 4, 1, 20 * h * w))
        acc.update(m, 0, frame.image, frame.index)
        job.release(frame)
        n += 1
        _tell(done, n)
    if n < 2:
        return None, None, n
    return (*acc.result(), n)


RUN = {"focus-weights": focus_weights, "tree": tree, "sequential": sequential, "calibration": calibration}


def check(strategy: str) -> None:
    if strategy not in RUN:
        raise InputError(f"unknown stack strategy '{strategy}'; choose one of {', '.join(STRATEGIES)}")


def run(pipeline: StackPipeline | None, items: Iterable, strategy: str = DEFAULT, done: Done = None) -> Result:
    """Run ``strategy`` over ``(frame, valid)`` items; at least 2 frames (engine.fusion.fuse_stack
    is the public entry: it checks, aligns and reports)."""
    check(strategy)
    fused, index, n = RUN[strategy](pipeline, iter(items), done)
    if n < 2:
        raise InputError(f"a focus stack needs at least 2 frames, got {n}")
    return fused, index, n
