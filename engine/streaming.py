"""Frames through a pipeline with a fixed number of slots in flight, results in input order.

The same orchestration serves every backend: a device pipeline overlaps one frame's copies
with another's compute (each slot has its own pinned and device buffers), a host pipeline
(ONNX Runtime) runs each submit to completion. At most ``slots`` frames are in flight and the
input iterator is only advanced when a slot is free (back-pressure). A frame that fails is
reported with its index and the stream goes on.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from engine.errors import GacnError


@dataclass
class StreamResult:
    index: int
    fused: np.ndarray | None = None
    decision: np.ndarray | None = None
    mask: np.ndarray | None = None
    error: Exception | None = None
    timings: dict = field(default_factory=dict)   # milliseconds: h2d, compute, d2h (device pipelines)

    @property
    def ok(self) -> bool:
        return self.error is None


def stream(pipeline, pairs: Iterable, slots: int = 3, maps: bool = False) -> Iterator[StreamResult]:
    """Fuse ``(a, b)`` pairs; an item that is an Exception (say, a decode error) is reported in its place."""
    if slots < 1:
        raise ValueError("slots must be >= 1")
    free = deque(pipeline.new_slot() for _ in range(slots))
    inflight: deque = deque()  # (index, slot | None, error | None), in input order

    def finish() -> StreamResult:
        index, slot, error = inflight.popleft()
        if error is not None:
            return StreamResult(index, error=error)
        try:
            res = pipeline.collect(slot)
            return StreamResult(index, res.fused, res.decision, res.mask, timings=res.timings)
        except GacnError as e:
            return StreamResult(index, error=e)
        finally:
            free.append(slot)

    try:
        for index, item in enumerate(pairs):
            while not free:
                yield finish()
            slot = free.popleft()
            try:
                if isinstance(item, Exception):
                    raise item
                a, b = item
                pipeline.submit(slot, a, b, maps)
                inflight.append((index, slot, None))
            except GacnError as e:
                free.appendleft(slot)
                inflight.append((index, None, e))
        while inflight:
            yield finish()
    finally:
        while inflight:  # the consumer stopped early: let the frames in flight land before reuse
            finish()
        pipeline.release_slots()
