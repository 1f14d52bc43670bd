"""The runner contracts and the choice among backends.

A runner runs the variants of engine.variants (whole frames, tiles, the tiles' CSE sums
passes). Host runners take and return numpy arrays; device runners work on device buffers on
the executor's stream. engine.host_executor and engine.device_executor call them through
exactly these methods.
"""
from __future__ import annotations

import ctypes.util
import importlib.util
import logging
from typing import Protocol, runtime_checkable

import numpy as np

from engine.errors import BackendError

log = logging.getLogger(__name__)

BACKENDS = ("openvino", "onnxruntime", "torch-cuda", "tensorrt")
HOST_BACKENDS = ("openvino", "onnxruntime")   # CPU runners, fastest first (benchmarks/RESULTS.md)


@runtime_checkable
class HostRunner(Protocol):
    """A runner whose tensors are numpy arrays in host memory (OpenVINO, ONNX Runtime).

    Polygraphy's shape: ``activate`` loads, the calls run synchronously, ``deactivate`` frees.
    """

    name: str
    on_device: bool                       # False
    cse_weights: list | None              # (fc1, fc2) of the four CSEs; None: cannot tile
    max_frames: int | None                # the largest K of one run (None: any)
    max_tile: int | None                  # the largest tile side it runs efficiently (None: any)
    tile_side: int | None                 # a fixed tile side (None: any)

    def activate(self) -> None: ...

    def infer(self, luma: np.ndarray, cse: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """D, M [K-1,1,H,W] float32 for luma [K,1,H,W]; ``cse`` [K,64,1,1]: the ``tile`` variant."""

    def block_sums(self, block: int, luma: np.ndarray, cse: np.ndarray | None, colmask: np.ndarray) -> np.ndarray:
        """``sums<block>``: row sums [K,16,H] float32 of u_block over the columns where colmask is 1."""

    def memory(self, variant: str, frames: int, height: int, width: int) -> int:
        """Working bytes of one run (measured cost model, engine/backends/*.py)."""

    def unsupported(self, variant: str, frames: int, height: int, width: int) -> str | None:
        """Why this runner cannot run that shape (a profile, a fixed tile), or None."""

    def deactivate(self) -> None: ...


@runtime_checkable
class DeviceRunner(Protocol):
    """A runner whose tensors live in GPU memory (PyTorch-CUDA, TensorRT).

    ``bind`` returns the device pointers of a variant's tensors for a shape (valid until the next
    ``bind`` of another shape); the executor fills the inputs with stream-ordered copies, calls
    ``enqueue`` on its compute stream, and reads the outputs after it. Nothing synchronises.
    """

    name: str
    on_device: bool                       # True
    cse_weights: list | None
    max_frames: int | None
    max_tile: int | None
    tile_side: int | None                 # a fixed-shape engine's tile side (None: any)

    def activate(self) -> None: ...

    def bind(self, variant: str, frames: int, height: int, width: int) -> dict[str, int]:
        """Device pointers by tensor name (luma, cse, colmask -> decision, mask or sums)."""

    def enqueue(self, stream: int) -> None:
        """Run the variant last bound, on ``stream`` (a CUDA stream handle)."""

    def memory(self, variant: str, frames: int, height: int, width: int) -> int: ...

    def unsupported(self, variant: str, frames: int, height: int, width: int) -> str | None: ...

    def deactivate(self) -> None: ...


def _cuda_torch_available() -> bool:
    """A CUDA driver and a CUDA-enabled torch; the driver is looked up first so that machines
    without a GPU never pay for importing torch."""
    if ctypes.util.find_library("cuda") is None:
        return False
    try:
        if importlib.util.find_spec("torch") is None:
            return False
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def cpu_backend() -> str:
    """The CPU backend 'auto' picks: OpenVINO when installed (faster on every size measured,
    same float32 accuracy), else ONNX Runtime."""
    return "openvino" if _installed("openvino") else "onnxruntime"


def available_backends() -> list[str]:
    """Backends whose libraries are importable and whose device is present, best first."""
    found = []
    if _installed("tensorrt"):
        found.append("tensorrt")
    if _cuda_torch_available():
        found.append("torch-cuda")
    return found + [b for b in HOST_BACKENDS if b == "onnxruntime" or _installed(b)]


def resolve_backend(name: str, engine_path=None) -> str:
    """'auto' picks TensorRT when given an engine, PyTorch-CUDA when a GPU is there, else the
    CPU backend (cpu_backend)."""
    if name != "auto":
        if name not in BACKENDS:
            raise BackendError(f"unknown backend '{name}'; choose one of auto, {', '.join(BACKENDS)}")
        return name
    if engine_path is not None:
        return "tensorrt"
    if _cuda_torch_available():
        from engine.kernels import find_library
        try:
            find_library("cuda")
            return "torch-cuda"
        except BackendError as e:
            log.warning("a GPU is present but the CUDA kernel library is not built (%s); using %s", e, cpu_backend())
    return cpu_backend()


def check_installed(backend: str, options) -> None:
    """The cheap part of a backend's checks, before anything is loaded: its library is
    installed, and TensorRT has a plan to run."""
    if backend == "tensorrt":
        if options.engine is None:
            raise BackendError("the tensorrt backend needs --engine ENGINE.plan (build one with gacn-build-engine)")
        if not _installed("tensorrt"):
            from engine.backends.tensorrt import import_tensorrt
            import_tensorrt()


def create_runner(backend: str, options=None, *, params=None, **given) -> HostRunner | DeviceRunner:
    """The runner for a resolved backend name and its options (an engine.options object, or the
    options as keywords, checked as a Fuser checks them); keywords that are no Fuser option go
    to the runner's constructor as they are (``static=``, ``providers=``: benchmarks, tests).
    Imports the backend's library lazily."""
    from engine.options import OPTIONS, backend_options, takes
    extra = {k: given.pop(k) for k in list(given) if not takes(k)}
    if options is None:
        options = backend_options(backend, **given)
    if backend == "onnxruntime":
        from engine.backends.onnxruntime import OnnxRuntimeRunner
        return OnnxRuntimeRunner(params=params, onnx_path=options.onnx, threads=options.threads, **extra)
    if backend == "openvino":
        from engine.backends.openvino import OpenVinoRunner
        return OpenVinoRunner(params=params, onnx_path=options.onnx, threads=options.threads,
                              precision=options.precision, **extra)
    if backend == "torch-cuda":
        from engine.backends.torch_cuda import TorchCudaRunner
        return TorchCudaRunner(params=params, precision=options.precision, device=options.device, **extra)
    if backend == "tensorrt":
        check_installed(backend, options)
        from engine.backends.tensorrt import TensorRTRunner
        return TensorRTRunner(options.engine, device=options.device, **extra)
    raise BackendError(f"unknown backend '{backend}' (one of {', '.join(OPTIONS)})")
