"""The public entry point: a Fuser holds one backend and fuses pairs, focus stacks and streams."""
from __future__ import annotations

import logging
from typing import Iterable, Iterator, Sequence

import numpy as np

from engine import preprocess
from engine.backends.base import HOST_BACKENDS, create_runner, resolve_backend
from engine.errors import InputError
from engine.pipeline import STRATEGIES, Pipeline
from engine.results import FusionResult, StackResult, StreamResult
from engine.streaming import stream

log = logging.getLogger(__name__)

__all__ = ["Fuser", "FusionResult", "StackResult", "StreamResult", "STRATEGIES"]


class Fuser:
    """Multi-focus fusion with one backend, loaded once.

    >>> with Fuser() as f:                      # OpenVINO (else ONNX Runtime) on the CPU unless a GPU is there
    ...     out = f.fuse(a, b).fused

    ``max_memory`` (bytes or "2G"; default 2 GiB on the CPU, the free GPU memory less a margin on
    a GPU) bounds each job's working memory: frames that do not fit whole run in exact tiles.
    ``tile``: None chooses, 0 never tiles, N forces N x N pixel tiles.
    """

    def __init__(self, backend: str = "auto", *, weights=None, onnx=None, engine=None,
                 precision: str = "fp32", threads: int | None = None, max_memory=None, tile: int | None = None):
        from engine.memory import parse_size
        from engine.weights import resolve_weights
        budget = parse_size(max_memory) if max_memory is not None else None  # bad input before loading
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
            self.pipeline = Pipeline(executor, max_memory=budget, tile=tile)
        except BaseException:
            executor.close()
            raise
        log.info("GACN fuser ready on %s", self.backend)

    def fuse(self, a, b, *, maps: bool = False) -> FusionResult:
        """Fuse two registered sources (uint8/uint16, gray or RGB; numpy arrays, or device arrays
        for the GPU backends); D and M on request."""
        return self.pipeline.fuse(a, b, maps)

    def fuse_stack(self, frames: Iterable[np.ndarray], *, strategy: str = "calibration",
                   names: Sequence[str] | None = None) -> StackResult:
        """Fuse a focus stack read one frame at a time (frame 0 is the reference)."""
        def name(i):
            return names[i] if names and i < len(names) else f"frame {i}"

        def checked() -> Iterator[np.ndarray]:
            first = None
            for i, img in enumerate(frames):
                if first is None:
                    first = preprocess.check_image(img, name(0))
                    yield first
                else:
                    yield preprocess.check_sources([first, img], [name(0), name(i)])[1]

        return self.pipeline.stack(checked(), strategy)

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
