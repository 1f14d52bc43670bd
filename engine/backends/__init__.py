"""Runners, one per inference library; each implements the contract it is called through
(engine.backends.base.HostRunner or DeviceRunner). Imported lazily: only the chosen backend's
library is loaded."""
from engine.backends.base import DeviceRunner, HostRunner, available_backends, create_runner

__all__ = ["HostRunner", "DeviceRunner", "available_backends", "create_runner"]
