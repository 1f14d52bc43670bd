"""The public entry point: a Fuser holds one backend and fuses pairs, focus stacks and streams."""
from __future__ import annotations

import logging
from typing import Iterable, Iterator, Sequence

import numpy as np

from engine import preprocess, strategies
from engine.backends.base import HOST_BACKENDS, create_runner, resolve_backend
from engine.errors import InputError
from engine.align import MODELS, StackAligner, common_rect, warp
from engine.pipeline import Pipeline
from engine.pipeline_api import Progress
from engine.prefetch import background
from engine.results import FusionResult, StackResult, StreamResult
from engine.streaming import stream
from engine.tiling import check_tile

log = logging.getLogger(__name__)

ALIGN_MODES = ("none", *MODELS)
__all__ = ["Fuser", "FusionResult", "StackResult", "StreamResult", "fuse_stack", "ALIGN_MODES"]


def _aligned(frames: Iterable[np.ndarray], align: str, names, transforms: list) -> Iterator[tuple]:
    """(frame, valid) in frame 0's geometry, one at a time (engine.align); ``valid`` None: all.

    ``auto`` warns about a frame it cannot register and fuses it as it is; an explicit model makes
    that an error naming the frame."""
    if align not in ALIGN_MODES:
        raise InputError(f"unknown alignment '{align}'; choose one of {', '.join(ALIGN_MODES)}")
    if align == "none":
        yield from ((f, None) for f in frames)
        return
    aligner = StackAligner(align, strict=align != "auto", names=names)
    for frame in frames:
        t = aligner.add(frame)
        transforms.append(t)
        if not t.ok or t.identity:
            yield frame, None
        else:
            yield warp(frame, t)


def fuse_stack(frames: Iterable[np.ndarray], *, pipeline: Pipeline | None, strategy: str = strategies.DEFAULT,
               align: str = "auto", names: Sequence[str] | None = None, crop: bool = False,
               progress: Progress | None = None) -> StackResult:
    """Fuse a focus stack read one frame at a time (frame 0 is the reference): the one stack
    entry point (``Fuser.fuse_stack`` calls it with its pipeline; engine.strategies runs it).

    ``align`` (default auto): register each frame to its neighbour, chained to frame 0 (focus
    breathing, shifts, exposure; engine.align); registered stacks are left as they are. The
    output keeps frame 0's geometry; pixels a warped frame does not cover come from the frames
    that cover them, ``valid_rect`` is the area every frame covers and ``crop`` cuts to it.
    ``pipeline`` may be None for a strategy that runs no network (strategies.NETWORK_FREE).
    ``progress("frames", fused, read)`` after each frame is fused."""
    strategies.check(strategy)
    if pipeline is None and strategy not in strategies.NETWORK_FREE:
        raise InputError(f"the '{strategy}' strategy runs the network: it needs a Fuser")

    def name(i):
        return names[i] if names and i < len(names) else f"frame {i}"

    read = 0

    def checked() -> Iterator[np.ndarray]:
        nonlocal read
        first = None
        for i, img in enumerate(frames):
            read = i + 1
            if first is None:
                first = preprocess.check_image(img, name(0))
                yield first
            else:
                yield preprocess.check_sources([first, img], [name(0), name(i)])[1]

    transforms: list = []
    items = _aligned(checked(), align, names, transforms)
    if align != "none":  # register and warp the next frames on a thread while this one is fused
        items = background(items, depth=2)
    done = None if progress is None else (lambda fused: progress("frames", fused, read))
    fused, index, n = strategies.run(pipeline, items, strategy, done)
    rect = None
    if any(not t.identity for t in transforms):
        rect = common_rect([t for t in transforms if t.ok], fused.shape[:2])   # a failed frame is used unwarped
        log.info("aligned %d frames; every frame covers x %d..%d, y %d..%d", n, rect[0], rect[2], rect[1], rect[3])
        if crop:
            x0, y0, x1, y1 = rect
            fused, index = fused[y0:y1, x0:x1].copy(), index[y0:y1, x0:x1].copy()
    return StackResult(fused, index, n, transforms=transforms or None, valid_rect=rect)


