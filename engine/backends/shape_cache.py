"""Per-shape state of a CUDA-graph runner (torch-cuda, TensorRT): a bounded LRU of shapes and
the one capture policy.

Policy: the first run of a shape is eager, so a one-shot call (a CLI pair) pays no capture it
would never reuse; the second run of the same shape captures the network once (torch-cuda
replays that capture; TensorRT, which must run once after each input-shape change before a
capture, runs eagerly and captures for the next run); every later run replays. The cache keeps
the ``capacity`` most recently USED shapes (an LRU, not insertion order), so a shape that keeps
coming back is never evicted by a few others and always replays; an evicted shape's graph is
released.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

EAGER, CAPTURE, REPLAY = "eager", "capture", "replay"
SHAPES_KEPT = 8      # a tiled frame uses up to 5 (variant, shape) pairs: the tile network and 4 sums passes


class ShapeCache:
    """``entry(key, make)`` -> the shape's dict (made by ``make()`` on first use, with "graph" and
    "runs" added); ``action(entry)`` -> what its next run does: EAGER, CAPTURE or REPLAY.
    ``release(graph)`` frees a graph that is dropped (evicted, ``restart``, ``clear``)."""

    def __init__(self, capacity: int = 4, graphs: bool = True, release: Callable[[object], None] | None = None):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity, self.graphs, self._release = capacity, graphs, release
        self._entries: OrderedDict[tuple, dict] = OrderedDict()

    def entry(self, key: tuple, make: Callable[[], dict]) -> dict:
        if key in self._entries:
            self._entries.move_to_end(key)  # most recently used
        else:
            while len(self._entries) >= self.capacity:
                self._drop(self._entries.popitem(last=False)[1])  # least recently used: its buffers and graph go
            self._entries[key] = {**make(), "graph": None, "runs": 0}
        return self._entries[key]

    def action(self, entry: dict) -> str:
        """Counts the run and says how to do it."""
        entry["runs"] += 1
        if entry["graph"] is not None:
            return REPLAY
        return CAPTURE if self.graphs and entry["runs"] >= 2 else EAGER

    def restart(self) -> None:
        """Drop every graph and start each shape over (eager first): its captured addresses are stale."""
        for e in self._entries.values():
            self._drop(e)
            e["runs"] = 0

    def _drop(self, entry: dict) -> None:
        graph, entry["graph"] = entry["graph"], None
        if graph is not None and self._release is not None:
            self._release(graph)

    def __contains__(self, key) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        for e in self._entries.values():
            self._drop(e)
        self._entries.clear()
