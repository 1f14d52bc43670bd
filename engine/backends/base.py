"""The runner contract and the choice among backends."""
from __future__ import annotations

import ctypes.util
import importlib.util
import logging

from engine.errors import BackendError

log = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "torch-cuda", "tensorrt")


class Runner:
    """Polygraphy-style runner: ``activate`` loads, ``infer`` runs, ``deactivate`` frees."""

    name = "runner"
    on_device = False  # True: infer() reads and writes device memory

    def activate(self) -> None:
        raise NotImplementedError

    def infer(self, luma):
        raise NotImplementedError

    def deactivate(self) -> None:
        pass

    def __enter__(self):
        self.activate()
        return self

    def __exit__(self, *exc):
        self.deactivate()


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


def available_backends() -> list[str]:
    """Backends whose libraries are importable and whose device is present, best first."""
    found = []
    if importlib.util.find_spec("tensorrt") is not None:
        found.append("tensorrt")
    if _cuda_torch_available():
        found.append("torch-cuda")
    return found + ["onnxruntime"]


def resolve_backend(name: str, engine_path=None) -> str:
    """'auto' picks TensorRT when given an engine, PyTorch-CUDA when a GPU is there, else ONNX Runtime."""
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
            log.warning("a GPU is present but the CUDA kernel library is not built (%s); using onnxruntime", e)
    return "onnxruntime"


def create_runner(backend: str, *, params=None, onnx_path=None, engine_path=None, precision="fp32", **options) -> Runner:
    """The runner for a resolved backend name (imports its library lazily)."""
    if backend == "onnxruntime":
        from engine.backends.onnxruntime import OnnxRuntimeRunner
        return OnnxRuntimeRunner(params=params, onnx_path=onnx_path, **options)
    if backend == "torch-cuda":
        from engine.backends.torch_cuda import TorchCudaRunner
        return TorchCudaRunner(params=params, precision=precision, **options)
    if backend == "tensorrt":
        from engine.backends.tensorrt import TensorRTRunner
        if engine_path is None:
            raise BackendError("the tensorrt backend needs --engine ENGINE.plan (build one with export/build_engine.py)")
        return TensorRTRunner(engine_path, **options)
    raise BackendError(f"unknown backend '{backend}'")
