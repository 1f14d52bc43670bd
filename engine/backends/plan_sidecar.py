"""The JSON sidecar beside a TensorRT plan (``PLAN.json``): what the plan was built for and from.

One schema for the writer (gacn-build-engine) and the reader (engine.backends.tensorrt): the
runner refuses a plan built for another GPU or TensorRT version, and a tile bundle carries its
tile side, its four sums plans and the CSE weights the pipeline needs on the host.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from engine.errors import BackendError

VARIANTS = ("whole", "tile")
HARDWARE_COMPATIBILITY = ("none", "ampere+")


def sidecar_path(engine_path) -> Path:
    return Path(str(engine_path) + ".json")


@dataclass(frozen=True)
class PlanSidecar:
    tensorrt_version: str
    gpu: str
    compute_capability: str                     # "9.0"
    hardware_compatibility: str = "none"        # or "ampere+"
    version_compatible: bool = False
    variant: str = "whole"                      # or "tile": a tile bundle
    profile: dict = field(default_factory=dict)  # input name -> [min, opt, max] shapes
    precision: str | None = None
    typing: str | None = None
    checkpoint_sha256: str | None = None
    plugin_library: str | None = None
    plugin_library_sha256: str | None = None
    onnx_sha256: str | None = None
    build_seconds: float | None = None
    built_at: str | None = None
    builder_optimization_level: int | None = None
    workspace_mib: int | None = None
    tile: int | None = None                     # a tile bundle: its tile side,
    sums_plans: list | None = None              # the file names of its four sums plans (beside it)
    cse_fc: list | None = None                  # and the four CSEs' (fc1, fc2) weights

    def __post_init__(self):
        problems = [f"{name} is {getattr(self, name)!r}, not a string" for name in REQUIRED
                    if not isinstance(getattr(self, name), str)]
        if self.variant not in VARIANTS:
            problems.append(f"variant is {self.variant!r}, not one of {', '.join(VARIANTS)}")
        if self.hardware_compatibility not in HARDWARE_COMPATIBILITY:
            problems.append(f"hardware_compatibility is {self.hardware_compatibility!r}")
        if self.variant == "tile" and not (isinstance(self.tile, int) and self.tile > 0
                                           and isinstance(self.sums_plans, list) and len(self.sums_plans) == 4
                                           and isinstance(self.cse_fc, list) and len(self.cse_fc) == 4):
            problems.append("a tile bundle needs tile, four sums_plans and four cse_fc entries")
        if problems:
            raise BackendError("not a sidecar written by gacn-build-engine: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: dict) -> "PlanSidecar":
        if not isinstance(data, dict):
            raise BackendError(f"not a sidecar written by gacn-build-engine: a JSON {type(data).__name__}, not an object")
        known = {f.name for f in fields(cls)}
        missing = [n for n in REQUIRED if n not in data]
        if missing:
            raise BackendError(f"not a sidecar written by gacn-build-engine: no {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> "PlanSidecar":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise BackendError(f"not a sidecar written by gacn-build-engine: {e}") from None
        return cls.from_dict(data)

    @classmethod
    def read(cls, engine_path) -> "PlanSidecar":
        path = sidecar_path(engine_path)
        if not path.is_file():
            raise BackendError(f"{path}: missing; engines must be built with gacn-build-engine, which writes it")
        try:
            return cls.from_json(path.read_text())
        except BackendError as e:
            raise BackendError(f"{path}: {e}") from None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, indent=2)


REQUIRED = tuple(f.name for f in fields(PlanSidecar) if f.default is MISSING and f.default_factory is MISSING)
"""The fields a sidecar must give (those without a default)."""