class Fuser:
    """Multi-focus fusion with one backend, loaded once.

    >>> with Fuser() as f:                      # OpenVINO (else ONNX Runtime) on the CPU unless a GPU is there
    ...     out = f.fuse(a, b).fused

    ``max_memory`` (bytes or "2G"; default 2 GiB on the CPU, the free GPU memory less a margin on
    a GPU) bounds each job's working memory: frames that do not fit whole run in exact tiles.
    ``tile``: None chooses, 0 never tiles, N forces N x N pixel tiles.
    ``progress(unit, done, total)``: tiles of a tiled frame ("tiles") and frames of a stack
    ("frames": fused of read), engine.pipeline_api.Progress.
    """

    def __init__(self, backend: str = "auto", *, weights=None, onnx=None, engine=None,
                 precision: str = "fp32", threads: int | None = None, max_memory=None, tile: int | None = None,
                 progress: Progress | None = None):
        from engine.memory import parse_size
        from engine.weights import resolve_weights
        budget = parse_size(max_memory) if max_memory is not None else None  # bad input before loading
        check_tile(tile)
        self.backend = resolve_backend(backend, engine)
        params = None
        if self.backend != "tensorrt" and onnx is None:
            from engine.checkpoint import load_gacn
            params = load_gacn(resolve_weights(weights))
        options = {"threads": threads} if self.backend in HOST_BACKENDS else {}
        runner = create_runner(self.backend, params=params, onnx_path=onnx, engine_path=engine,
                               precision=precision, **options)
        if runner.on_device:
            from engine.device_executor import DeviceExecutor
            executor = DeviceExecutor(runner)
        else:
            from engine.host_executor import HostExecutor
            executor = HostExecutor(runner)
        try:
            self.pipeline = Pipeline(executor, max_memory=budget, tile=tile, progress=progress)
        except BaseException:
            executor.close()
            raise
        log.info("GACN fuser ready on %s", self.backend)

    def fuse(self, a, b, *, maps: bool = False, align: str = "none") -> FusionResult:
        """Fuse two sources (uint8/uint16, gray or RGB; numpy arrays, or device arrays for the GPU
        backends); D and M on request. ``align`` (host arrays): register B to A first ("affine",
        "homography"; "auto" leaves a registered pair as it is); where the warped B does not cover
        A, the result takes A (M = 1)."""
        if align == "none":
            return self.pipeline.fuse(a, b, maps)
        (_, _), (b, valid) = _aligned([a, b], align, ["source A", "source B"], [])
        res = self.pipeline.fuse(a, b, maps)
        if valid is not None and not valid.all():
            a = preprocess.check_image(a, "source A")
            res.fused[~valid] = a[~valid]
            if res.mask is not None:
                res.mask[~valid] = 1
        return res

    def fuse_stack(self, frames: Iterable[np.ndarray], *, strategy: str = strategies.DEFAULT, align: str = "auto",
                   names: Sequence[str] | None = None, crop: bool = False) -> StackResult:
        """Fuse a focus stack read one frame at a time (frame 0 is the reference); see fuse_stack."""
        return fuse_stack(frames, pipeline=self.pipeline, strategy=strategy, align=align, names=names, crop=crop,
                          progress=self.pipeline.progress)

    def stream(self, pairs: Iterable, *, slots: int = 3, maps: bool = False) -> Iterator[StreamResult]:
        """Fuse a stream of ``(a, b)`` pairs with ``slots`` frames in flight; results come in input
        order, a bad frame as a result with ``error`` set (its index kept), never dropped."""
        return stream(self.pipeline, pairs, slots=slots, maps=maps)

    def close(self) -> None:
        self.pipeline.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
