"""CUDA host calls through cuda-python (``cuda.bindings.runtime``): memory, streams, events, graphs.

Shared by the PyTorch-CUDA and TensorRT backends, so both move frames the same way. Every call
is checked; a failure raises BackendError naming the call and the CUDA error.
"""
from __future__ import annotations

import ctypes

import numpy as np

from engine.errors import BackendError

try:
    from cuda.bindings import runtime as cudart
except ImportError:  # pragma: no cover - depends on the machine
    cudart = None


def _require():
    if cudart is None:
        raise BackendError("cuda-python is not installed: pip install 'gacn-engine[cuda]' (cuda-bindings)")


def check(result, what: str):
    """Unwrap a cuda-python (err, *values) tuple."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        _, name = cudart.cudaGetErrorName(err)
        raise BackendError(f"{what} failed: {name.decode() if isinstance(name, bytes) else name}")
    return values[0] if len(values) == 1 else (tuple(values) if values else None)


def set_device(device: int) -> None:
    """Make CUDA device ``device`` current for this thread (what is made next lives there)."""
    _require()
    check(cudart.cudaSetDevice(device), f"cudaSetDevice({device})")


def device_name_and_capability(device: int = 0) -> tuple[str, str]:
    _require()
    props = check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip("\x00"), f"{props.major}.{props.minor}"


class _Released:
    """A CUDA resource released once: by ``close``, or failing that when it is collected."""

    def close(self):
        raise NotImplementedError

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the runtime may be gone already
            pass


class DeviceBuffer(_Released):
    """cudaMalloc'd bytes, freed on close."""

    def __init__(self, nbytes: int):
        _require()
        self.nbytes = max(int(nbytes), 1)
        self.ptr = int(check(cudart.cudaMalloc(self.nbytes), f"cudaMalloc({self.nbytes})"))

    def close(self):
        if self.ptr:
            check(cudart.cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


class PinnedBuffer(_Released):
    """Page-locked host bytes with a numpy view, so copies to and from the GPU run asynchronously."""

    def __init__(self, nbytes: int):
        _require()
        self.nbytes = max(int(nbytes), 1)
        self.ptr = int(check(cudart.cudaMallocHost(self.nbytes), f"cudaMallocHost({self.nbytes})"))
        self._bytes = np.ctypeslib.as_array((ctypes.c_uint8 * self.nbytes).from_address(self.ptr))

    def view(self, shape, dtype) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if n > self.nbytes:
            raise ValueError(f"pinned buffer of {self.nbytes} bytes cannot hold {shape} {dtype}")
        return self._bytes[:n].view(dtype).reshape(shape)

    def close(self):
        if self.ptr:
            self._bytes = None
            check(cudart.cudaFreeHost(self.ptr), "cudaFreeHost")
            self.ptr = 0


class Stream(_Released):
    """A non-blocking stream, destroyed by ``close`` (or when collected)."""

    def __init__(self):
        _require()
        self.handle = check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreate")

    def close(self):
        if self.handle is not None:
            check(cudart.cudaStreamDestroy(self.handle), "cudaStreamDestroy")
            self.handle = None

    def __int__(self):
        return int(self.handle)

    def wait(self, event: "Event"):
        check(cudart.cudaStreamWaitEvent(self.handle, event.handle, 0), "cudaStreamWaitEvent")

    def synchronize(self):
        check(cudart.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")


class Event(_Released):
    """A CUDA event, destroyed by ``close`` (or when collected)."""

    def __init__(self, timing: bool = True):
        _require()
        flags = cudart.cudaEventDefault if timing else cudart.cudaEventDisableTiming
        self.handle = check(cudart.cudaEventCreateWithFlags(flags), "cudaEventCreate")

    def close(self):
        if self.handle is not None:
            check(cudart.cudaEventDestroy(self.handle), "cudaEventDestroy")
            self.handle = None

    def record(self, stream):
        """Record on a Stream, or on a raw stream handle (an int from another library)."""
        handle = stream.handle if isinstance(stream, Stream) else stream
        check(cudart.cudaEventRecord(self.handle, handle), "cudaEventRecord")

    def synchronize(self):
        check(cudart.cudaEventSynchronize(self.handle), "cudaEventSynchronize")

    def query(self) -> bool:
        err, = cudart.cudaEventQuery(self.handle)
        if err == cudart.cudaError_t.cudaErrorNotReady:
            return False
        check((err,), "cudaEventQuery")
        return True

    def elapsed_ms(self, since: "Event") -> float:
        return float(check(cudart.cudaEventElapsedTime(since.handle, self.handle), "cudaEventElapsedTime"))


def _kind(kind: str):
    return {"h2d": cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, "d2h": cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
            "d2d": cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice}[kind]


def copy_async(dst: int, src: int, nbytes: int, stream: Stream, kind: str):
    check(cudart.cudaMemcpyAsync(dst, src, int(nbytes), _kind(kind), stream.handle), f"cudaMemcpyAsync({kind})")


def copy_2d_async(dst: int, dst_pitch: int, src: int, src_pitch: int, width_bytes: int, rows: int, stream: Stream,
                  kind: str):
    """Copy ``rows`` rows of ``width_bytes`` between pitched buffers (a window of a plane)."""
    check(cudart.cudaMemcpy2DAsync(dst, int(dst_pitch), src, int(src_pitch), int(width_bytes), int(rows), _kind(kind),
                                   stream.handle), f"cudaMemcpy2DAsync({kind})")


def mem_info() -> tuple[int, int]:
    """(free, total) bytes of the current device."""
    _require()
    free, total = check(cudart.cudaMemGetInfo(), "cudaMemGetInfo")
    return int(free), int(total)


class _Handle:
    """A raw stream handle from another library, where a Stream is expected."""

    def __init__(self, handle):
        self.handle = handle


class Graph(_Released):
    """One captured sequence of stream work, replayed with a single launch."""

    def __init__(self, stream, enqueue):
        self._exec = self._graph = None
        stream = stream if isinstance(stream, Stream) else _Handle(stream)
        check(cudart.cudaStreamBeginCapture(stream.handle, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
              "cudaStreamBeginCapture")
        try:
            enqueue()
        finally:  # the capture always ends, and what it captured is destroyed by close() on any failure
            self._graph = check(cudart.cudaStreamEndCapture(stream.handle), "cudaStreamEndCapture")
        try:
            self._exec = check(cudart.cudaGraphInstantiate(self._graph, 0), "cudaGraphInstantiate")
        except BackendError:
            self.close()
            raise

    def launch(self, stream):
        check(cudart.cudaGraphLaunch(self._exec, stream.handle if isinstance(stream, Stream) else stream),
              "cudaGraphLaunch")

    def close(self):
        if self._exec is not None:
            check(cudart.cudaGraphExecDestroy(self._exec), "cudaGraphExecDestroy")
            self._exec = None
        if self._graph is not None:
            check(cudart.cudaGraphDestroy(self._graph), "cudaGraphDestroy")
            self._graph = None


def device_array_pointer(obj, stream: "Stream | None" = None):
    """(pointer, shape, numpy dtype) of a CUDA array (CuPy, PyTorch, pycuda, Numba: the
    ``__cuda_array_interface__``; others via DLPack), or None for a host array.

    With ``stream``, work queued there afterwards waits for the producer's stream (the
    interface's ``stream`` entry; DLPack's producer synchronises itself)."""
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is not None:
        ptr, _readonly = cai["data"]
        shape = tuple(cai["shape"])
        dtype = np.dtype(cai["typestr"])
        strides = cai.get("strides")
        if strides is not None and tuple(strides) != tuple(np.empty(shape, dtype).strides):
            raise BackendError("device arrays must be C-contiguous")
        producer = cai.get("stream")
        if stream is not None and producer:  # None: no sync needed; 1 / 2: the default streams
            ready = Event(timing=False)
            ready.record(int(producer))
            stream.wait(ready)
        return int(ptr), shape, dtype
    if hasattr(obj, "__dlpack_device__"):
        dev_type, _ = obj.__dlpack_device__()
        if dev_type in (2, 13):  # kDLCUDA, kDLCUDAManaged
            from engine.dlpack import dlpack_pointer
            return dlpack_pointer(obj, int(stream) if stream is not None else None)
    return None
