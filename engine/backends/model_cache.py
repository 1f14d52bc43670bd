"""An on-disk cache of compiled and optimised models, so that a second start skips building,
parsing and compiling the graph.

An entry is named by a sha256 over everything its bytes depend on: the checkpoint's
parameters (or the exported ONNX file), the graph builder's version and source, the variant
and its runtime target, the runtime and its version, this machine's CPU (compiled models hold
ISA-specific kernels and layouts) and the compile options. Entries are written atomically
(a temporary file renamed into place) and carry the sha256 of their payload, so a truncated
or corrupt entry is detected, removed and rebuilt; the cache never makes a run fail: an
unwritable cache directory only costs the next start its speed.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import logging
import os
import platform
from functools import lru_cache
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MAGIC = b"GACN-MODEL-CACHE-1\n"
_DIGEST = 32
GRAPH_BUILDER = "engine.onnx_graph"     # what a graph is built from, with every engine module it imports
ENV_DISABLE = "GACN_NO_MODEL_CACHE"     # set (non-empty): never read or write entries
ENV_ROOT = "GACN_MODEL_CACHE"            # the cache directory, instead of ~/.cache/gacn-engine/models


def params_digest(params: dict[str, np.ndarray]) -> str:
    """sha256 of checkpoint parameters (names, dtypes, shapes and values, in name order)."""
    h = hashlib.sha256()
    for name in sorted(params):
        a = np.ascontiguousarray(params[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def module_source(name: str) -> Path:
    """The source file of module ``name``, found without importing it; a missing one is an
    error (an incomplete installation), never skipped: it would silently stop invalidating."""
    spec = importlib.util.find_spec(name)
    origin = Path(spec.origin) if spec is not None and spec.origin else None
    if origin is None or not origin.is_file():
        raise RuntimeError(f"model cache: the source of {name} ({origin}) is missing; reinstall gacn-engine")
    return origin


def graph_sources(root: str = GRAPH_BUILDER) -> list[Path]:
    """The sources of ``root`` and of every engine module it imports, transitively (read from
    their import statements, so nothing is imported)."""
    seen, todo, files = set(), [root], []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_source(name)
        files.append(path)
        for node in ast.walk(ast.parse(path.read_bytes())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("engine."):
                todo.append(node.module)
            elif isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.startswith("engine.")]
    return sorted(files)


@lru_cache(maxsize=4)
def graph_fingerprint(root: str = GRAPH_BUILDER) -> str:
    """A sha256 of the graph builder's sources (graph_sources: GRAPH_VERSION among them), or of
    another module that shapes compiled models (``root``), read as text so that a cache hit never
    imports onnx: any change to how graphs are made invalidates every entry without anyone
    remembering to bump a number."""
    h = hashlib.sha256()
    for path in graph_sources(root):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


@lru_cache(maxsize=1)
def machine_fingerprint() -> str:
    """CPU model and ISA flags: a compiled model is only valid where it was compiled."""
    info = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            fields = {}
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "flags", "Features", "CPU implementer", "CPU part") and key not in fields:
                    fields[key] = value.strip()
            info += "|" + "|".join(f"{k}={fields[k]}" for k in sorted(fields))
    except OSError:
        info += "|" + platform.processor()
    return hashlib.sha256(info.encode()).hexdigest()[:16]


def default_root() -> Path:
    if os.environ.get(ENV_ROOT):
        return Path(os.environ[ENV_ROOT]).expanduser()
    from engine.weights import cache_dir
    return cache_dir() / "models"


class ModelCache:
    """Checked, atomically written blobs under ``root`` (default ~/.cache/gacn-engine/models)."""

    def __init__(self, root: str | os.PathLike | None = None, enabled: bool = True):
        self.enabled = enabled and not os.environ.get(ENV_DISABLE)
        self.root = Path(root) if root is not None else default_root()

    def path(self, runtime: str, label: str, key: dict) -> Path:
        """The entry for ``key`` (every input the bytes depend on; JSON-serialisable)."""
        fields = {"runtime": runtime, "machine": machine_fingerprint(), **key}
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]
        return self.root / f"{runtime}-{label}-{digest}.bin"

    def load(self, path: Path) -> bytes | None:
        """The payload of a valid entry, or None (absent, disabled, or corrupt: then removed)."""
        if not self.enabled:
            return None
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("model cache %s unreadable (%s); rebuilding", path, e)
            return None
        head = len(MAGIC)
        payload = data[head + _DIGEST:]
        if data[:head] != MAGIC or len(data) < head + _DIGEST or hashlib.sha256(payload).digest() != data[head:head + _DIGEST]:
            self.discard(path, "corrupt (bad header or checksum)")
            return None
        return payload

    def store(self, path: Path, payload: bytes) -> None:
        """Publish an entry atomically; failures are logged, never raised."""
        if not self.enabled:
            return
        from engine.atomic import write_bytes_atomic
        from engine.errors import WriteError
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, MAGIC + hashlib.sha256(payload).digest() + payload)
            log.debug("model cache: wrote %s (%d bytes)", path, len(payload))
        except (OSError, WriteError) as e:
            log.warning("model cache: cannot write %s (%s); the next start will compile again", path, e)

    def discard(self, path: Path, why: str) -> None:
        log.warning("model cache entry %s is %s; removing it and rebuilding", path, why)
        try:
            path.unlink()
        except OSError:
            pass
