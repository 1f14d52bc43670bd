"""TensorRT runner: a plan built by export/build_engine.py, with GACN's plugins.

Refuses an engine built for another GPU or TensorRT version (checked against the JSON sidecar
that build_engine.py writes), keeps one execution context per plan on the executor's compute
stream, sets the input shape per frame size (checked against the optimisation profile) and
replays a CUDA graph per shape under torch-cuda's policy (engine/backends/shape_cache.py: eager
first, then captured; the most recently used shapes of each plan keep their graphs). Two kinds
of plan: a whole-frame engine (dynamic H, W within its profile), or a tile bundle
(``build_engine.py --tile T``: the ``tile`` network for windows of up to T x T plus its four
``sums`` passes, engine.tiling), which runs any frame size.
Buffers, streams and copies are engine.cuda's, shared with torch-cuda.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from engine import cuda
from engine.backends.shape_cache import CAPTURE, SHAPES_KEPT, ShapeCache
from engine.backends.plan_sidecar import PlanSidecar
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


def check_compatibility(meta: PlanSidecar | dict, trt_version: str, gpu: str, capability: str) -> None:
    """An engine runs only on the TensorRT version and GPU architecture it was built for."""
    if isinstance(meta, dict):
        meta = PlanSidecar.from_dict(meta)
    problems = []
    if meta.tensorrt_version != trt_version and not meta.version_compatible:
        problems.append(f"built with TensorRT {meta.tensorrt_version}, running {trt_version}")
    if meta.hardware_compatibility == "ampere+":
        if float(capability) < 8.0:
            problems.append(f"built for Ampere and newer, this GPU ({gpu}) is compute capability {capability}")
    elif meta.compute_capability != capability:
        problems.append(f"built for compute capability {meta.compute_capability} ({meta.gpu}), this GPU ({gpu}) is {capability}")
    if problems:
        raise BackendError("the TensorRT engine does not match this machine: " + "; ".join(problems)
                           + ". Rebuild it here with export/build_engine.py")


class _Plan:
    """One deserialized engine, its context, its I/O buffers (one set, grown to the largest
    shape) and its captured graphs (a ShapeCache)."""

    def __init__(self, runtime, path: Path, inputs: set[str], outputs: set[str], cuda_graphs: bool = True):
        trt = import_tensorrt()
        self.path = path
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BackendError(f"{path}: TensorRT could not deserialize the engine (see its log above)")
        names = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
        if names != inputs | outputs:
            raise BackendError(f"{path}: not the GACN engine expected here (I/O tensors {sorted(names)}, "
                               f"expected {sorted(inputs | outputs)})")
        for n in names:
            if self.engine.get_tensor_dtype(n) != trt.float32:
                raise BackendError(f"{path}: tensor '{n}' is {self.engine.get_tensor_dtype(n)}, expected float32")
        self.inputs, self.outputs = inputs, outputs
        self.profile = [tuple(s) for s in self.engine.get_tensor_profile_shape("luma", 0)]
        self.context = self.engine.create_execution_context()
        self.buffers: dict[str, cuda.DeviceBuffer] = {}
        self.graphs = ShapeCache(SHAPES_KEPT, cuda_graphs, release=lambda g: g.close())
        self.shape = self._entry = None

    def outside(self, k: int, h: int, w: int) -> str | None:
        lo, _, hi = self.profile
        if all(lo[i] <= v <= hi[i] for i, v in ((0, k), (2, h), (3, w))):
            return None
        return (f"{w}x{h} with {k} frames is outside the engine's profile ({lo[3]}x{lo[2]} to {hi[3]}x{hi[2]}, "
                f"{lo[0]}-{hi[0]} frames); rebuild with export/build_engine.py --min/--max or --tile")

    def shapes(self, k: int, h: int, w: int) -> dict[str, tuple]:
        all_shapes = {"luma": (k, 1, h, w), "cse": (k, self.engine.get_tensor_shape("cse")[1], 1, 1) if "cse" in self.inputs else None,
                      "colmask": (1, 1, 1, w), "decision": (k - 1, 1, h, w), "mask": (k - 1, 1, h, w), "sums": (k, 16, h)}
        return {n: all_shapes[n] for n in self.inputs | self.outputs}

    def bind(self, k: int, h: int, w: int) -> dict[str, int]:
        shapes = self.shapes(k, h, w)
        ptrs, grown = {}, False
        for name, shape in shapes.items():
            nbytes = 4 * int(np.prod(shape))
            buf = self.buffers.get(name)
            if buf is None or buf.nbytes < nbytes:
                if buf is not None:
                    buf.close()
                buf = self.buffers[name] = cuda.DeviceBuffer(nbytes)
                grown = True
            ptrs[name] = buf.ptr
        if grown:
            self.graphs.restart()   # captured graphs hold the old addresses
        if grown or self.shape != (k, h, w):
            for name in self.inputs:
                if not self.context.set_input_shape(name, shapes[name]):
                    raise BackendError(f"{self.path}: TensorRT refused the input shape {shapes[name]} of '{name}'")
            for name, ptr in ptrs.items():
                self.context.set_tensor_address(name, ptr)
            self.shape = (k, h, w)
        self._entry = self.graphs.entry((k, h, w), dict)
        return ptrs

    def enqueue(self, stream: int) -> None:
        entry = self._entry
        action = self.graphs.action(entry)
        if entry["graph"] is not None:
            entry["graph"].launch(stream)
            return
        self._execute(stream)   # TensorRT runs once after an input-shape change before a capture
        if action == CAPTURE:
            entry["graph"] = cuda.Graph(stream, lambda: self._execute(stream))

    def _execute(self, stream) -> None:
        if not self.context.execute_async_v3(int(stream)):
            raise BackendError(f"{self.path}: TensorRT execute_async_v3 failed (see its log above)")

    def close(self) -> None:
        self.graphs.clear()
        for b in self.buffers.values():
            b.close()
        self.buffers.clear()
        self.context = self.engine = None


class TensorRTRunner:
    """engine.backends.base.DeviceRunner on TensorRT plans."""

    name = "tensorrt"
    on_device = True

    def __init__(self, engine_path, plugins=None, cuda_graphs: bool = True, device: int = 0):
        self.engine_path = Path(engine_path)
        self.plugins, self.cuda_graphs, self.device = plugins, cuda_graphs, device
        self.plans: dict[str, _Plan] = {}
        self.cse_weights = None
        self.tile_side = None
        self.max_frames = None
        self.max_tile = None
        self._current: _Plan | None = None

    def activate(self) -> None:
        trt = import_tensorrt()
        if not self.engine_path.is_file():
            raise BackendError(f"{self.engine_path}: no such engine file")
        meta = PlanSidecar.read(self.engine_path)
        cuda.set_device(self.device)   # the engine, its contexts and the executor's streams live there
        gpu, cc = cuda.device_name_and_capability(self.device)
        check_compatibility(meta, trt.__version__, gpu, cc)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        load_plugins(self.runtime.get_plugin_registry(), self.plugins)
        maps = {"decision", "mask"}
        if meta.variant == "tile":
            self.tile_side = meta.tile
            self.cse_weights = [(np.array(f1, np.float32), np.array(f2, np.float32)) for f1, f2 in meta.cse_fc]
            self.plans["tile"] = _Plan(self.runtime, self.engine_path, {"luma", "cse"}, maps, self.cuda_graphs)
            for k, name in enumerate(meta.sums_plans):
                inputs = {"luma", "colmask"} | ({"cse"} if k else set())
                self.plans[f"sums{k}"] = _Plan(self.runtime, self.engine_path.parent / name, inputs, {"sums"},
                                               self.cuda_graphs)
        else:
            self.plans["whole"] = _Plan(self.runtime, self.engine_path, {"luma"}, maps, self.cuda_graphs)
        self.meta = meta
        self.max_frames = min(p.profile[2][0] for p in self.plans.values())
        log.info("TensorRT %s engine %s on %s (%s)", trt.__version__, self.engine_path.name, gpu,
                 f"tiles of {self.tile_side} px" if self.tile_side else f"profile {self.plans['whole'].profile}")

    def unsupported(self, variant: str, frames: int, height: int, width: int) -> str | None:
        plan = self.plans.get(variant)
        if plan is None:
            if variant == "whole":
                return f"{self.engine_path.name} is a tile engine ({self.tile_side} px); it runs frames in tiles only"
            return (f"{self.engine_path.name} runs whole frames only (build a tile engine with "
                    "export/build_engine.py --tile to run larger frames)")
        return plan.outside(frames, height, width)

    def bind(self, variant: str, frames: int, height: int, width: int) -> dict[str, int]:
        reason = self.unsupported(variant, frames, height, width)
        if reason is not None:
            raise BackendError(reason)
        self._current = self.plans[variant]
        return self._current.bind(frames, height, width)

    def enqueue(self, stream) -> None:
        self._current.enqueue(stream)

    def memory(self, variant: str, frames: int, height: int, width: int) -> int:
        """The engine's activation memory (device_memory_size_v2 or device_memory_size, the
        largest over its profile) plus its I/O tensors."""
        plan = self.plans.get(variant)
        if plan is None:
            return 0
        engine = plan.engine
        activations = engine.device_memory_size_v2 if hasattr(engine, "device_memory_size_v2") else engine.device_memory_size
        io = sum(4 * int(np.prod(s)) for s in plan.shapes(frames, height, width).values())
        return int(activations) + io

    def deactivate(self) -> None:
        for plan in self.plans.values():
            plan.close()
        self.plans.clear()
