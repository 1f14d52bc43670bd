"""A Fuser's options: one typed, frozen object per backend, checked once when the Fuser is built.

Each backend declares the options it takes (the fields of its class in ``OPTIONS``) and the
compute precisions it runs (``PRECISIONS``, default first). An option that does not apply to
the chosen backend is refused with an InputError naming the option and the backends it
applies to, never ignored; every value is checked here, so nothing below re-checks it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from engine.errors import InputError
from engine.memory import parse_size
from engine.tiling import check_tile

# The precisions each backend computes in, its default first (one line per backend).
PRECISIONS: dict[str, tuple[str, ...]] = {
    "openvino": ("fp32", "bf16"),   # bf16: the decision path in bfloat16 (engine/backends/openvino_bf16.py)
    "onnxruntime": ("fp32",),
    "torch-cuda": ("fp32", "fp16"),
    "tensorrt": (),          # a plan's precision is chosen when it is made (gacn-export --plugins --fp16)
}
ALL_PRECISIONS = tuple(dict.fromkeys(p for ps in PRECISIONS.values() for p in ps))


@dataclass(frozen=True)
class Options:
    """Every backend: the working-memory budget (bytes; None: the executor's default) and the tile side."""
    max_memory: int | None = None
    tile: int | None = None

    @property
    def device(self) -> int | None:
        return None


@dataclass(frozen=True)
class HostOptions(Options):
    """OpenVINO and ONNX Runtime on the CPU: the checkpoint or an exported graph, threads."""
    weights: Path | None = None
    onnx: Path | None = None
    threads: int | None = None
    precision: str = "fp32"


@dataclass(frozen=True)
class TorchCudaOptions(Options):
    """PyTorch-CUDA: the checkpoint, the decision path's precision, the CUDA device index."""
    weights: Path | None = None
    precision: str = "fp32"
    device: int = 0


@dataclass(frozen=True)
class TensorRTOptions(Options):
    """TensorRT: a plan from gacn-build-engine (its sidecar beside it) and the CUDA device index."""
    engine: Path | None = None
    device: int = 0


OPTIONS: dict[str, type[Options]] = {
    "openvino": HostOptions, "onnxruntime": HostOptions, "torch-cuda": TorchCudaOptions, "tensorrt": TensorRTOptions,
}


def _names(name: str) -> tuple[str, str]:
    """How an option is spelled for a Python caller and on the command line."""
    return f"{name}=", f"--{name.replace('_', '-')}"


def takes(name: str) -> tuple[str, ...]:
    """The backends that take option ``name``."""
    return tuple(b for b, cls in OPTIONS.items() if name in {f.name for f in fields(cls)})


def applicable(backend: str, **given) -> dict:
    """The options of ``given`` that ``backend`` takes, for a caller holding one set of options
    for several backends (a benchmark); None and a precision the backend does not run are left out."""
    return {k: v for k, v in given.items()
            if v is not None and backend in takes(k) and (k != "precision" or v in PRECISIONS[backend])}


def _refuse(name: str, value, why: str) -> InputError:
    py, cli = _names(name)
    return InputError(f"{py}{value!r} {why}", cli_message=f"{cli} {value} {why}")


def _count(name: str, value, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        py, cli = _names(name)
        what = "a positive" if least else "a non-negative"
        raise InputError(f"{py}{value!r}: expected {what} integer", cli_message=f"{cli} {value}: expected {what} integer")
    return value


def check_common(max_memory=None, tile=None) -> int | None:
    """The options every backend takes, checked (also before a backend is chosen): the budget
    in bytes (None: not set) and the tile side."""
    budget = None if max_memory is None else parse_size(max_memory)
    check_tile(tile)
    return budget


def backend_options(backend: str, **given) -> Options:
    """The options object of ``backend`` (a resolved name) from the options a caller set;
    ``None`` means not set. Raises InputError for an option the backend does not take or a
    value it cannot use."""
    cls = OPTIONS[backend]
    accepted = {f.name for f in fields(cls)}
    values = {name: value for name, value in given.items() if value is not None}
    precision = values.get("precision")
    if precision is not None and precision not in PRECISIONS[backend]:
        runs = (f"it runs {', '.join(PRECISIONS[backend])}" if PRECISIONS[backend] else
                "a plan's precision is chosen when it is made: gacn-export --plugins --fp16")
        others = [b for b, ps in PRECISIONS.items() if precision in ps]
        raise _refuse("precision", precision, f"does not apply to the {backend} backend ({runs}); "
                                              f"{precision} applies to {', '.join(others) or 'no backend'}")
    for name, value in values.items():
        if name not in accepted:
            raise _refuse(name, value, f"does not apply to the {backend} backend; "
                                       f"it applies to {', '.join(takes(name)) or 'no backend'}")
    budget = check_common(values.get("max_memory"), values.get("tile"))
    if budget is not None:
        values["max_memory"] = budget
    for name, least in (("threads", 1), ("device", 0)):
        if name in values:
            _count(name, values[name], least)
    for name in ("weights", "onnx", "engine"):
        if name in values:
            values[name] = Path(os.fspath(values[name])).expanduser()
    if "weights" in values and "onnx" in values:
        raise InputError("give either weights= (the checkpoint) or onnx= (an exported graph), not both",
                         cli_message="give either --weights (the checkpoint) or --onnx (an exported graph), not both")
    return cls(**values)
