"""Backends: one runner per inference library, each with activate / infer / deactivate.

``infer`` takes luma planes ``[K, 1, H, W]`` (frame 0 = reference A) and returns the
decision map D and mask M ``[K-1, 1, H, W]`` as float32. Host runners take and return
numpy arrays; device runners take and return device buffers owned by the caller.
"""
from engine.backends.base import Runner, available_backends, create_runner

__all__ = ["Runner", "available_backends", "create_runner"]
