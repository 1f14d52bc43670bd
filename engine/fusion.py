"""The public entry point: a Fuser holds one backend and fuses pairs, focus stacks and streams."""
from __future__ import annotations

import logging
from collections.abc import Iterator as _Iterator
from typing import Iterable, Iterator, Sequence

import numpy as np

from engine import preprocess, strategies
from engine.backends.base import HOST_BACKENDS, check_installed, create_runner, resolve_backend
from engine.errors import InputError
from engine.align import DEFAULT_REFERENCE, MODELS, align_stack, common_rect, parse_reference, reference_index
from engine.memory import HOST_DEFAULT
from engine.options import backend_options
from engine.pipeline import Pipeline, check_resident, pair_resident
from engine.pipeline_api import Progress
from engine.prefetch import background
from engine.results import FusionResult, StackResult, StreamResult
from engine.streaming import stream

log = logging.getLogger(__name__)

ALIGN_MODES = ("none", *MODELS)
__all__ = ["Fuser", "FusionResult", "StackResult", "StreamResult", "fuse_stack", "ALIGN_MODES"]


def _aligned(frames: Iterable[np.ndarray], align: str, reference, names, transforms: list) -> Iterator[tuple]:
    """(frame, valid) in the reference frame's geometry (engine.align.align_stack); ``valid`` None: all.

    ``auto`` warns about a frame it cannot register and fuses it as it is; an explicit model makes
    that an error naming the frame."""
    if align not in ALIGN_MODES:
        raise InputError(f"unknown alignment '{align}'; choose one of {', '.join(ALIGN_MODES)}")
    if align == "none":
        return ((f, None) for f in frames)
    return align_stack(frames, align, reference, names=names, strict=align != "auto", transforms=transforms)


def stack_reference(reference, strategy: str, align: str):
    """The reference frame of a stack (its geometry is the output's): ``reference`` checked, or
    the default (the middle frame; the first for ``calibration``, which compares every frame with
    frame 0 as its authors define it). Refused where it does not apply."""
    if reference is None:
        return "first" if strategy in strategies.FRAME0_STRATEGIES or align == "none" else DEFAULT_REFERENCE
    reference = parse_reference(reference)
    if align == "none":
        raise InputError("a reference frame applies to aligned stacks only (alignment none keeps every frame as it is)")
    if strategy in strategies.FRAME0_STRATEGIES and reference not in ("first", 0):
        raise InputError(f"the '{strategy}' strategy compares every frame with frame 0 (the authors' definition): "
                         f"its reference is the first frame, not {reference}")
    return reference


class _Checked:
    """The frames, each checked as it is read (against frame 0); re-iterable if ``frames`` is."""

    def __init__(self, frames: Iterable[np.ndarray], names):
        self.frames, self.names = frames, names
        self.read = 0           # frames read by the latest iteration

    def name(self, i):
        return self.names[i] if self.names and i < len(self.names) else f"frame {i}"

    def __iter__(self) -> Iterator[np.ndarray]:
        first = None
        for i, img in enumerate(self.frames):
            self.read = i + 1
            if first is None:
                first = preprocess.check_image(img, self.name(0))
                yield first
            else:
                yield preprocess.check_sources([first, img], [self.name(0), self.name(i)])[1]


def fuse_stack(frames: Iterable[np.ndarray], *, pipeline: Pipeline | None, strategy: str = strategies.DEFAULT,
               align: str = "auto", names: Sequence[str] | None = None, crop: bool = False,
               reference=None, progress: Progress | None = None) -> StackResult:
    """Fuse a focus stack (frames in focus order; the index map holds these frame numbers): the one
    stack entry point (``Fuser.fuse_stack`` calls it with its pipeline; engine.strategies runs it).

    ``align`` (default auto): register each frame to its neighbour, chained outwards from the
    ``reference`` frame ("first", "middle", "last" or a number; default the middle one, the first
    for ``calibration``; engine.align) for focus breathing, shifts and exposure; registered stacks
    are left as they are. The output is in the reference frame's geometry; pixels a warped frame
    does not cover come from the frames that cover them, ``valid_rect`` is the area every frame
    covers and ``crop`` cuts to it. Memory: with the first frame as reference, frames are read
    once, one at a time; with another, twice (thumbnails first): a list or a Sequence is iterated
    twice, an iterator's frames are held (n frames; engine.align.align_stack).
    ``pipeline`` may be None for a strategy that runs no network (strategies.NETWORK_FREE).
    ``progress("frames", fused, read)`` after each frame is fused."""
    strategies.check(strategy)
    reference = stack_reference(reference, strategy, align)
    if pipeline is None and strategy not in strategies.NETWORK_FREE:
        raise InputError(f"the '{strategy}' strategy runs the network: it needs a Fuser")
    if isinstance(frames, Sequence) and len(frames) >= 2:
        reference_index(reference, len(frames))         # an out-of-range reference before any work

    checked = _Checked(frames, names)
    transforms: list = []
    items = _aligned(iter(checked) if isinstance(frames, _Iterator) else checked, align, reference, names, transforms)
    if align != "none":  # register and warp the next frames on a thread while this one is fused
        items = background(items, depth=2)
    done = None if progress is None else (lambda fused: progress("frames", fused, checked.read))
    fused, index, n = strategies.run(pipeline, items, strategy, done)
    rect, ref = None, (None if align == "none" else reference_index(reference, n))
    if any(not t.identity for t in transforms):
        rect = common_rect([t for t in transforms if t.ok], fused.shape[:2])   # a failed frame is used unwarped
        log.info("aligned %d frames to frame %d; every frame covers x %d..%d, y %d..%d", n, ref, rect[0], rect[2],
                 rect[1], rect[3])
        if crop:
            x0, y0, x1, y1 = rect
            fused, index = fused[y0:y1, x0:x1].copy(), index[y0:y1, x0:x1].copy()
    return StackResult(fused, index, n, transforms=transforms or None, valid_rect=rect, reference=ref)


