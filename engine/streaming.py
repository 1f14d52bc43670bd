"""Frames through a pipeline with a fixed number of slots in flight, results in input order.

The same orchestration serves every backend (engine.pipeline over an executor): on a GPU one
frame's copies overlap another's compute (each slot is a workspace with its own pinned and
device buffers), on the host each submit runs to completion. At most ``slots`` frames are in flight and the
input iterator is only advanced when a slot is free (back-pressure). A frame that fails is
reported with its index and the stream goes on.
"""
from __future__ import annotations

from collections import deque
from typing import Iterable, Iterator

from engine.errors import GacnError
from engine.results import StreamResult


def stream(pipeline, pairs: Iterable, slots: int = 3, maps: bool = False) -> Iterator[StreamResult]:
    """Fuse ``(a, b)`` pairs; an item that is an Exception (say, a decode error) is reported in its place."""
    if slots < 1:
        raise ValueError("slots must be >= 1")
    free = deque(pipeline.workspaces("stream", slots))
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
