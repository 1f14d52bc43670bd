"""OpenVINO runner: the GACN graph variants compiled for the CPU, in float32 (or, opt-in, with a
bfloat16 decision path: ``precision="bf16"``, engine/backends/openvino_bf16.py).

The graphs are the portable ONNX ones (engine/onnx_graph.py, target ``openvino``, built for
the call's frame count K so that each frame's features run alone and the CSE scales fold into
weights), read by OpenVINO's ONNX frontend. Settings, each measured on a 2-core AVX-512 machine
(benchmarks/RESULTS.md):

- ``INFERENCE_PRECISION_HINT=f32``: on CPUs with BF16 instructions OpenVINO otherwise runs
  float32 graphs in bfloat16, which moves the decision map far outside the float32 tolerances
  (the activity step multiplies feature differences by 1000 before a sigmoid). With
  ``precision="bf16"`` the whole/tile models are compiled for bf16 with every node outside
  the decision path kept in float32 (checked on each compiled model); the sums passes have no
  decision path and stay float32.
- ``PERFORMANCE_HINT=LATENCY`` with one stream of ``INFERENCE_NUM_THREADS`` = the usable cores:
  the pipeline runs one network call at a time.
- Shapes: a model compiled for one static shape runs 10 % faster than the dynamic one and
  needs 30-40 % less memory (planned once, in place), but compiling it costs about a small
  frame's run (0.35 s for a 520x520 pair; an import from the model cache 0.06 s). So every
  shape gets its own static model (kept in a small LRU and in the cache), except that once a
  process has met DYNAMIC_AFTER_SHAPES whole-frame shapes (a directory of photos of mixed
  sizes), a new small shape runs on the dynamic model until it is met again.
- Memory: a compiled model keeps its intermediate buffers after a run; the runner releases
  them (``release_memory``) when another model runs next, so that at most one model's
  buffers are resident and a tiled job's peak is that of its largest pass, as the cost model
  (``memory``) and the pipeline's plan assume.

Compiled models (dynamic and static) go to the model cache (engine/backends/model_cache.py)
as OpenVINO export blobs, so that a second start imports them instead of building, parsing and
compiling the graph.
"""
from __future__ import annotations

import importlib.util
import io
import logging
import sys
from collections import Counter, OrderedDict
from pathlib import Path

import numpy as np

from engine.backends.threads import usable_cores
from engine.errors import BackendError
from engine.options import PRECISIONS
from engine.tiling import cse_weights, tiles_unsupported
from engine.variants import sums_block

log = logging.getLogger(__name__)

TARGET = "openvino"
F32 = {"INFERENCE_PRECISION_HINT": "f32", "EXECUTION_MODE_HINT": "ACCURACY"}
STATIC_MODELS = 12           # static compiled models kept (a stack: tile + 4 sums passes, K = 3 and 2)
STATIC_FIRST_PIXELS = 1 << 20  # whole frames this large always get a static model (memory)
DYNAMIC_AFTER_SHAPES = 3       # whole-frame shapes compiled static before new ones run dynamic first

# Working bytes of one run: FIXED + pixels * (PER_PX[variant][0] + frames * PER_PX[variant][1]):
# peak RSS less that of the process before the runtime was imported (the runtime, the compiled
# model and its buffers), fitted by benchmarks/memory_model.py --calibrate over K = 2, 3 at 512 and
# 1024 px squares (worst residual 1 %; 2-core x86-64, openvino 2026.4) and scaled by 1.1.
# "whole" is the dynamic model (a small frame's first run), "whole-static" the static one. The
# per-frame graphs run the features of one frame at a time, so the sums passes hardly grow with
# K. a < 0 is fine: K >= 2 always.
FIXED = 130 << 20
PER_PX = {"whole": (-990, 1210), "whole-static": (-80, 520), "tile": (-360, 660), "sums0": (150, 10),
          "sums1": (140, 10), "sums2": (280, 10), "sums3": (350, 10)}


def lean_import() -> None:
    """Import openvino without its model-conversion API (openvino.tools.ovc: about 35 ms of a
    start, unused here; openvino's __init__ treats it as optional). For processes this engine
    owns (the CLI): it leaves ``openvino.convert_model`` undefined in that process, although
    ``openvino.tools.ovc`` stays importable."""
    if "openvino" in sys.modules or importlib.util.find_spec("openvino") is None:
        return
    blocked = "openvino.tools.ovc" not in sys.modules
    if blocked:
        sys.modules["openvino.tools.ovc"] = None  # makes `from openvino.tools.ovc import ...` an ImportError
    try:
        import openvino  # noqa: F401
    finally:
        if blocked and sys.modules.get("openvino.tools.ovc") is None:
            del sys.modules["openvino.tools.ovc"]


