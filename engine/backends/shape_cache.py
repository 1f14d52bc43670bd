"""Per-shape state of a CUDA-graph runner: a small LRU of shapes and the capture policy.

Policy: the first run of a shape is eager, so a one-shot call (a CLI pair)
pays no capture it would never reuse; the second run of the same shape captures the network
once and replays that capture (no second eager pass); every later run replays. The cache keeps
the ``capacity`` most recently USED shapes (an LRU, not insertion order), so a shape that keeps
coming back is never evicted by a few others and always replays.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

EAGER, CAPTURE, REPLAY = "eager", "capture", "replay"


class ShapeCache:
    """``entry(key, make)`` -> the shape's dict (made by ``make()`` on first use, with "graph" and
    "runs" added); ``action(entry)`` -> what its next run does: EAGER, CAPTURE or REPLAY."""

    def __init__(self, capacity: int = 4, graphs: bool = True):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity, self.graphs = capacity, graphs
        self._entries: OrderedDict[tuple, dict] = OrderedDict()

    def entry(self, key: tuple, make: Callable[[], dict]) -> dict:
        if key in self._entries:
            self._entries.move_to_end(key)  # most recently used
        else:
            while len(self._entries) >= self.capacity:
                self._entries.popitem(last=False)  # least recently used: frees its buffers and graph
            self._entries[key] = {**make(), "graph": None, "runs": 0}
        return self._entries[key]

    def action(self, entry: dict) -> str:
        """Counts the run and says how to do it."""
        entry["runs"] += 1
        if entry["graph"] is not None:
            return REPLAY
        return CAPTURE if self.graphs and entry["runs"] >= 2 else EAGER

    def __contains__(self, key) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
