"""The CPU runners' one thread default: the cores this process may run on."""
from __future__ import annotations

import os


def usable_cores() -> int:
    """The process's CPU affinity (``len(os.sched_getaffinity(0))``: a container's or taskset's
    limit, not the machine's core count), else os.cpu_count() where affinity is not available."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
