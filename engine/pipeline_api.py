"""What the pipeline offers the code that drives it, declared once (``typing.Protocol``).

Callers outside engine.pipeline and the executors use only these names (tests/test_interfaces.py
checks it on the source): ``PairPipeline`` for pairs and streams (engine.fusion,
engine.streaming), ``StackPipeline`` and the ``StackJob`` it opens for the stack strategies
(engine.strategies). ``StackAccumulators`` is a capability of its own that executors implement
(the authors' stack accumulators on the executor's buffers); the general executor contract is
engine.executor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterable, Iterator, Protocol, Sequence

import numpy as np

Image = Any   # an executor's frame handle (engine.executor)
Plane = Any   # an executor's float32 planes [n, H, W]
Progress = Callable[[str, int, int], None]
"""``progress(unit, done, total)``: "tiles" (network runs over tiles of a tiled frame, sums
passes included) or "frames" (stack frames fused of frames read so far)."""


class Accumulator(Protocol):
    """A stack strategy's running state on the executor (engine.stack holds the host ones)."""

    def update(self, mask: Plane, k: int, frame: Image, index: int) -> None:
        """Fold in frame ``index`` with mask row ``k`` of ``mask`` (how much the reference wins)."""

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(fused image, int32 index map) on the host; waits for the work."""


class RunningFusion(Accumulator, Protocol):
    """The sequential strategy's accumulator: its running result is the next network input."""

    def luma(self) -> Plane:
        """The running result's luma [1, H, W] on the executor."""


class StackAccumulators(Protocol):
    """The executor capability the authors' strategies need (both executors implement it)."""

    def calibration(self, ws: Any, mask: Plane, frame0: Image, frame1: Image) -> Accumulator:
        """Decision calibration (spec section 8) started from frames 0 and 1 and M_1 (row 0), on ``ws``."""

    def sequential(self, ws: Any, frame0: Image) -> RunningFusion:
        """The authors' one-after-another fusion, its state on ``ws``."""


@dataclass
class StackFrame:
    """One stack frame on the executor: its index, image, luma [1, H, W] and workspace."""
    index: int
    image: Image
    luma: Plane
    workspace: Any


class StackJob(Protocol):
    """One stack on the executor (``StackPipeline.stack_job``): the reference's workspace, a
    ring of frame workspaces, planning and the network against the reference."""

    max_frames: int | None      # the most frames one network run takes (None: any)

    def reference(self, frame: np.ndarray) -> tuple[Image, Plane]:
        """Frame 0 on the executor and its luma (kept for the whole stack)."""

    def frames(self, frames: Iterable[np.ndarray], ring: int) -> Iterator[StackFrame]:
        """Host frames 1, 2, ... on the executor, each in the next of ``ring`` workspaces (one
        is reused only after ``release`` of the frame ``ring`` places before)."""

    def release(self, frame: StackFrame) -> None:
        """The job is done with ``frame``'s workspace."""

    def plan(self, k: int, frames_held: int, lumas: int, planes: int, extra: int = 0):
        """engine.pipeline.Plan of a network run over ``k`` frames of the reference's size, with
        ``frames_held`` frames, ``lumas`` and ``planes`` float32 planes and ``extra`` bytes resident."""

    def mask(self, lumas: Sequence[Plane], plan, reference: dict | None = None) -> Plane:
        """M [K-1, H, W] of lumas[0] against the others; ``reference`` caches lumas[0]'s CSE scales."""

    def calibration(self, mask: Plane, frame0: Image, frame1: Image) -> Accumulator: ...

    def sequential(self, frame0: Image) -> RunningFusion: ...


class StackPipeline(Protocol):
    """What the stack strategies use of a pipeline."""

    def pair_mask(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """M of a host pair, on the host (strategies that merge on the host)."""

    def stack_job(self) -> ContextManager[StackJob]:
        """A StackJob; on leaving, every workspace it used is ended (also after a failure)."""


class PairPipeline(Protocol):
    """What the Fuser and engine.streaming use of a pipeline."""

    progress: Progress | None

    def fuse(self, a, b, maps: bool = False): ...

    def plan_pair(self, shape, dtype, decision: bool, frames_held: int = 3):
        """The plan of a pair of ``shape`` and ``dtype`` before its pixels are decoded (refuses
        one the memory budget cannot hold)."""

    def workspaces(self, purpose: str, n: int) -> list:
        """``n`` workspaces kept for one purpose (a stream's slots)."""

    def submit(self, ws, a, b, maps: bool) -> None:
        """Queue one pair on ``ws``; ``collect(ws)`` returns it."""

    def collect(self, ws): ...

    def close(self) -> None: ...
