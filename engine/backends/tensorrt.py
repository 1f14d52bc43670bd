"""TensorRT runner: a plan built by export/build_engine.py, with GACN's plugins.

Refuses an engine built for another GPU or TensorRT version (checked against the JSON sidecar
that build_engine.py writes), keeps one execution context on the pipeline's compute stream,
sets the input shape per frame size (checked against the optimisation profile) and replays a
CUDA graph per shape. Buffers, streams and copies are engine.cuda's, shared with torch-cuda.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from engine import cuda
from engine.backends.base import Runner
from engine.errors import BackendError

log = logging.getLogger(__name__)


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendError("TensorRT is not installed (pip install tensorrt from NVIDIA's index); "
                           "use --backend torch-cuda or onnxruntime") from None
    return trt


PLUGIN_NAMES = ("GacnActivity", "GacnSpatialGate", "GacnBoundaryRefine", "GacnFeatureConv")


def load_plugins(registry, path=None) -> Path:
    """Register GACN's plugin creators (libgacn_plugins.so) in a TensorRT plugin registry.

    ``registry`` is the builder's registry when building (the ONNX parser looks creators up
    there) and the runtime's when deserializing. ``load_library`` returns None when a creator
    is already registered, so an already-loaded library is not loaded twice.
    """
    from engine.kernels import find_library
    path = Path(path) if path else find_library("plugins")
    if all(registry.get_creator(n, "1", "") is not None for n in PLUGIN_NAMES):
        return path
    if registry.load_library(str(path)) is None:
        raise BackendError(f"TensorRT could not load the plugin library {path}")
    missing = [n for n in PLUGIN_NAMES if registry.get_creator(n, "1", "") is None]
    if missing:
        raise BackendError(f"{path} does not provide the plugins {', '.join(missing)}")
    return path


def sidecar_path(engine_path) -> Path:
    return Path(str(engine_path) + ".json")


def check_compatibility(meta: dict, trt_version: str, gpu: str, capability: str) -> None:
    """An engine runs only on the TensorRT version and GPU architecture it was built for."""
    problems = []
    if meta.get("tensorrt_version") != trt_version and not meta.get("version_compatible"):
        problems.append(f"built with TensorRT {meta.get('tensorrt_version')}, running {trt_version}")
    compat = meta.get("hardware_compatibility", "none")
    built_cc = meta.get("compute_capability")
    if compat == "ampere+":
        if float(capability) < 8.0:
            problems.append(f"built for Ampere and newer, this GPU ({gpu}) is compute capability {capability}")
    elif built_cc != capability:
        problems.append(f"built for compute capability {built_cc} ({meta.get('gpu')}), this GPU ({gpu}) is {capability}")
    if problems:
        raise BackendError("the TensorRT engine does not match this machine: " + "; ".join(problems)
                           + ". Rebuild it here with export/build_engine.py")


class TensorRTRunner(Runner):
    name = "tensorrt"
    on_device = True

    def __init__(self, engine_path, plugins=None, cuda_graphs: bool = True, **_ignored):
        self.engine_path = Path(engine_path)
        self.plugins, self.cuda_graphs = plugins, cuda_graphs
        self.engine = self.context = None
        self._buffers: dict[str, cuda.DeviceBuffer] = {}
        self._graphs: dict[tuple, object] = {}
        self._runs: dict[tuple, int] = {}
        self._shape = None

    def activate(self) -> None:
        trt = import_tensorrt()
        if not self.engine_path.is_file():
            raise BackendError(f"{self.engine_path}: no such engine file")
        side = sidecar_path(self.engine_path)
        if not side.is_file():
            raise BackendError(f"{side}: missing; engines must be built with export/build_engine.py, which writes it")
        meta = json.loads(side.read_text())
        gpu, cc = cuda.device_name_and_capability()
        check_compatibility(meta, trt.__version__, gpu, cc)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        load_plugins(self.runtime.get_plugin_registry(), self.plugins)
        self.engine = self.runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise BackendError(f"{self.engine_path}: TensorRT could not deserialize the engine (see its log above)")
        names = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
        if names != {"luma", "decision", "mask"}:
            raise BackendError(f"{self.engine_path}: not a GACN engine (I/O tensors {sorted(names)})")
        for n in names:
            if self.engine.get_tensor_dtype(n) != trt.float32:
                raise BackendError(f"{self.engine_path}: tensor '{n}' is {self.engine.get_tensor_dtype(n)}, expected float32")
        self.profile = [tuple(s) for s in self.engine.get_tensor_profile_shape("luma", 0)]
        self.context = self.engine.create_execution_context()
        self.meta = meta
        log.info("TensorRT %s engine %s on %s (profile %s)", trt.__version__, self.engine_path.name, gpu, self.profile)

    def _buffer(self, name: str, nbytes: int) -> int:
        buf = self._buffers.get(name)
        if buf is None or buf.nbytes < nbytes:
            self._graphs.clear()  # captured graphs hold the old addresses
            buf = self._buffers[name] = cuda.DeviceBuffer(nbytes)
        return buf.ptr

    def io(self, k: int, h: int, w: int) -> tuple[int, int, int]:
        lo, _, hi = self.profile
        if not all(lo[i] <= v <= hi[i] for i, v in ((0, k), (2, h), (3, w))):
            raise BackendError(f"{w}x{h} with {k} frames is outside the engine's profile "
                               f"({lo[3]}x{lo[2]} to {hi[3]}x{hi[2]}, {lo[0]}-{hi[0]} frames); rebuild with "
                               "export/build_engine.py --min/--max")
        ptrs = (self._buffer("luma", 4 * k * h * w), self._buffer("decision", 4 * (k - 1) * h * w),
                self._buffer("mask", 4 * (k - 1) * h * w))
        if self._shape != (k, h, w):
            if not self.context.set_input_shape("luma", (k, 1, h, w)):
                raise BackendError(f"TensorRT refused the input shape {(k, 1, h, w)}")
            for name, ptr in zip(("luma", "decision", "mask"), ptrs):
                self.context.set_tensor_address(name, ptr)
            self._shape = (k, h, w)
        return ptrs

    def enqueue(self, stream) -> None:
        key = self._shape
        graph = self._graphs.get(key)
        if graph is not None:
            graph.launch(stream)
            return
        if not self.context.execute_async_v3(int(stream)):
            raise BackendError("TensorRT execute_async_v3 failed (see its log above)")
        self._runs[key] = self._runs.get(key, 0) + 1
        if self.cuda_graphs and self._runs[key] == 2:  # TensorRT needs one plain run per shape first
            self._graphs[key] = cuda.Graph(stream, lambda: self.context.execute_async_v3(int(stream)))

    def deactivate(self) -> None:
        self._graphs.clear()
        self._buffers.clear()
        self.context = self.engine = None
