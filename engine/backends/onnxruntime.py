"""ONNX Runtime runner: the portable graph on the CPU provider (CUDA provider if installed)."""
from __future__ import annotations

import logging
import os

import numpy as np

from engine.backends.base import Runner
from engine.errors import BackendError, CheckpointError

log = logging.getLogger(__name__)


def graph_bytes(params=None, onnx_path=None) -> bytes:
    """The serialized GACN graph: built from checkpoint parameters, or read from an exported file."""
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
        return model.SerializeToString()
    from engine.onnx_graph import build_model
    return build_model(params).SerializeToString()


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(self, params=None, onnx_path=None, threads: int | None = None, providers=None):
        if params is None and onnx_path is None:
            raise BackendError("onnxruntime runner needs checkpoint parameters or an ONNX file")
        self._params, self._onnx_path = params, onnx_path
        self._threads = threads
        self._providers = providers
        self.session = None

    def activate(self) -> None:
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = self._threads or (os.cpu_count() or 1)
        opts.log_severity_level = 3
        available = ort.get_available_providers()
        providers = self._providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(graph_bytes(self._params, self._onnx_path), opts, providers=providers)
        log.info("onnxruntime %s session on %s", ort.__version__, self.session.get_providers()[0])

    def infer(self, luma: np.ndarray):
        if self.session is None:
            self.activate()
        d, m = self.session.run(["decision", "mask"], {"luma": np.ascontiguousarray(luma, dtype=np.float32)})
        return d, m

    def deactivate(self) -> None:
        self.session = None