def _ov():
    try:
        import openvino
    except ImportError as e:
        raise BackendError(f"the openvino backend needs the openvino package ({e}); "
                           "pip install openvino, or choose --backend onnxruntime") from None
    return openvino


class OpenVinoRunner:
    """engine.backends.base.HostRunner on OpenVINO's CPU plugin."""

    name = "openvino"
    on_device = False
    max_frames = None
    max_tile = None
    tile_side = None

    def __init__(self, params=None, onnx_path=None, threads: int | None = None, cache=None, static: str = "auto",
                 precision: str = "fp32"):
        if params is None and onnx_path is None:
            raise BackendError("openvino runner needs checkpoint parameters or an ONNX file")
        if static not in ("auto", "always", "never"):
            raise ValueError(f"static must be auto, always or never, not {static!r}")
        if precision not in PRECISIONS[TARGET]:  # bf16: the decision path only (engine/backends/openvino_bf16.py)
            raise BackendError(f"the openvino backend runs --precision {' or '.join(PRECISIONS[TARGET])}, not {precision}")
        self.precision = precision
        self._params, self._onnx_path = params, onnx_path
        self.threads = threads or usable_cores()
        self._static_policy = static
        self.cse_weights = cse_weights(params) if params is not None else None
        self._cache = cache
        self._core = None
        self._key: dict | None = None
        self._dynamic: dict[tuple, tuple] = {}         # (variant, K) -> (compiled dynamic model, its request)
        self._static: OrderedDict = OrderedDict()     # (variant, shapes) -> (compiled, request), LRU
        self._seen: Counter = Counter()
        self._whole_shapes: set = set()
        self._active = None                            # the compiled model whose buffers are resident
        self.config = {**F32, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
                       "INFERENCE_NUM_THREADS": str(self.threads)}
        if precision == "bf16":   # the decision path's nodes only (_compile); PERFORMANCE: ACCURACY forces f32
            self.config.update({"INFERENCE_PRECISION_HINT": "bf16", "EXECUTION_MODE_HINT": "PERFORMANCE"})

    # -- loading -------------------------------------------------------------------------------------
    def activate(self) -> None:
        ov = _ov()
        if self._core is None:
            from engine.backends.graphs import source_key
            from engine.backends.model_cache import ModelCache
            self._core = ov.Core()
            if self.precision == "bf16":
                from engine.backends.openvino_bf16 import require_bf16
                require_bf16(self._core)
            self._cache = self._cache if self._cache is not None else ModelCache()
            self._key = {**source_key(self._params, self._onnx_path), "target": TARGET,
                         "openvino": ov.get_version()}
        if self._onnx_path is not None:  # a file given by the user: read it now, so that a bad one fails here
            self._request("whole", None)

    def _compile(self, variant: str, frames: int, shapes: dict | None):
        """A compiled model (for K = ``frames``, static ``shapes`` or dynamic H, W) from the cache,
        else built, compiled and stored."""
        path = self._cache_path(variant, frames, shapes)
        bf16 = self._bf16(variant)
        config = self._config(variant)
        blob = self._cache.load(path)
        if blob is not None:
            try:
                compiled = self._core.import_model(io.BytesIO(blob), "CPU", config)
                log.debug("openvino: imported %s", path.name)
                return self._checked(compiled, bf16)
            except Exception as e:  # OpenVINO raises RuntimeError subclasses on a bad blob
                self._cache.discard(path, f"not importable ({e})")
        from engine.backends.graphs import graph_bytes
        fixed = None if self._onnx_path is not None else frames  # an exported graph keeps K dynamic
        model = self._core.read_model(graph_bytes(self._params, self._onnx_path, variant, TARGET, fixed), b"")
        if bf16:
            from engine.backends.openvino_bf16 import mark_float32
            model = mark_float32(self._core, model)
        if shapes is not None:
            model.reshape(shapes)
        compiled = self._checked(self._core.compile_model(model, "CPU", config), bf16)
        buf = io.BytesIO()
        compiled.export_model(buf)
        self._cache.store(path, buf.getvalue())
        log.debug("openvino %s: compiled %s", _ov().get_version(), path.name)
        return compiled

    def _bf16(self, variant: str) -> bool:
        """Whether ``variant`` runs a bfloat16 decision path (the sums passes have none)."""
        return self.precision == "bf16" and sums_block(variant) is None

    def _config(self, variant: str) -> dict:
        """The configuration ``variant`` compiles with: float32 for the sums passes of a bf16 runner."""
        return {**self.config, **F32} if self.precision == "bf16" and not self._bf16(variant) else self.config

    def _cache_path(self, variant: str, frames: int, shapes: dict | None) -> Path:
        """Keyed by what the compiled model is made of: a bf16 runner's sums passes are the float32
        runner's entries, its other variants also depend on the marking (openvino_bf16)."""
        label = f"{variant}-k{frames}" if shapes is None else f"{variant}-" + "x".join(str(v) for v in shapes["luma"])
        key = {**self._key, "config": self._config(variant), "variant": variant, "frames": frames, "shapes": shapes}
        if self._bf16(variant):
            from engine.backends.model_cache import graph_fingerprint
            key["bf16_marks"] = graph_fingerprint("engine.backends.openvino_bf16")
        return self._cache.path("openvino", label, key)

    @staticmethod
    def _checked(compiled, bf16: bool = False):
        if bf16:
            from engine.backends.openvino_bf16 import check_precisions
            return check_precisions(compiled)
        precision = compiled.get_property("INFERENCE_PRECISION_HINT")
        if precision != _ov().Type.f32:
            raise BackendError(f"openvino compiled GACN for {precision}, not float32; refusing to run it")
        return compiled

    def _request(self, variant: str, feeds: dict | None):
        """(compiled model, infer request) for a variant and these inputs' shapes (see the
        module docstring)."""
        if self._core is None:
            self.activate()
        shapes = None if feeds is None else {k: list(v.shape) for k, v in feeds.items()}
        frames = 2 if feeds is None else feeds["luma"].shape[0]
        key = None if shapes is None else (variant, tuple((k, tuple(v)) for k, v in sorted(shapes.items())))
        if key is not None:
            entry = self._static.get(key)
            if entry is not None:
                self._static.move_to_end(key)
                return entry
            self._seen[key] += 1
            if self._wants_static(variant, frames, shapes, self._seen[key]):
                compiled = self._compile(variant, frames, shapes)
                entry = self._static[key] = (compiled, compiled.create_infer_request())
                while len(self._static) > STATIC_MODELS:
                    self._static.popitem(last=False)
                return entry
        entry = self._dynamic.get((variant, frames))
        if entry is None:
            compiled = self._compile(variant, frames, None)
            entry = self._dynamic[(variant, frames)] = (compiled, compiled.create_infer_request())
        return entry

    def _wants_static(self, variant: str, frames: int, shapes: dict, seen: int) -> bool:
        if self._static_policy != "auto":
            return self._static_policy == "always"
        if variant != "whole" or seen > 1:
            return True
        _, _, h, w = shapes["luma"]
        shape = tuple(shapes["luma"])
        if shape in self._whole_shapes or len(self._whole_shapes) < DYNAMIC_AFTER_SHAPES:
            self._whole_shapes.add(shape)
            return True
        return h * w >= STATIC_FIRST_PIXELS or self._cache_path(variant, frames, shapes).is_file()

    # -- running -------------------------------------------------------------------------------------
    def _run(self, variant: str, feeds: dict, outputs: tuple[str, ...]):
        compiled, req = self._request(variant, feeds)
        if self._active is not None and self._active is not compiled:
            self._active.release_memory()
        self._active = compiled
        req.infer(feeds, share_inputs=True)
        return tuple(req.get_tensor(name).data.copy() for name in outputs)

    def infer(self, luma: np.ndarray, cse: np.ndarray | None = None):
        feeds = {"luma": np.ascontiguousarray(luma, dtype=np.float32)}
        if cse is not None:
            feeds["cse"] = np.ascontiguousarray(cse, dtype=np.float32)
        return self._run("whole" if cse is None else "tile", feeds, ("decision", "mask"))

    def block_sums(self, block: int, luma: np.ndarray, cse: np.ndarray | None, colmask: np.ndarray) -> np.ndarray:
        feeds = {"luma": np.ascontiguousarray(luma, dtype=np.float32),
                 "colmask": np.ascontiguousarray(colmask, dtype=np.float32).reshape(1, 1, 1, -1)}
        if block:
            feeds["cse"] = np.ascontiguousarray(cse, dtype=np.float32)
        return self._run(f"sums{block}", feeds, ("sums",))[0]

    def memory(self, variant: str, frames: int, height: int, width: int) -> int:
        """The cost model (PER_PX); a whole frame below STATIC_FIRST_PIXELS may run on the dynamic
        model (see the module docstring), so it is planned for that one's larger need."""
        if variant == "whole" and (self._static_policy == "always" or
                                   (self._static_policy == "auto" and height * width >= STATIC_FIRST_PIXELS)):
            variant = "whole-static"
        base, per_frame = PER_PX[variant]
        return FIXED + height * width * (base + frames * per_frame)

    def unsupported(self, variant: str, frames: int, height: int, width: int) -> str | None:
        return tiles_unsupported(variant, self.cse_weights)

    def deactivate(self) -> None:
        self._active = None
        self._dynamic.clear()
        self._static.clear()
        self._seen.clear()
        self._core = None
