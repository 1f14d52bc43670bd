"""The executor contract: where a job's pixels live and how the network runs on them.

engine.pipeline runs pairs, streams, tiles and a stack's network runs through this interface;
the stack accumulators are a capability of their own (engine.pipeline_api.StackAccumulators),
which both executors also implement. Two implementations: engine.host_executor (numpy around a
HostRunner, synchronous) and engine.device_executor (GPU buffers, three CUDA streams, the kernel
library, around a DeviceRunner; every call is stream-ordered and nothing waits unless it says so).

Handles (``Image``, ``Plane``) are the executor's own: numpy arrays on the host, device buffers
on a GPU. A ``Workspace`` owns the buffers of one frame in flight; it is reused, and ``begin``
waits until its previous job no longer reads or writes them.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

import numpy as np

from engine.errors import BackendError
from engine.results import FusionResult
from engine.tiling import Tile

Image = Any   # a uint8/uint16 frame (H, W) or (H, W, 3) on the executor; .shape, .dtype
Plane = Any   # float32 planes [n, H, W] on the executor; .shape


class Workspace(Protocol):
    """Named buffers and events of one frame in flight (opaque to the pipeline)."""


class Executor(Protocol):
    runner: Any          # engine.backends.base.HostRunner or DeviceRunner
    on_device: bool

    def workspace(self) -> Workspace: ...

    def begin(self, ws: Workspace) -> None:
        """Wait until ``ws``'s previous job has finished with its buffers."""

    def end(self, ws: Workspace) -> None:
        """Mark the point after the last queued work on ``ws``'s buffers."""

    def budget(self) -> int:
        """Working memory a job may use by default (host: engine.memory.HOST_DEFAULT; GPU: free - margin)."""

    def available(self) -> int | None:
        """Memory the machine can still give (None if unknown): a job estimated above it is refused."""

    def put(self, ws: Workspace, name: str, image, what: str) -> Image:
        """A validated source frame (host array or, on a GPU, a device array) copied into ``ws``."""

    def luma(self, ws: Workspace, name: str, image: Image) -> Plane:
        """Spec section 1: the frame's luma as a [1, H, W] plane in ``ws``."""

    def planes(self, ws: Workspace, name: str, n: int, height: int, width: int) -> Plane:
        """An uninitialised [n, H, W] float32 plane set in ``ws``."""

    def network(self, ws: Workspace, lumas: Sequence[Plane], tiles: Sequence[Tile] | None, cse: np.ndarray | None,
                decision: Plane | None, mask: Plane, on_tile: Callable[[], None] | None = None) -> None:
        """D and M of frame 0 against each other frame: whole frames (``tiles`` None, CSE in the
        network) or each tile's core with the frames' CSE scales ``cse`` [K,64,1,1]; ``on_tile()``
        after each tile is run (host) or queued (GPU)."""

    def block_sums(self, ws: Workspace, block: int, lumas: Sequence[Plane], tiles: Sequence[Tile],
                   cse: np.ndarray, on_tile: Callable[[], None] | None = None) -> np.ndarray:
        """float64 [K,16]: the sum of feature block ``block``'s output over the tiles' cores."""

    def blend(self, ws: Workspace, name: str, a: Image, b: Image, mask: Plane, k: int = 0) -> Image:
        """Spec section 7 with mask row ``k``: round(clip(M A + (1 - M) B) * max)."""

    def fetch(self, ws: Workspace, fused: Image, decision: Plane | None, mask: Plane, maps: bool) -> None:
        """Queue the copies of a pair's result to the host: the fused image and its mask, D if
        given; the result carries D and M only if ``maps``."""

    def collect(self, ws: Workspace) -> FusionResult:
        """Wait for ``fetch``'s copies and return the result (host arrays, owned by the caller).
        A map that is not finite raises BackendError (``check_finite``): here on the device, when
        the maps are made (Pipeline.maps) on the host."""

    def to_host(self, image: Image) -> np.ndarray:
        """A host copy of an executor image (waits)."""

    def close(self) -> None: ...


def check_finite(runner_name: str, *maps: np.ndarray | None) -> None:
    """The one check of the network's maps on the host (both executors): non-finite D or M is
    a broken backend, never written out. A NaN or inf anywhere makes the sum non-finite, and
    maps in [0, 1] cannot overflow it: one pass, no temporary (about half of isfinite().all())."""
    if not all(np.isfinite(m.sum()) for m in maps if m is not None):
        raise BackendError(f"{runner_name} produced non-finite decision values; refusing to write them")
