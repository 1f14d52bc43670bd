"""Device pointer, shape and dtype of a DLPack-exporting CUDA array (for producers without
``__cuda_array_interface__``). Only reads the DLTensor; the producer keeps owning the memory."""
from __future__ import annotations

import ctypes

import numpy as np

from engine.errors import BackendError


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32), ("dtype", _DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.restype, _get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
_CODES = {(1, 8): np.uint8, (1, 16): np.uint16, (2, 32): np.float32, (2, 16): np.float16}  # kDLUInt, kDLFloat


def dlpack_pointer(obj, stream: int | None = None):
    """(pointer, shape, dtype) of a C-contiguous CUDA array exported through ``__dlpack__``."""
    capsule = obj.__dlpack__(stream=stream) if stream is not None else obj.__dlpack__()
    t = _DLTensor.from_address(_get_pointer(capsule, b"dltensor"))  # DLManagedTensor starts with DLTensor
    shape = tuple(t.shape[i] for i in range(t.ndim))
    dtype = _CODES.get((t.dtype.code, t.dtype.bits))
    if dtype is None or t.dtype.lanes != 1:
        raise BackendError(f"unsupported DLPack dtype (code {t.dtype.code}, {t.dtype.bits} bits)")
    if t.strides:
        expect = np.empty(shape, dtype).strides
        if tuple(t.strides[i] * np.dtype(dtype).itemsize for i in range(t.ndim)) != expect:
            raise BackendError("device arrays must be C-contiguous")
    return int(t.data) + int(t.byte_offset), shape, np.dtype(dtype)
