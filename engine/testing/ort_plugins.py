"""Run the TensorRT plugin graph on the CPU: ONNX Runtime with GACN's four custom operations
registered as Python custom ops (onnxruntime-extensions) backed by the CPU twin of the CUDA
kernels (libgacn_kernels_cpu.so, the same per-pixel arithmetic). This is how the exact graph
handed to TensorRT is checked against the golden outputs on machines without a GPU.
"""
from __future__ import annotations

import numpy as np

from engine.variants import sums_block
from engine.backends.onnxruntime import OnnxRuntimeRunner
from engine.errors import BackendError

_REGISTERED = False


def _register() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    try:
        from onnxruntime_extensions import PyCustomOpDef, onnx_op
    except ImportError:
        raise BackendError("running the plugin graph on the CPU needs onnxruntime-extensions") from None
    from engine.testing import kernels as K

    f32, i64, s = PyCustomOpDef.dt_float, PyCustomOpDef.dt_int64, PyCustomOpDef.dt_string
    plugin_attrs = {"plugin_version": s, "plugin_namespace": s}

    @onnx_op(op_type="GacnActivity", inputs=[f32, f32, f32, f32], outputs=[f32],
             attrs={"scaled": i64, "out_half": i64, **plugin_attrs})
    def _activity(fa, fb, sa, sb, **_):  # the graph's scaled form (kernel ABI 3)
        return K.cpu_activity_scaled(fa, fb, sa, sb)

    @onnx_op(op_type="GacnFeatureConv", inputs=[f32] * 7, outputs=[f32, f32], attrs={"algo": i64, **plugin_attrs})
    def _feature_conv(x, weight, bias, bn, fc1, fc2, scale, algo=1, **_):
        u, partials = K.cpu_feature_conv(x, weight, bias, bn, in_scale=scale, algo=int(algo))
        return u, K.cpu_cse_scale(partials, x.shape[2] * x.shape[3], fc1, fc2)

    @onnx_op(op_type="GacnSpatialGate", inputs=[f32, f32, f32], outputs=[f32], attrs={"relu": i64, **plugin_attrs})
    def _gate(x, weight, bn, relu=0, **_):
        return K.cpu_spatial_gate(x, weight, bn, relu=int(relu))

    @onnx_op(op_type="GacnBoundaryRefine", inputs=[f32, f32, f32], outputs=[f32, f32], attrs=plugin_attrs)
    def _refine(d4, ya, yb, **_):
        return K.cpu_boundary_refine(d4, ya, yb)

    _REGISTERED = True


def _open(model_bytes: bytes, opts):
    import onnxruntime as ort
    from onnxruntime_extensions import get_library_path
    _register()
    opts.register_custom_ops_library(get_library_path())
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def plugin_session(model_bytes: bytes, threads: int | None = None):
    """An InferenceSession for a graph with GACN plugin nodes (FP32 graphs)."""
    import onnxruntime as ort
    from onnxruntime_extensions import get_library_path
    _register()
    opts = ort.SessionOptions()
    opts.register_custom_ops_library(get_library_path())
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def run(session, luma: np.ndarray):
    return session.run(["decision", "mask"], {"luma": np.ascontiguousarray(luma, np.float32)})


class PluginGraphRunner(OnnxRuntimeRunner):
    """A HostRunner over the TensorRT graphs (engine.onnx_graph with plugins=True: the tile
    network with plugin nodes and the float32 sums passes of a tile bundle), for CI."""

    name = "onnxruntime-plugin-graph"

    def __init__(self, params, threads=None):
        super().__init__(params=params, threads=threads)

    def _cached_session(self, ort, variant: str, opts, providers):
        """The plugin graph of ``variant`` with the custom ops registered (not cached)."""
        from engine.onnx_graph import build_model
        block = sums_block(variant)
        model = build_model(self._params, plugins=True, variant="sums" if block is not None else variant, block=block)
        return _open(model.SerializeToString(), opts)
