"""ONNX Runtime runner: the portable graph and its tiled variants on the CPU provider.

Each variant (engine/variants.py) is its own session, made on first use from the
checkpoint's parameters (engine/onnx_graph.py), or read from an exported file (whole frames
only: an exported graph carries no tile variants). The graphs keep K dynamic: the per-frame
graphs OpenVINO runs (K fixed) measured 5 % faster here too, but ONNX Runtime's peak memory on
them jumps with the frame size (900 MiB at 512 x 512, 420 MiB at 768 x 768 for a pair), which
a memory budget cannot plan for. The CPU memory arena is off: with it, ONNX
Runtime keeps the high-water mark of every session and roughly doubles the peak (measured:
5.9 against 3.0 KB per pixel at 520x520), and tiles make every run the same size anyway.

The graph ONNX Runtime optimised for this machine (``optimized_model_filepath``) goes to the
model cache (engine/backends/model_cache.py): a second start loads it with the graph
optimisations already applied, without building or serialising the graph from the checkpoint.
"""
from __future__ import annotations

import logging
import os
import tempfile

import numpy as np

from engine.backends.threads import usable_cores
from engine.errors import BackendError
from engine.tiling import cse_weights, tiles_unsupported

log = logging.getLogger(__name__)

TARGET = "onnxruntime"

# Working bytes of one run: max(FLOOR, FIXED + pixels * (PER_PX[variant][0] + frames *
# PER_PX[variant][1])): peak RSS less that of the process before the runtime was imported,
# fitted by benchmarks/memory_model.py --calibrate over K = 2, 3 at 512 and 1024 px squares (worst
# residual 5 %; 2-core x86-64, onnxruntime 1.32, arena off, the portable graph) and scaled by 1.1. FLOOR is the
# transient of making a session (graph optimisation), which dominates small frames (measured
# 490 MiB at 320 x 320).
FLOOR = 540 << 20
FIXED = 167 << 20
PER_PX = {"whole": (0, 900), "tile": (100, 800), "sums0": (0, 140), "sums1": (0, 140), "sums2": (0, 280),
          "sums3": (0, 490)}


class OnnxRuntimeRunner:
    """engine.backends.base.HostRunner on ONNX Runtime."""

    name = "onnxruntime"
    on_device = False
    max_frames = None
    # Windows of more than ~512 px make tensors of 32 MB and more, which glibc maps fresh (and
    # the kernel page-faults) on every run with the arena off: 2-2.6x slower per pixel measured
    # (benchmarks/RESULTS.md, tile sides), so tiles stay under this side.
    max_tile = 496
    tile_side = None

    def __init__(self, params=None, onnx_path=None, threads: int | None = None, providers=None, cache=None):
        if params is None and onnx_path is None:
            raise BackendError("onnxruntime runner needs checkpoint parameters or an ONNX file")
        self._params, self._onnx_path = params, onnx_path
        self._threads = threads
        self._providers = providers
        self._cache = cache
        self._key: dict | None = None
        self.cse_weights = cse_weights(params) if params is not None else None
        self._sessions: dict[str, object] = {}

    def activate(self) -> None:
        self._session("whole")

    def _session(self, variant: str):
        session = self._sessions.get(variant)
        if session is None:
            import onnxruntime as ort
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.intra_op_num_threads = self._threads or usable_cores()
            opts.enable_cpu_mem_arena = False
            opts.log_severity_level = 3
            available = ort.get_available_providers()
            providers = self._providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
            session = self._cached_session(ort, variant, opts, providers)
            self._sessions[variant] = session
            log.debug("onnxruntime %s session '%s' on %s", ort.__version__, variant, session.get_providers()[0])
        return session

    def _cached_session(self, ort, variant: str, opts, providers):
        """A session from the cached optimised graph, else from the built one (then cached).

        Only CPU-only sessions are cached: an optimised graph holds the layouts and fused kernels
        of the providers it was optimised for."""
        cacheable = providers == ["CPUExecutionProvider"]
        path = None
        if cacheable:
            from engine.backends.graphs import source_key
            from engine.backends.model_cache import ModelCache
            if self._cache is None:
                self._cache = ModelCache()
            if self._key is None:
                self._key = {**source_key(self._params, self._onnx_path), "target": TARGET,
                             "onnxruntime": ort.__version__}
            path = self._cache.path("onnxruntime", variant, {**self._key, "variant": variant})
            blob = self._cache.load(path)
            if blob is not None:
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
                try:
                    return ort.InferenceSession(blob, opts, providers=providers)
                except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
                    self._cache.discard(path, f"not loadable ({e})")
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        from engine.backends.graphs import graph_bytes
        graph = graph_bytes(self._params, self._onnx_path, variant, TARGET)
        if not (cacheable and self._cache.enabled):
            return ort.InferenceSession(graph, opts, providers=providers)
        with tempfile.TemporaryDirectory(prefix="gacn-ort-") as tmp:
            optimized = os.path.join(tmp, "optimized.onnx")
            opts.optimized_model_filepath = optimized
            session = ort.InferenceSession(graph, opts, providers=providers)
            try:
                with open(optimized, "rb") as f:
                    self._cache.store(path, f.read())
            except OSError as e:
                log.warning("onnxruntime did not write its optimised graph (%s); not cached", e)
        return session

    def infer(self, luma: np.ndarray, cse: np.ndarray | None = None):
        feeds = {"luma": np.ascontiguousarray(luma, dtype=np.float32)}
        if cse is not None:
            feeds["cse"] = np.ascontiguousarray(cse, dtype=np.float32)
        d, m = self._session("whole" if cse is None else "tile").run(["decision", "mask"], feeds)
        return d, m

    def block_sums(self, block: int, luma: np.ndarray, cse: np.ndarray | None, colmask: np.ndarray) -> np.ndarray:
        feeds = {"luma": np.ascontiguousarray(luma, dtype=np.float32),
                 "colmask": np.ascontiguousarray(colmask, dtype=np.float32).reshape(1, 1, 1, -1)}
        if block:
            feeds["cse"] = np.ascontiguousarray(cse, dtype=np.float32)
        return self._session(f"sums{block}").run(["sums"], feeds)[0]

    def memory(self, variant: str, frames: int, height: int, width: int) -> int:
        base, per_frame = PER_PX[variant]
        return max(FLOOR, FIXED + height * width * (base + frames * per_frame))

    def unsupported(self, variant: str, frames: int, height: int, width: int) -> str | None:
        return tiles_unsupported(variant, self.cse_weights)

    def deactivate(self) -> None:
        self._sessions.clear()
