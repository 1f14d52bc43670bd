"""GACN jobs over an Executor: pairs, streams, tiles, and the network runs of focus stacks.

Written once for every backend: engine.host_executor and engine.device_executor provide the
primitives (engine.executor). A job's memory is planned before it runs (``plan``): whole frames
when they fit the budget, else the exact tiled execution of engine.tiling with the largest tile
that fits, else a clear refusal. Callers use the interfaces of engine.pipeline_api: pairs and
streams (``PairPipeline``); the stack strategies (engine.strategies) decide how frames merge
and reach the executor only through ``StackPipeline`` and the ``StackJob`` it opens.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from engine import preprocess
from engine.errors import InputError
from engine.executor import check_finite
from engine.memory import format_size, parse_size
from engine.pipeline_api import Progress, StackFrame
from engine.results import FusionResult
from engine.tiling import (MIN_TILE, SUMS_HALO, TILE_ALIGN, Tile, check_tile, excite, plan as tile_plan,
                           window_shape)

log = logging.getLogger(__name__)

FLOAT32 = 4


@dataclass(frozen=True)
class Plan:
    """How one network call over K frames of H x W runs, and the memory it was planned for."""
    side: int | None                       # tile side; None: whole frames
    tiles: Sequence[Tile] | None = None
    sums_tiles: Sequence[Tile] | None = None
    estimate: int = 0                      # bytes: resident planes + the network's working set


def frame_bytes(shape, dtype) -> int:
    return int(np.prod(shape)) * np.dtype(dtype).itemsize


def resident_bytes(shape, dtype, frames_held: int, lumas: int, planes: int, extra: int = 0) -> int:
    """Bytes of a job's full-size buffers (``plan``'s ``resident``): frames held, float32 lumas
    and planes, and ``extra``."""
    px = shape[0] * shape[1]
    return frames_held * frame_bytes(shape, dtype) + (lumas + planes) * FLOAT32 * px + extra


def pair_resident(shape, dtype, decision: bool, frames_held: int = 3) -> int:
    """A pair's full-size buffers: the frames held, two lumas, M (and D), the host's stacked network input."""
    return resident_bytes(shape, dtype, frames_held, 4, 2 if decision else 1)


def check_resident(budget: int, resident: int, shape) -> None:
    """No tile can help a job whose full-size buffers alone exceed the budget: refused before
    any model is loaded or any pixel decoded."""
    if resident > budget:
        raise InputError(f"--max-memory {format_size(budget)} is too small for a {shape[1]}x{shape[0]} frame: "
                         f"its full-size planes alone take {format_size(resident)}, in whole frames or in tiles")


class Pipeline:
    """Fuses pairs, stacks and streams through one executor within a memory budget.

    ``max_memory``: bytes or a size string ("2G"); default the executor's (engine.memory).
    ``tile``: None picks whole frames or the largest tile that fits; 0 never tiles; N forces
    tiles of N x N pixels (the window the network sees, overlap included).
    ``progress(unit, done, total)`` (engine.pipeline_api.Progress): called with "tiles" after
    each tile run of a tiled frame (its sums passes included; on a GPU, when it is queued).
    """

    def __init__(self, executor, *, max_memory=None, tile: int | None = None, progress: Progress | None = None):
        self.ex = executor
        self.budget = parse_size(max_memory) if max_memory is not None else executor.budget()
        self.tile = check_tile(tile)
        self.progress = progress
        self._pools: dict[str, list] = {}

    # -- planning ------------------------------------------------------------------------------------
    def plan(self, frames: int, height: int, width: int, resident: int) -> Plan:
        """Whole frames if they fit, else tiles; ``resident``: bytes of the job's full-size buffers."""
        runner = self.ex.runner
        whole = resident + runner.memory("whole", frames, height, width)
        refusal = runner.unsupported("whole", frames, height, width)
        if self.tile == 0 or (self.tile is None and whole <= self.budget and refusal is None):
            if refusal is not None:
                raise InputError(f"{width}x{height}: {refusal}; tiling is off (--tile 0)")
            self._check(whole, f"a whole {width}x{height} frame", "allow tiling (drop --tile 0) or raise --max-memory")
            return Plan(None, estimate=whole)
        if self.tile is not None and self.tile >= max(height, width) and refusal is None:
            self._check(whole, f"a whole {width}x{height} frame (--tile {self.tile} covers it)", "give a smaller --tile")
            return Plan(None, estimate=whole)
        side = self.tile or runner.tile_side or self._largest_side(frames, height, width, resident)
        shapes = self._windows(height, width, side)
        for variant, (th, tw) in shapes.items():
            tile_refusal = runner.unsupported(variant, frames, th, tw)
            if tile_refusal is not None:
                raise InputError(f"{width}x{height} in {side} px tiles: {tile_refusal}")
        need = self._tiled_need(frames, height, width, side, resident)
        self._check(need, f"a {width}x{height} frame in {side} px tiles", "raise --max-memory or give a smaller --tile")
        why = (f"--tile {self.tile}" if self.tile else f"a {side} px tile engine" if runner.tile_side else
               refusal or f"whole frames would need {format_size(whole)}, over the budget of {format_size(self.budget)}")
        log.info("%dx%d: %s px tiles (%s)", width, height, side, why)
        return Plan(side, tile_plan(height, width, side), tile_plan(height, width, side, SUMS_HALO), need)

    @staticmethod
    def _windows(height, width, side) -> dict:
        """The window shape of the tile network and of the sums passes for this tile side."""
        return {"tile": window_shape(height, width, side), **{f"sums{k}": window_shape(height, width, side, SUMS_HALO)
                                                             for k in range(4)}}

    def _tiled_need(self, frames, height, width, side, resident) -> int:
        runner = self.ex.runner
        return resident + max(runner.memory(v, frames, *shape) for v, shape in self._windows(height, width, side).items())

    def _largest_side(self, frames, height, width, resident) -> int:
        runner = self.ex.runner

        def need(side):
            windows = self._windows(height, width, side).items()
            if any(runner.unsupported(v, frames, *shape) for v, shape in windows):
                return float("inf")    # beyond an engine's profile
            return self._tiled_need(frames, height, width, side, resident)

        lo, hi = MIN_TILE // TILE_ALIGN + 1, max(height, width) // TILE_ALIGN
        if runner.max_tile:                          # the largest side it runs efficiently
            hi = max(lo, min(hi, runner.max_tile // TILE_ALIGN))
        smallest = need(lo * TILE_ALIGN)
        if smallest == float("inf"):
            return lo * TILE_ALIGN     # the caller reports the runner's refusal
        if smallest > self.budget:
            raise InputError(f"--max-memory {format_size(self.budget)} is too small for a {width}x{height} frame: "
                             f"its full-size planes take {format_size(resident)} and the smallest tile "
                             f"({lo * TILE_ALIGN} px) needs {format_size(smallest)} in all")
        while lo < hi:  # the largest aligned side that fits (need grows with the side)
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if need(mid * TILE_ALIGN) <= self.budget else (lo, mid - 1)
        return lo * TILE_ALIGN

    def _check(self, need: int, what: str, hint: str) -> None:
        if need > self.budget:
            raise InputError(f"{what} needs about {format_size(need)}, more than the memory budget of "
                             f"{format_size(self.budget)} (--max-memory); {hint}")
        avail = self.ex.available()
        if avail is not None and need > avail:
            raise InputError(f"{what} needs about {format_size(need)}, but only {format_size(avail)} is available "
                             "on this machine; lower --max-memory to run it in smaller tiles")

    # -- the network on planes -----------------------------------------------------------------------
    def maps(self, ws, lumas: Sequence, plan: Plan, decision: bool, reference: dict | None = None):
        """D (if ``decision``) and M [K-1, H, W] of lumas[0] against the others, whole or tiled.

        ``reference``: a cache for lumas[0]'s CSE scales, when the same reference serves many
        calls (a stack): they are computed once."""
        ex = self.ex
        k = len(lumas)
        _, h, w = lumas[0].shape
        d = ex.planes(ws, "decision", k - 1, h, w) if decision else None
        m = ex.planes(ws, "mask", k - 1, h, w)
        if plan.side is None:
            ex.network(ws, lumas, None, None, d, m)
        else:
            tick = self._ticker(plan)
            ex.network(ws, lumas, plan.tiles, self.scales(ws, lumas, plan, reference, tick), d, m, tick)
        if not ex.on_device:  # every host path's maps (pairs, stacks); device maps at their fetch
            check_finite(ex.runner.name, d, m)
        return d, m

    def _ticker(self, plan: Plan):
        """``tick()`` per tile run of ``plan`` (sums passes, then the network), reported to ``progress``."""
        if self.progress is None:
            return None
        total = len(plan.tiles) + len(self.ex.runner.cse_weights) * len(plan.sums_tiles)
        done = 0

        def tick():
            nonlocal done
            done += 1
            self.progress("tiles", done, total)
        return tick

    def scales(self, ws, lumas, plan: Plan, reference: dict | None = None, tick=None) -> np.ndarray:
        """Every frame's CSE scales [K,64,1,1], exactly as over the whole frame (engine.tiling)."""
        cached = reference.get("cse") if reference is not None else None
        todo = list(lumas[1:] if cached is not None else lumas)
        _, h, w = lumas[0].shape
        cse = np.zeros((len(todo), 64, 1, 1), np.float32)
        for block, (fc1, fc2) in enumerate(self.ex.runner.cse_weights):
            total = self.ex.block_sums(ws, block, todo, plan.sums_tiles, cse[:, :16 * block], tick)
            cse[:, 16 * block:16 * (block + 1), 0, 0] = excite(fc1, fc2, total / (h * w))
        if cached is not None:
            return np.concatenate([cached[None], cse])
        if reference is not None:
            reference["cse"] = cse[0]
        return cse

    def plan_pair(self, shape, dtype, decision: bool, frames_held: int = 3) -> Plan:
        """The plan of a pair of ``shape`` and ``dtype`` (also before its pixels are decoded)."""
        return self.plan(2, shape[0], shape[1], pair_resident(shape, dtype, decision, frames_held))

    # -- pairs and streams ---------------------------------------------------------------------------
    def _pair(self, ws, a, b, decision: bool, frames_held: int):
        """Sources on ``ws``, then D (if ``decision``) and M of the pair."""
        ex = self.ex
        src = [ex.put(ws, "a", a, "source A"), ex.put(ws, "b", b, "source B")]
        preprocess.check_same([(s.shape, s.dtype) for s in src], ["source A", "source B"])
        plan = self.plan_pair(src[0].shape, src[0].dtype, decision, frames_held)
        lumas = [ex.luma(ws, f"luma{i}", s) for i, s in enumerate(src)]
        return src, *self.maps(ws, lumas, plan, decision=decision)

    def submit(self, ws, a, b, maps: bool) -> None:
        """Queue one pair on workspace ``ws``; ``collect(ws)`` returns it."""
        ex = self.ex
        ex.begin(ws)
        try:  # end() also after a failure: the next job on ws waits for what was queued
            src, d, m = self._pair(ws, a, b, maps, frames_held=3)
            ex.fetch(ws, ex.blend(ws, "fused", src[0], src[1], m), d, m, maps)
        finally:
            ex.end(ws)

    def collect(self, ws) -> FusionResult:
        return self.ex.collect(ws)

    def fuse(self, a, b, maps: bool = False) -> FusionResult:
        ws, = self.workspaces("pair", 1)
        self.submit(ws, a, b, maps)
        return self.collect(ws)

    def pair_mask(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """M of a host pair, on the host (for strategies that merge on the host)."""
        ex = self.ex
        ws, = self.workspaces("pair", 1)
        ex.begin(ws)
        try:
            _, _, m = self._pair(ws, a, b, False, frames_held=2)
            m = np.array(ex.to_host(m)[0])
        finally:
            ex.end(ws)
        check_finite(ex.runner.name, m)
        return m

    def workspaces(self, purpose: str, n: int) -> list:
        """``n`` workspaces for one purpose (a stream's slots, a stack's frames), kept from one job
        to the next: pinned and device buffers are made once, not per job."""
        pool = self._pools.setdefault(purpose, [])
        while len(pool) < n:
            pool.append(self.ex.workspace())
        return pool[:n]

    @contextmanager
    def stack_job(self) -> Iterator["_StackJob"]:
        """A StackJob (engine.pipeline_api) on the pool's reference and job workspaces; on leaving,
        every workspace it used is ended, so that work a failed stack left queued completes
        before they are used again."""
        ex = self.ex
        ref, job = self.workspaces("stack", 2)
        ex.begin(ref)
        ex.begin(job)
        try:
            yield _StackJob(self, ref, job)
        finally:
            for ws in self._pools.get("stack frames", []):
                ex.end(ws)
            ex.end(ref)
            ex.end(job)

    def close(self) -> None:
        self.ex.close()


class _StackJob:
    """engine.pipeline_api.StackJob over a Pipeline: frame 0 on ``ref``, network runs on ``job``."""

    def __init__(self, pipeline: Pipeline, ref, job):
        self._pipe, self._ex, self._ref, self._job = pipeline, pipeline.ex, ref, job
        self.max_frames = self._ex.runner.max_frames
        self._shape = self._dtype = None
        self._plans: dict[tuple, Plan] = {}   # one plan per kind of run: every frame's is the same

    def reference(self, frame: np.ndarray):
        img = self._ex.put(self._ref, "frame", frame, "frame 0")
        self._shape, self._dtype = img.shape, img.dtype
        return img, self._ex.luma(self._ref, "luma", img)

    def frames(self, frames: Iterable[np.ndarray], ring: int) -> Iterator[StackFrame]:
        ex = self._ex
        spaces = self._pipe.workspaces("stack frames", ring)
        for i, frame in enumerate(frames, start=1):
            ws = spaces[(i - 1) % ring]
            ex.begin(ws)
            img = ex.put(ws, "frame", frame, f"frame {i}")
            yield StackFrame(i, img, ex.luma(ws, "luma", img), ws)

    def release(self, frame: StackFrame) -> None:
        self._ex.end(frame.workspace)

    def plan(self, k: int, frames_held: int, lumas: int, planes: int, extra: int = 0) -> Plan:
        args = (k, frames_held, lumas, planes, extra)
        if args not in self._plans:
            h, w = self._shape[:2]
            self._plans[args] = self._pipe.plan(k, h, w, resident_bytes(self._shape, self._dtype, *args[1:]))
        return self._plans[args]

    def mask(self, lumas, plan: Plan, reference: dict | None = None):
        return self._pipe.maps(self._job, lumas, plan, decision=False, reference=reference)[1]

    def calibration(self, mask, frame0, frame1):
        return self._ex.calibration(self._job, mask, frame0, frame1)

    def sequential(self, frame0):
        return self._ex.sequential(self._ref, frame0)
