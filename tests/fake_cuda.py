"""engine.cuda's interface on host memory, with the asynchrony of a GPU made adversarial.

Every stream-ordered call (copies, kernels, a runner's work, event records) is queued and runs
only when something waits for it (``Stream.synchronize``, ``Event.synchronize``), so work runs
as late as a GPU may run it. Cross-stream ``wait``s are honoured. A copy whose pinned source
changed between the call and the copy's execution is a hazard (the host reused a buffer before
its copy completed): it is recorded in ``FakeCuda.hazards`` and the copy proceeds with the new
bytes, as a GPU would. Pageable host-to-device copies are staged at the call, as CUDA does.
The kernel library's calls go through ``FakeCuda.kernels(lib)``, which queues each on the
stream it names; a device runner queues its work with ``FakeCuda.stream_of(handle).push``.
"""
from __future__ import annotations

import ctypes
import hashlib
import itertools

import numpy as np


class FakeCuda:
    def __init__(self, free: int = 8 << 30, total: int = 16 << 30):
        self.free, self.total = free, total
        self.hazards: list[str] = []
        self._streams: dict[int, "FakeStream"] = {}
        self._ids = itertools.count(1)
        self._pinned: list = []
        self.allocated = 0
        self.peak = 0
        fake = self

        class DeviceBuffer(_HostMemory):
            def __init__(self, nbytes):
                super().__init__(nbytes)
                fake.allocated += self.nbytes
                fake.peak = max(fake.peak, fake.allocated)

            def close(self):
                if self.ptr:
                    fake.allocated -= self.nbytes
                super().close()

        class PinnedBuffer(_HostMemory):
            def __init__(self, nbytes):
                super().__init__(nbytes)
                fake._pinned.append(self)

            def close(self):
                if self in fake._pinned:
                    fake._pinned.remove(self)
                super().close()

        class Stream(FakeStream):
            def __init__(self):
                super().__init__(fake)

        class Event(FakeEvent):
            pass

        self.DeviceBuffer, self.PinnedBuffer, self.Stream, self.Event = DeviceBuffer, PinnedBuffer, Stream, Event

    # -- the engine.cuda functions -------------------------------------------------------------------
    def mem_info(self):
        return self.free - self.allocated, self.total

    def stream_of(self, handle) -> "FakeStream":
        return self._streams[int(handle)]

    def _pinned_range(self, ptr: int, nbytes: int):
        for buf in self._pinned:
            if buf.ptr and buf.ptr <= ptr and ptr + nbytes <= buf.ptr + buf.nbytes:
                return buf
        return None

    def copy_async(self, dst, src, nbytes, stream, kind):
        self.copy_2d_async(dst, nbytes, src, nbytes, nbytes, 1, stream, kind)

    def copy_2d_async(self, dst, dst_pitch, src, src_pitch, width_bytes, rows, stream, kind):
        span = (rows - 1) * src_pitch + width_bytes
        if kind == "d2h":
            assert self._pinned_range(dst, (rows - 1) * dst_pitch + width_bytes), "device-to-host copy into pageable memory"
        if kind == "h2d" and self._pinned_range(src, span) is None:   # pageable: staged now
            staged = ctypes.create_string_buffer(ctypes.string_at(src, span), span)
            src_now, keep = ctypes.addressof(staged), staged
        else:
            src_now, keep = src, None
        digest = _digest(src_now, span) if kind == "h2d" else None

        def run():
            if digest is not None and _digest(src_now, span) != digest:
                self.hazards.append(f"{kind} copy of {span} bytes: its pinned source was overwritten before the copy ran")
            for r in range(rows):
                ctypes.memmove(dst + r * dst_pitch, src_now + r * src_pitch, width_bytes)
            del keep_alive[:]
        keep_alive = [keep]
        stream.push(run)

    def device_array_pointer(self, obj, stream=None):
        cai = getattr(obj, "__cuda_array_interface__", None)
        if cai is None:
            return None
        return int(cai["data"][0]), tuple(cai["shape"]), np.dtype(cai["typestr"])

    def kernels(self, lib):
        """The kernel library with each call queued on the stream it names (its last argument)."""
        return _QueuedKernels(self, lib)


def _digest(ptr, nbytes) -> bytes:
    return hashlib.blake2b(ctypes.string_at(ptr, nbytes), digest_size=16).digest()


class _HostMemory:
    def __init__(self, nbytes):
        self.nbytes = max(int(nbytes), 1)
        self._mem = np.zeros(self.nbytes + 64, np.uint8)
        self.ptr = (self._mem.ctypes.data + 63) // 64 * 64

    def view(self, shape, dtype):
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        assert n <= self.nbytes, (shape, dtype, self.nbytes)
        raw = np.ctypeslib.as_array((ctypes.c_uint8 * self.nbytes).from_address(self.ptr))
        return raw[:n].view(dtype).reshape(shape)

    def close(self):
        self.ptr = 0


