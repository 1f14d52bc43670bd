"""Ordered, bounded read-ahead: decode the next frames on threads while the backend works."""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch(fn: Callable[[T], R], items: Iterable[T], workers: int = 2, depth: int = 4) -> Iterator[R]:
    """``map(fn, items)`` in input order, at most ``depth`` results in flight (back-pressure).

    An exception from ``fn`` is raised when its item's turn comes, never earlier or lost.
    """
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gacn-decode") as pool:
        pending: deque = deque()
        it = iter(items)
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= depth:
                break
        while pending:
            result = pending.popleft().result()
            nxt = next(it, _END)
            if nxt is not _END:
                pending.append(pool.submit(fn, nxt))
            yield result


_END = object()
