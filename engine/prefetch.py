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


def background(items: Iterable[T], depth: int = 4) -> Iterator[T]:
    """Run a sequential producer (a video decoder) on its own thread, ``depth`` items ahead."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((False, None))
        except BaseException as e:  # handed to the consumer, in order
            q.put((False, e))

    t = threading.Thread(target=produce, name="gacn-producer", daemon=True)
    t.start()
    try:
        while True:
            more, value = q.get()
            if not more:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