class Fuser:
    """Multi-focus fusion with one backend, loaded once, on first use (or ``load()``).

    >>> with Fuser() as f:                      # OpenVINO (else ONNX Runtime) on the CPU unless a GPU is there
    ...     out = f.fuse(a, b).fused

    Options are checked when the Fuser is built (engine.options): one that does not apply to
    the backend is an InputError; so are a missing or foreign checkpoint (loaded now, it is
    small). ``max_memory`` (bytes or "2G"; default 2 GiB on the CPU, the free GPU memory less
    a margin on a GPU) bounds each job's working memory: frames that do not fit whole run in
    exact tiles. ``tile``: None chooses, 0 never tiles, N forces N x N pixel tiles. ``device``:
    the CUDA device index of torch-cuda and TensorRT (default 0). ``progress(unit, done, total)``:
    tiles of a tiled frame ("tiles") and frames of a stack ("frames": fused of read),
    engine.pipeline_api.Progress.
    """

    def __init__(self, backend: str = "auto", *, weights=None, onnx=None, engine=None, precision: str | None = None,
                 threads: int | None = None, max_memory=None, tile: int | None = None, device: int | None = None,
                 progress: Progress | None = None):
        self.backend = resolve_backend(backend, engine)
        self.options = backend_options(self.backend, weights=weights, onnx=onnx, engine=engine, precision=precision,
                                       threads=threads, max_memory=max_memory, tile=tile, device=device)
        check_installed(self.backend, self.options)
        self._params = None
        if self.backend != "tensorrt" and getattr(self.options, "onnx", None) is None:
            from engine.checkpoint import load_gacn
            from engine.weights import resolve_weights
            self._params = load_gacn(resolve_weights(self.options.weights))
        self._progress = progress
        self._pipeline: Pipeline | None = None

    def load(self) -> "Fuser":
        """Build the backend's runner and executor now (otherwise the first job does)."""
        if self._pipeline is not None:
            return self
        runner = create_runner(self.backend, self.options, params=self._params)
        if runner.on_device:
            from engine.device_executor import DeviceExecutor
            executor = DeviceExecutor(runner)
        else:
            from engine.host_executor import HostExecutor
            executor = HostExecutor(runner)
        try:
            self._pipeline = Pipeline(executor, max_memory=self.options.max_memory, tile=self.options.tile,
                                      progress=self._progress)
        except BaseException:
            executor.close()
            raise
        log.info("GACN fuser ready on %s", self.backend)
        return self

    @property
    def pipeline(self) -> Pipeline:
        return self.load()._pipeline

    def check_pair(self, metas, names: Sequence[str] = ("source A", "source B"), *, maps: bool = False) -> None:
        """Before any pixel is decoded: two sources given as (shape, dtype) (engine.imageio.image_meta)
        can be fused together within the memory budget. A pair whose full-size planes alone
        exceed a known budget is refused before the model loads; otherwise it is planned as
        ``fuse`` will plan it."""
        shape, dtype = preprocess.check_source_metas(metas, names), metas[0][1]
        budget = self.options.max_memory or (HOST_DEFAULT if self.backend in HOST_BACKENDS else None)
        if budget is not None:
            check_resident(budget, pair_resident(shape, dtype, maps), shape)
        self.pipeline.plan_pair(shape, dtype, maps)

    def fuse(self, a, b, *, maps: bool = False, align: str = "none") -> FusionResult:
        """Fuse two sources (uint8/uint16, gray or RGB; numpy arrays, or device arrays for the GPU
        backends); D and M on request. ``align`` (host arrays): register B to A first ("affine",
        "homography"; "auto" leaves a registered pair as it is); where the warped B does not cover
        A, the result takes A (M = 1)."""
        if align == "none":
            return self.pipeline.fuse(a, b, maps)
        (_, _), (b, valid) = _aligned([a, b], align, "first", ["source A", "source B"], [])
        res = self.pipeline.fuse(a, b, maps)
        if valid is not None and not valid.all():
            a = preprocess.check_image(a, "source A")
            res.fused[~valid] = a[~valid]
            if res.mask is not None:
                res.mask[~valid] = 1
        return res

    def fuse_stack(self, frames: Iterable[np.ndarray], *, strategy: str = strategies.DEFAULT, align: str = "auto",
                   names: Sequence[str] | None = None, crop: bool = False, reference=None) -> StackResult:
        """Fuse a focus stack in the ``reference`` frame's geometry (default the middle frame); see fuse_stack."""
        return fuse_stack(frames, pipeline=self.pipeline, strategy=strategy, align=align, names=names, crop=crop,
                          reference=reference, progress=self.pipeline.progress)

    def stream(self, pairs: Iterable, *, slots: int = 3, maps: bool = False) -> Iterator[StreamResult]:
        """Fuse a stream of ``(a, b)`` pairs with ``slots`` frames in flight; results come in input
        order, a bad frame as a result with ``error`` set (its index kept), never dropped."""
        return stream(self.pipeline, pairs, slots=slots, maps=maps)

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.close()
            self._pipeline = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
