"""Memory budgets: parsing ``--max-memory``, what the machine has, and the defaults.

The pipeline estimates the peak of every job before it runs (full-size planes plus the
network's working set from the runner's measured cost model) and picks whole frames or tiles
to fit the budget, so that a job too large for the machine is refused with a message instead
of being killed by the OOM killer.
"""
from __future__ import annotations

import os
import re

from engine.errors import InputError

GiB = 1 << 30
MiB = 1 << 20
HOST_DEFAULT = 2 * GiB        # default working memory on the CPU
DEVICE_MARGIN = 512 * MiB     # left free on a GPU by default (other work, the CUDA context's growth)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": MiB, "g": GiB, "t": 1 << 40}


def parse_size(text) -> int:
    """``"2G"``, ``"1.5GiB"``, ``"512M"``, ``"800MB"`` or a number of bytes -> bytes (binary units)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = int(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text), re.IGNORECASE)
        if m is None:
            raise InputError(f"--max-memory: cannot read '{text}' as a size; write e.g. 2G, 1.5G, 800M or a byte count")
        value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise InputError(f"--max-memory: {text} is not a positive size")
    return value


def format_size(nbytes: float) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB)):
        if nbytes >= size:
            return f"{nbytes / size:.2f} {unit}"
    return f"{nbytes / 1024:.0f} KiB"


def host_available() -> int | None:
    """Bytes the kernel could still give this process (MemAvailable, and a cgroup limit if set)."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                raw = f.read().strip()
            with open(path.replace("memory.max", "memory.current").replace("limit_in_bytes", "usage_in_bytes")) as f:
                used = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if raw.isdigit() and int(raw) < (1 << 60):
            left = int(raw) - used
            avail = left if avail is None else min(avail, left)
        break
    if avail is None and hasattr(os, "sysconf"):
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            pass
    return avail