class FakeStream:
    def __init__(self, fake: FakeCuda):
        self.fake = fake
        self.id = next(fake._ids)
        fake._streams[self.id] = self
        self.queue: list = []
        self.closed = False

    def __int__(self):
        return self.id

    @property
    def handle(self):
        return self.id

    def push(self, op) -> None:
        assert not self.closed, "work queued on a destroyed stream"
        self.queue.append(op)

    def wait(self, event: "FakeEvent") -> None:
        target = event.position()
        self.push(lambda: target() if target else None)

    def run_until(self, marker) -> None:
        while self.queue:
            op = self.queue.pop(0)
            op()
            if op is marker:
                return

    def synchronize(self) -> None:
        self.run_until(None)

    def close(self) -> None:
        assert not self.queue, "stream destroyed with work queued"
        self.closed = True


class FakeEvent:
    def __init__(self, timing: bool = True):
        self.stream = None
        self.marker = None
        self.closed = False

    def record(self, stream) -> None:
        stream = stream if isinstance(stream, FakeStream) else None
        assert stream is not None, "events are recorded on the fake's streams"
        marker = lambda: None  # noqa: E731
        stream.push(marker)
        self.stream, self.marker = stream, marker

    def position(self):
        """A callable that runs the recorded stream up to this record (as it is now)."""
        stream, marker = self.stream, self.marker
        if stream is None:
            return None
        return lambda: stream.run_until(marker) if marker in stream.queue else None

    def synchronize(self) -> None:
        run = self.position()
        if run is not None:
            run()

    def query(self) -> bool:
        return self.stream is None or self.marker not in self.stream.queue

    def elapsed_ms(self, since) -> float:
        return 0.0

    def close(self) -> None:
        self.closed = True


class _QueuedKernels:
    def __init__(self, fake: FakeCuda, lib):
        self.fake, self.lib = fake, lib

    def __getattr__(self, name):
        fn = getattr(self.lib, name)
        if not callable(fn) or name.startswith("conv3x3_c16_partials"):
            return fn

        def queued(*args):
            self.fake.stream_of(args[-1]).push(lambda: fn(*args))
        return queued


class FakeDeviceRunner:
    """engine.backends.base.DeviceRunner over a host runner: its tensors are fake device buffers
    and its work is queued on the executor's stream, reading its inputs when it runs."""

    name = "fake-device"
    on_device = True
    tile_side = None
    max_frames = None
    max_tile = None

    def __init__(self, fake: FakeCuda, host_runner):
        self.fake, self.host = fake, host_runner
        self.cse_weights = host_runner.cse_weights
        self._bound: dict[tuple, dict] = {}
        self._current = None
        self.runs = 0

    def activate(self):
        self.host.activate()

    def bind(self, variant, frames, height, width):
        key = (variant, frames, height, width)
        if key not in self._bound:
            block = int(variant[4:]) if variant.startswith("sums") else None
            shapes = {"luma": (frames, 1, height, width)}
            if variant == "tile" or block:
                shapes["cse"] = (frames, 64 if block is None else 16 * block, 1, 1)
            if block is None:
                shapes["decision"] = shapes["mask"] = (frames - 1, 1, height, width)
            else:
                shapes["colmask"] = (1, 1, 1, width)
                shapes["sums"] = (frames, 16, height)
            self._bound[key] = {"block": block, "shapes": shapes,
                                "bufs": {n: self.fake.DeviceBuffer(4 * int(np.prod(s))) for n, s in shapes.items()}}
        self._current = self._bound[key]
        return {n: b.ptr for n, b in self._current["bufs"].items()}

    def enqueue(self, stream):
        cur = self._current

        def run():
            t = {n: cur["bufs"][n].view(s, np.float32) for n, s in cur["shapes"].items()}
            if cur["block"] is not None:
                t["sums"][...] = self.host.block_sums(cur["block"], t["luma"].copy(), t["cse"].copy() if "cse" in t else None,
                                                      t["colmask"].copy())
            else:
                d, m = self.host.infer(t["luma"].copy(), t["cse"].copy() if "cse" in t else None)
                t["decision"][...], t["mask"][...] = d, m
            self.runs += 1
        self.fake.stream_of(stream).push(run)

    def memory(self, variant, frames, height, width):
        return self.host.memory(variant, frames, height, width)

    def unsupported(self, variant, frames, height, width):
        return self.host.unsupported(variant, frames, height, width)

    def deactivate(self):
        for b in self._bound.values():
            for buf in b["bufs"].values():
                buf.close()
        self._bound.clear()
        self.host.deactivate()


class FakeDeviceArray:
    """A frame in fake device memory, exported through the CUDA array interface."""

    def __init__(self, fake: FakeCuda, host: np.ndarray):
        self.buffer = fake.DeviceBuffer(host.nbytes)
        self.buffer.view(host.shape, host.dtype)[...] = host
        self.__cuda_array_interface__ = {"data": (self.buffer.ptr, False), "shape": host.shape,
                                         "typestr": host.dtype.str, "strides": None, "version": 3}
