"""A Triton model repository for GACN: ``gacn`` (pairs) and ``gacn_stack`` (focus stacks), Python backend.

Each model is one line of ``model.py`` that imports engine.serve.models, so the engine must be
installed where Triton's Python stub runs; its settings travel as ``config.pbtxt`` parameters and
are read once when the model loads. Triton types every input: 16-bit sources go to the ``*_16``
models (same code, ``TYPE_UINT16``). ``--tensorrt-plan`` adds a ``tensorrt_plan`` model of the
whole-frame network (D and M from luma; the plugin library through Triton's ``--backend-config``).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from engine.errors import InputError

PAIR, STACK, PLAN = "gacn", "gacn_stack", "gacn_trt"
DEPTHS = {8: ("", "TYPE_UINT8", np.uint8), 16: ("_16", "TYPE_UINT16", np.uint16)}
KINDS = ("cpu", "gpu")
REQUEST_PARAMETERS = {PAIR: ("align",), STACK: ("strategy", "align", "crop", "reference")}


def model_name(base: str, dtype) -> str:
    """The model that serves ``dtype`` sources (uint8: ``base``, uint16: ``base_16``)."""
    for suffix, _, np_type in DEPTHS.values():
        if np.dtype(dtype) == np_type:
            return base + suffix
    raise InputError(f"unsupported dtype {np.dtype(dtype)}; pass uint8 or uint16 pixels")


@dataclass
class ModelOptions:
    """What a served model runs with (Fuser's arguments, plus Triton's instances and batching)."""
    backend: str = "auto"
    weights: str | None = None
    onnx: str | None = None
    engine: str | None = None
    precision: str | None = None
    threads: int | None = None
    max_memory: str | None = None
    tile: int | None = None
    instances: int = 1
    kind: str = "cpu"
    max_batch: int = 0

    def check(self) -> "ModelOptions":
        """Refuse what no model could load with, before anything is written (paths made absolute).
        The Fuser's options are checked by engine.options for the backend the instances will
        run ("auto": TensorRT with an engine, torch-cuda on KIND_GPU, else OpenVINO)."""
        from engine.options import backend_options
        if self.kind not in KINDS:
            raise InputError(f"instance kind must be one of {', '.join(KINDS)}, got '{self.kind}'")
        if self.instances < 1:
            raise InputError(f"--instances must be at least 1, got {self.instances}")
        if self.max_batch < 0:
            raise InputError(f"--max-batch must be 0 (off) or more, got {self.max_batch}")
        for name in ("weights", "onnx", "engine"):
            path = getattr(self, name)
            if path is not None:
                if not Path(path).is_file():
                    raise InputError(f"--{name} {path}: no such file")
                setattr(self, name, str(Path(path).resolve()))
        backend = self.backend
        if backend == "auto":  # what Fuser("auto") picks in an instance (a GPU instance: the GPU's backend)
            from engine.backends.base import resolve_backend
            backend = "torch-cuda" if self.kind == "gpu" and not self.engine else resolve_backend("auto", self.engine)
        backend_options(backend, **self.fuser_kwargs())
        return self

    def fuser_kwargs(self) -> dict:
        """Fuser's keyword arguments (the instance's device is added by the model)."""
        return {k: getattr(self, k) for k in ("weights", "onnx", "engine", "precision", "threads", "max_memory", "tile")
                if getattr(self, k) is not None}

    def to_parameters(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_parameters(cls, params: dict[str, str]) -> "ModelOptions":
        types = {f.name: f.type for f in fields(cls)}
        unknown = set(params) - set(types)
        if unknown:
            raise InputError(f"unknown model parameters {sorted(unknown)}")
        return cls(**{k: int(v) if "int" in types[k] else v for k, v in params.items()})


def add_arguments(p: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """The model options of ``gacn-serve`` and ``gacn-export --triton-repo`` (one definition)."""
    from engine.backends.base import BACKENDS
    p.add_argument(f"--{prefix}backend", default="auto", choices=("auto", *BACKENDS), help="the served models' backend")
    if prefix:  # gacn-export has its own --weights
        p.add_argument(f"--{prefix}onnx", metavar="MODEL.onnx", help="serve an exported graph (openvino/onnxruntime)")
    else:
        p.add_argument("--weights", metavar="PATH", help="GACN checkpoint (default: $GACN_WEIGHTS or a verified download)")
        p.add_argument("--onnx", metavar="MODEL.onnx", help="serve an exported graph (openvino/onnxruntime)")
    p.add_argument(f"--{prefix}engine", metavar="ENGINE.plan", help="tensorrt: a plan from gacn-build-engine")
    from engine.options import ALL_PRECISIONS
    p.add_argument(f"--{prefix}precision", choices=ALL_PRECISIONS, help="compute precision (engine.options.PRECISIONS; "
                   "default: the backend's first)")
    p.add_argument(f"--{prefix}threads", type=int, help="CPU backends: threads per instance")
    p.add_argument(f"--{prefix}max-memory", metavar="SIZE", help="working memory of one request (e.g. 2G); larger frames are tiled, "
                   "frames too large even for tiles are refused before anything is allocated")
    p.add_argument(f"--{prefix}tile", type=int, metavar="PX", help="tile side (0: never tile)")
    p.add_argument(f"--{prefix}instances", type=int, default=1, help="instances of each model (default 1)")
    p.add_argument(f"--{prefix}kind", choices=KINDS, default="cpu", help="instance kind: cpu (KIND_CPU) or gpu (KIND_GPU)")
    p.add_argument(f"--{prefix}max-batch", type=int, default=0, metavar="N",
                   help="pairs: Triton's dynamic batching of up to N requests, run through Fuser.stream (default 0: off)")
    p.add_argument(f"--{prefix}tensorrt-plan", metavar="ENGINE.plan",
                   help="also write a tensorrt_plan model of the whole-frame network (needs Triton's TensorRT backend)")


def options_from_args(args, *, prefix: str = "", weights=None) -> ModelOptions:
    get = lambda name: getattr(args, prefix.replace("-", "_") + name)  # noqa: E731
    return ModelOptions(backend=get("backend"), weights=weights if prefix else args.weights, onnx=get("onnx"),
                        engine=get("engine"), precision=get("precision"), threads=get("threads"),
                        max_memory=get("max_memory"), tile=get("tile"), instances=get("instances"), kind=get("kind"),
                        max_batch=get("max_batch")).check()


def _parameters(params: dict[str, str]) -> str:
    return "".join(f'parameters {{ key: "{k}" value: {{ string_value: "{_quote(v)}" }} }}\n' for k, v in sorted(params.items()))


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _tensor(name: str, dtype: str, dims: int, *, optional: bool = False, ragged: bool = False) -> str:
    extra = (" optional: true" if optional else "") + (" allow_ragged_batch: true" if ragged else "")
    return f'  {{ name: "{name}" data_type: {dtype} dims: [ {", ".join(["-1"] * dims)} ]{extra} }}'


def _block(kind: str, tensors: list[str]) -> str:
    return f"{kind} [\n" + ",\n".join(tensors) + "\n]\n"


def _instances(o: ModelOptions) -> str:
    return f"instance_group [ {{ count: {o.instances} kind: KIND_{o.kind.upper()} }} ]\n"


def pair_config(name: str, dtype: str, o: ModelOptions) -> str:
    batching = o.max_batch > 0
    text = (f'name: "{name}"\nbackend: "python"\nmax_batch_size: {o.max_batch}\n'
            + _block("input", [_tensor(n, dtype, 3, ragged=batching) for n in ("A", "B")])
            + _block("output", [_tensor("FUSED", dtype, 3), _tensor("DECISION", "TYPE_FP32", 2),
                                _tensor("MASK", "TYPE_FP32", 2)])
            + _instances(o))
    if batching:
        text += "dynamic_batching { }\n"
    return text + _parameters(o.to_parameters())


def stack_config(name: str, dtype: str, o: ModelOptions) -> str:
    return (f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\n'
            + _block("input", [_tensor("FRAMES", dtype, 4)])
            + _block("output", [_tensor("FUSED", dtype, 3), _tensor("INDEX", "TYPE_INT32", 2)])
            + _instances(o) + _parameters({k: v for k, v in o.to_parameters().items() if k != "max_batch"}))


def plan_config(o: ModelOptions) -> str:
    """The whole-frame network as a TensorRT plan (gacn-export --plugins, gacn-build-engine): ``luma``
    (2 x 1 x H x W float32, the sources' luma in [0, 1]) -> ``decision``, ``mask`` (1 x 1 x H x W).
    Triton loads the plugin library given with ``--backend-config=tensorrt,plugins=/path/libgacn_plugins.so``."""
    return (f'name: "{PLAN}"\nplatform: "tensorrt_plan"\nmax_batch_size: 0\n'
            + _block("input", [_tensor("luma", "TYPE_FP32", 4)])
            + _block("output", [_tensor("decision", "TYPE_FP32", 4), _tensor("mask", "TYPE_FP32", 4)])
            + _instances(ModelOptions(instances=o.instances, kind="gpu")))


MODEL_PY = '''"""GACN {what} on Triton's Python backend; the code is engine.serve.models (installed with gacn-engine)."""
from engine.serve.models import {cls} as TritonPythonModel  # noqa: F401
'''


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_repository(root, options: ModelOptions, *, tensorrt_plan: str | None = None) -> Path:
    """Write the models into ``root`` (created; existing GACN models are replaced). Returns ``root``."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: not a directory")
    for suffix, dtype, _ in DEPTHS.values():
        for base, config, cls, what in ((PAIR, pair_config, "PairModel", "pairs"),
                                        (STACK, stack_config, "StackModel", "focus stacks")):
            name = base + suffix
            _atomic_write(root / name / "config.pbtxt", config(name, dtype, options))
            _atomic_write(root / name / "1" / "model.py", MODEL_PY.format(what=what, cls=cls))
    if tensorrt_plan is not None:
        plan = Path(tensorrt_plan)
        if not plan.is_file():
            raise InputError(f"--tensorrt-plan {plan}: no such file")
        _atomic_write(root / PLAN / "config.pbtxt", plan_config(options))
        (root / PLAN / "1").mkdir(parents=True, exist_ok=True)
        target = root / PLAN / "1" / "model.plan"
        tmp = target.with_name("model.plan.tmp")
        tmp.write_bytes(plan.read_bytes())
        os.replace(tmp, target)
    return root
