"""Where a host runner's graphs come from: built from checkpoint parameters for a runtime
target (engine/onnx_graph.py), or read from an exported file; and what identifies them in the
model cache (engine/backends/model_cache.py)."""
from __future__ import annotations

from engine.variants import sums_block
from engine.errors import CheckpointError


def graph_bytes(params=None, onnx_path=None, variant: str = "whole", target: str = "onnxruntime",
                frames: int | None = None) -> bytes:
    """A serialized GACN graph variant: built from checkpoint parameters (for ``frames`` = K
    fixed, or K dynamic), or read from an exported file (K dynamic)."""
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
                                  "(without --plugins)")
        if meta.get("gacn.variant", "whole") != variant:
            raise CheckpointError(f"{onnx_path}: a '{meta.get('gacn.variant')}' graph, not the '{variant}' one")
        return model.SerializeToString()
    from engine.onnx_graph import build_model
    block = sums_block(variant)
    return build_model(params, variant="sums" if block is not None else variant, block=block,
                       target=target, frames=frames).SerializeToString()


def source_key(params=None, onnx_path=None) -> dict:
    """The model-cache key fields that name a runner's graphs: the parameters' sha256 and the
    builder's source fingerprint, or the exported file's sha256."""
    from engine.backends.model_cache import graph_fingerprint, params_digest
    if onnx_path is not None:
        from engine.checkpoint import sha256_of
        try:
            return {"onnx_sha256": sha256_of(onnx_path)}
        except OSError as e:
            raise CheckpointError(f"{onnx_path}: cannot read the ONNX file ({e.strerror})") from None
    return {"params_sha256": params_digest(params), "graph": graph_fingerprint()}
