"""ONNX Runtime runner: the portable graph and its tiled variants on the CPU provider.

Each variant (engine/backends/base.py) is its own session, made on first use from the
checkpoint's parameters (engine/onnx_graph.py), or read from an exported file (whole frames
only: an exported graph carries no tile variants). The CPU memory arena is off: with it, ONNX
Runtime keeps the high-water mark of every session and roughly doubles the peak (measured:
5.9 against 3.0 KB per pixel at 520x520), and tiles make every run the same size anyway.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from engine.variants import sums_block
from engine.errors import BackendError, CheckpointError
from engine.tiling import cse_weights

log = logging.getLogger(__name__)

# Working bytes of one run: FIXED + pixels * frames * PER_FRAME_PX[variant]: the peak RSS of a
# fresh process running the variant over the idle process with the runner imported, measured by
# benchmarks/memory.py --calibrate (2-core x86-64, onnxruntime 1.32, arena off) at 384^2 and
# 768^2 with K = 2 and 3, and bounded from above (the measurements are not linear in pixels:
# 2.4-2.9 KB/px for a pair at 768^2, 4.1 KB/px at 384^2 with ~250 MB of session overhead).
FIXED = 350 << 20
PER_FRAME_PX = {"whole": 1250, "tile": 1250, "sums0": 150, "sums1": 150, "sums2": 250, "sums3": 450}


def graph_bytes(params=None, onnx_path=None, variant: str = "whole") -> bytes:
    """A serialized GACN graph variant: built from checkpoint parameters, or read from an exported file."""
    if onnx_path is not None:
        import onnx
        try:
            model = onnx.load(str(onnx_path))
        except Exception as e:  # onnx raises DecodeError, OSError, ...
            raise CheckpointError(f"{onnx_path}: not a readable ONNX model ({e})") from None
        meta = {p.key: p.value for p in model.metadata_props}
        if "gacn.graph_version" not in meta:
            raise CheckpointError(f"{onnx_path}: not a GACN graph exported by export/export_onnx.py (no gacn metadata)")
        if meta.get("gacn.plugins") == "1":
            raise CheckpointError(f"{onnx_path}: this graph holds TensorRT plugin nodes; export the portable graph "
                                  "(without --plugins) for ONNX Runtime")
        if meta.get("gacn.variant", "whole") != variant:
            raise CheckpointError(f"{onnx_path}: a '{meta.get('gacn.variant')}' graph, not the '{variant}' one")
        return model.SerializeToString()
    from engine.onnx_graph import build_model
    block = sums_block(variant)
    return build_model(params, variant="sums" if block is not None else variant, block=block).SerializeToString()


class OnnxRuntimeRunner:
    """engine.backends.base.HostRunner on ONNX Runtime."""

    name = "onnxruntime"
    on_device = False
    max_frames = None

    def __init__(self, params=None, onnx_path=None, threads: int | None = None, providers=None):
        if params is None and onnx_path is None:
            raise BackendError("onnxruntime runner needs checkpoint parameters or an ONNX file")
        self._params, self._onnx_path = params, onnx_path
        self._threads = threads
        self._providers = providers
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
            opts.intra_op_num_threads = self._threads or (os.cpu_count() or 1)
            opts.enable_cpu_mem_arena = False
            opts.log_severity_level = 3
            session = self._sessions[variant] = self._open(self._graph(variant), opts)
            log.debug("onnxruntime %s session '%s' on %s", ort.__version__, variant, session.get_providers()[0])
        return session

    def _graph(self, variant: str) -> bytes:
        return graph_bytes(self._params, self._onnx_path if variant == "whole" else None, variant)

    def _open(self, model: bytes, opts):
        import onnxruntime as ort
        available = ort.get_available_providers()
        providers = self._providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        return ort.InferenceSession(model, opts, providers=providers)

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
        return FIXED + height * width * frames * PER_FRAME_PX[variant]

    def unsupported(self, variant: str, frames: int, height: int, width: int) -> str | None:
        if variant != "whole" and self.cse_weights is None:
            return ("an exported graph (--onnx) runs whole frames only; give the checkpoint (--weights) "
                    "to run frames in tiles")
        return None

    def deactivate(self) -> None:
        self._sessions.clear()
