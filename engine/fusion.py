"""The public entry point: a Fuser holds one backend and fuses pairs and focus stacks."""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np

from engine import preprocess
from engine.backends.base import create_runner, resolve_backend
from engine.errors import BackendError, InputError
from engine.stack import Calibration, Sequential
from engine.streaming import StreamResult, stream

log = logging.getLogger(__name__)

STRATEGIES = ("calibration", "sequential")
STACK_BATCH = 2  # frames compared with the reference per network run (K = 1 + STACK_BATCH)


@dataclass
class FusionResult:
    fused: np.ndarray                     # same dtype and mode as the sources
    decision: np.ndarray | None = None    # D, float32 H x W (spec section 5)
    mask: np.ndarray | None = None        # M, float32 H x W (spec section 6)
    timings: dict = field(default_factory=dict)  # device pipelines: h2d, compute, d2h in ms


@dataclass
class StackResult:
    fused: np.ndarray
    index: np.ndarray                     # int32 H x W: which frame each pixel came from
    frames: int


class HostPipeline:
    """Pre/post-processing in numpy around a host runner (ONNX Runtime)."""

    def __init__(self, runner):
        self.runner = runner
        runner.activate()

    def maps(self, ref_luma: np.ndarray, others: Sequence[np.ndarray]):
        """D and M [len(others), H, W] of the reference against each other luma plane."""
        d, m = self.runner.infer(np.stack([ref_luma, *others])[:, None])
        if not (np.isfinite(d).all() and np.isfinite(m).all()):
            raise BackendError(f"{self.runner.name} produced non-finite decision values; refusing to write them")
        return d[:, 0], m[:, 0]

    def fuse(self, a: np.ndarray, b: np.ndarray, maps: bool = False) -> FusionResult:
        a, b = preprocess.check_sources([a, b], ["source A", "source B"])
        d, m = self.maps(preprocess.luma(a), [preprocess.luma(b)])
        fused = preprocess.blend(a, b, m[0])
        return FusionResult(fused, d[0], m[0]) if maps else FusionResult(fused)

    def stack(self, frames: Iterator[np.ndarray], check, strategy: str) -> StackResult:
        frame0 = check(next(frames), 0)
        if strategy == "sequential":
            acc, n = Sequential(frame0), 1
            for i, frame in enumerate(frames, start=1):
                frame = check(frame, i)
                _, m = self.maps(acc.luma(), [preprocess.luma(frame)])
                acc.update(m[0], frame, i)
                n += 1
        else:
            acc, n = self._calibrate(frame0, frames, check)
        if n < 2:
            raise InputError("a focus stack needs at least 2 frames, got 1")
        return StackResult(acc.out, acc.index, n)

    def _calibrate(self, frame0, frames, check):
        """Frame 0 against the others, STACK_BATCH at a time: the reference's features are then
        computed once per batch instead of once per frame (30% faster on the CPU at K = 3)."""
        ref_luma = preprocess.luma(frame0)
        acc, n, batch = None, 1, []

        def flush():
            nonlocal acc
            _, m = self.maps(ref_luma, [preprocess.luma(f) for _, f in batch])
            for k, (i, f) in enumerate(batch):
                if acc is None:
                    acc = Calibration(m[k], frame0, f)
                else:
                    acc.update(m[k], f, i)
            batch.clear()

        for i, frame in enumerate(frames, start=1):
            batch.append((i, check(frame, i)))
            n += 1
            if len(batch) == STACK_BATCH:
                flush()
        if batch:
            flush()
        return acc, n

    # The streaming protocol (engine.streaming): here each submit runs to completion.
    def new_slot(self) -> dict:
        return {}

    def submit(self, slot: dict, a, b, maps: bool) -> None:
        slot["result"] = self.fuse(a, b, maps)

    def collect(self, slot: dict) -> FusionResult:
        return slot.pop("result")

    def release_slots(self) -> None:
        pass

    def close(self) -> None:
        self.runner.deactivate()


class Fuser:
    """Multi-focus fusion with one backend, loaded once.

    >>> with Fuser() as f:                      # ONNX Runtime on the CPU unless a GPU is there
    ...     out = f.fuse(a, b).fused
    """

    def __init__(self, backend: str = "auto", *, weights=None, onnx=None, engine=None,
                 precision: str = "fp32", threads: int | None = None):
        from engine.weights import resolve_weights
        self.backend = resolve_backend(backend, engine)
        params = None
        if self.backend != "tensorrt" and onnx is None:
            from engine.checkpoint import load_gacn
            params = load_gacn(resolve_weights(weights))
        options = {"threads": threads} if self.backend == "onnxruntime" else {}
        runner = create_runner(self.backend, params=params, onnx_path=onnx, engine_path=engine,
                               precision=precision, **options)
        if runner.on_device:
            from engine.device_pipeline import DevicePipeline
            self.pipeline = DevicePipeline(runner)
        else:
            self.pipeline = HostPipeline(runner)
        log.info("GACN fuser ready on %s", self.backend)

    def fuse(self, a, b, *, maps: bool = False) -> FusionResult:
        """Fuse two registered sources (uint8/uint16, gray or RGB; numpy arrays, or device arrays
        for the GPU backends); D and M on request."""
        return self.pipeline.fuse(a, b, maps)

    def fuse_stack(self, frames: Iterable[np.ndarray], *, strategy: str = "calibration",
                   names: Sequence[str] | None = None) -> StackResult:
        """Fuse a focus stack read one frame at a time (frame 0 is the reference)."""
        if strategy not in STRATEGIES:
            raise InputError(f"unknown stack strategy '{strategy}'; choose calibration or sequential")
        first: list[np.ndarray] = []

        def check(img, i):
            name = names[i] if names and i < len(names) else f"frame {i}"
            if not first:
                first.append(preprocess.check_image(img, name))
                return first[0]
            return preprocess.check_sources([first[0], img], [names[0] if names else "frame 0", name])[1]

        frames = iter(frames)
        head = next(frames, None)
        if head is None:
            raise InputError("a focus stack needs at least 2 frames, got 0")
        return self.pipeline.stack(itertools.chain([head], frames), check, strategy)

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
