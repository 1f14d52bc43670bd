"""GPU pipeline shared by the PyTorch-CUDA and TensorRT runners.

uint8/uint16 frames go up once, luma (spec section 1), the network, the blend (section 7) and
the stack selection (section 8) run on the GPU, and only the fused image comes back. Copies
in, compute and copies out use three streams ordered by events, so with several slots in
flight (engine.streaming) one frame's copies overlap another's compute. Host memory for the
copies is pinned; device arrays (CUDA array interface or DLPack) are read in place of a copy.
"""
from __future__ import annotations

import logging

import numpy as np

from engine import cuda, preprocess
from engine import kernels as K
from engine.errors import InputError
from engine.fusion import FusionResult, StackResult
from engine.stack import Sequential

log = logging.getLogger(__name__)


def _geometry(shape, dtype):
    h, w = shape[:2]
    c = 1 if len(shape) == 2 else 3
    bits = 8 if np.dtype(dtype) == np.uint8 else 16
    return h, w, c, bits, h * w * c * np.dtype(dtype).itemsize


class _Slot:
    """Pinned and device buffers plus events for one frame in flight; kept by the pipeline and
    reused (pinning host memory costs ~0.3 s per GB, so slots are never made per stream)."""

    def __init__(self):
        self.key = self.maps_key = None
        self.ev = {k: cuda.Event() for k in ("start", "h2d", "c0", "c1", "d0", "d1")}
        self.pending = None  # (shape, dtype, maps) of the submitted frame

    def ensure(self, h, w, frame_bytes, maps: bool):
        key = (h, w, frame_bytes)
        if key != self.key:
            self.pin_in, self.dev_in = cuda.PinnedBuffer(2 * frame_bytes), cuda.DeviceBuffer(2 * frame_bytes)
            self.pin_out, self.dev_out = cuda.PinnedBuffer(frame_bytes), cuda.DeviceBuffer(frame_bytes)
            self.key = key
        if maps and self.maps_key != (h, w):
            self.pin_maps, self.dev_maps = cuda.PinnedBuffer(8 * h * w), cuda.DeviceBuffer(8 * h * w)
            self.maps_key = (h, w)


class DevicePipeline:
    def __init__(self, runner):
        self.runner = runner
        runner.activate()
        self.lib = K.KernelLibrary.load("cuda")
        self.h2d, self.compute, self.d2h = cuda.Stream(), cuda.Stream(), cuda.Stream()
        self._single: _Slot | None = None  # fuse()
        self._pool: list[_Slot] = []         # stream(), reused from one stream to the next
        self._handed_out = 0

    # -- pairs -------------------------------------------------------------------------------
    def new_slot(self) -> _Slot:
        if self._handed_out == len(self._pool):
            self._pool.append(_Slot())
        self._handed_out += 1
        return self._pool[self._handed_out - 1]

    def release_slots(self) -> None:
        self._handed_out = 0

    def _sources(self, a, b):
        """(pointer or host array, shape, dtype) for both sources, validated."""
        out = []
        for img, name in ((a, "source A"), (b, "source B")):
            dev = cuda.device_array_pointer(img, self.h2d)
            if dev is None:
                img = preprocess.check_image(img, name)
                out.append((img, img.shape, img.dtype))
            else:
                ptr, shape, dtype = dev
                out.append((ptr, preprocess.check_meta(shape, dtype, name), dtype))
        preprocess.check_same([(s, d) for _, s, d in out], ["source A", "source B"])
        return out

    def submit(self, slot: _Slot, a, b, maps: bool) -> None:
        (sa, shape, dtype), (sb, _, _) = self._sources(a, b)
        h, w, c, bits, fb = _geometry(shape, dtype)
        slot.ensure(h, w, fb, maps)
        ev, lib, run = slot.ev, self.lib, self.runner
        staged = slot.pin_in.view((2, *shape), dtype)
        for i, src in enumerate((sa, sb)):  # host copies first: the H2D timing is the transfer alone
            if isinstance(src, np.ndarray):
                np.copyto(staged[i], src)
        ev["start"].record(self.h2d)
        for i, src in enumerate((sa, sb)):
            if isinstance(src, np.ndarray):
                cuda.copy_async(slot.dev_in.ptr + i * fb, slot.pin_in.ptr + i * fb, fb, self.h2d, "h2d")
            else:
                cuda.copy_async(slot.dev_in.ptr + i * fb, src, fb, self.h2d, "d2d")
        ev["h2d"].record(self.h2d)

        self.compute.wait(ev["h2d"])
        ev["c0"].record(self.compute)
        luma, d, m = run.io(2, h, w)
        s = int(self.compute)
        lib.luma(slot.dev_in.ptr, luma, 2, h, w, c, bits, K.F32, s)
        run.enqueue(self.compute)
        lib.blend(slot.dev_in.ptr, slot.dev_in.ptr + fb, m, slot.dev_out.ptr, 1, 1, h, w, c, bits, s)
        if maps:  # the runner's D and M are reused by the next frame: keep this frame's copy
            cuda.copy_async(slot.dev_maps.ptr, d, 4 * h * w, self.compute, "d2d")
            cuda.copy_async(slot.dev_maps.ptr + 4 * h * w, m, 4 * h * w, self.compute, "d2d")
        ev["c1"].record(self.compute)

        self.d2h.wait(ev["c1"])
        ev["d0"].record(self.d2h)
        cuda.copy_async(slot.pin_out.ptr, slot.dev_out.ptr, fb, self.d2h, "d2h")
        if maps:
            cuda.copy_async(slot.pin_maps.ptr, slot.dev_maps.ptr, 8 * h * w, self.d2h, "d2h")
        ev["d1"].record(self.d2h)
        slot.pending = (shape, dtype, maps)

    def collect(self, slot: _Slot) -> FusionResult:
        ev = slot.ev
        ev["d1"].synchronize()
        shape, dtype, maps = slot.pending
        slot.pending = None
        res = FusionResult(slot.pin_out.view(shape, dtype).copy())
        if maps:
            dm = slot.pin_maps.view((2, *shape[:2]), np.float32)
            res.decision, res.mask = dm[0].copy(), dm[1].copy()
            if not (np.isfinite(res.decision).all() and np.isfinite(res.mask).all()):
                from engine.errors import BackendError
                raise BackendError(f"{self.runner.name} produced non-finite decision values")
        res.timings = {"h2d": ev["h2d"].elapsed_ms(ev["start"]), "compute": ev["c1"].elapsed_ms(ev["c0"]),
                       "d2h": ev["d1"].elapsed_ms(ev["d0"]), "total": ev["d1"].elapsed_ms(ev["start"])}
        return res

    def fuse(self, a, b, maps: bool = False) -> FusionResult:
        self._single = self._single or _Slot()
        self.submit(self._single, a, b, maps)
        return self.collect(self._single)

    # -- focus stacks ------------------------------------------------------------------------------
    def stack(self, frames, check, strategy: str) -> StackResult:
        frame0 = check(next(frames), 0)
        if strategy == "sequential":
            return self._stack_sequential(frame0, frames, check)
        h, w, c, bits, fb = _geometry(frame0.shape, frame0.dtype)
        lib, s, hw = self.lib, int(self.compute), h * w
        pin = [cuda.PinnedBuffer(fb) for _ in range(2)]
        dev = [cuda.DeviceBuffer(fb) for _ in range(3)]          # frame 0, then two in rotation
        uploaded = [cuda.Event(timing=False) for _ in range(2)]
        consumed = [cuda.Event(timing=False) for _ in range(2)]
        ref_luma, v0, best, index = (cuda.DeviceBuffer(4 * hw) for _ in range(4))
        out = cuda.DeviceBuffer(fb)

        np.copyto(pin[0].view(frame0.shape, frame0.dtype), frame0)
        cuda.copy_async(dev[2].ptr, pin[0].ptr, fb, self.compute, "h2d")
        lib.luma(dev[2].ptr, ref_luma.ptr, 1, h, w, c, bits, K.F32, s)
        consumed[0].record(self.compute)
        consumed[1].record(self.compute)
        n = 1
        for i, frame in enumerate(frames, start=1):
            frame = check(frame, i)
            j = i % 2
            consumed[j].synchronize()  # the frame that last used buffer j has been read
            np.copyto(pin[j].view(frame.shape, frame.dtype), frame)
            cuda.copy_async(dev[j].ptr, pin[j].ptr, fb, self.h2d, "h2d")
            uploaded[j].record(self.h2d)
            self.compute.wait(uploaded[j])
            luma, _, m = self.runner.io(2, h, w)
            cuda.copy_async(luma, ref_luma.ptr, 4 * hw, self.compute, "d2d")
            lib.luma(dev[j].ptr, luma + 4 * hw, 1, h, w, c, bits, K.F32, s)
            self.runner.enqueue(self.compute)
            if i == 1:
                lib.stack_first(m, dev[2].ptr, dev[j].ptr, v0.ptr, best.ptr, index.ptr, out.ptr, h, w, c, bits, s)
            else:
                lib.stack_next(m, dev[j].ptr, i, v0.ptr, best.ptr, index.ptr, out.ptr, h, w, c, bits, s)
            consumed[j].record(self.compute)
            n += 1
        if n < 2:
            raise InputError("a focus stack needs at least 2 frames, got 1")
        fused = np.empty_like(frame0)
        idx = np.empty((h, w), np.int32)
        pin_out, pin_idx = cuda.PinnedBuffer(fb), cuda.PinnedBuffer(4 * hw)
        cuda.copy_async(pin_out.ptr, out.ptr, fb, self.compute, "d2h")
        cuda.copy_async(pin_idx.ptr, index.ptr, 4 * hw, self.compute, "d2h")
        self.compute.synchronize()
        np.copyto(fused, pin_out.view(frame0.shape, frame0.dtype))
        np.copyto(idx, pin_idx.view((h, w), np.int32))
        return StackResult(fused, idx, n)

    def _stack_sequential(self, frame0, frames, check) -> StackResult:
        """One after another: the running result is float, so its blend stays on the host."""
        h, w = frame0.shape[:2]
        acc = Sequential(frame0)
        pin_luma, pin_mask = cuda.PinnedBuffer(8 * h * w), cuda.PinnedBuffer(4 * h * w)
        n = 1
        for i, frame in enumerate(frames, start=1):
            frame = check(frame, i)
            luma, _, m = self.runner.io(2, h, w)
            planes = pin_luma.view((2, h, w), np.float32)
            planes[0], planes[1] = acc.luma(), preprocess.luma(frame)
            cuda.copy_async(luma, pin_luma.ptr, 8 * h * w, self.compute, "h2d")
            self.runner.enqueue(self.compute)
            cuda.copy_async(pin_mask.ptr, m, 4 * h * w, self.compute, "d2h")
            self.compute.synchronize()
            acc.update(pin_mask.view((h, w), np.float32).copy(), frame, i)
            n += 1
        if n < 2:
            raise InputError("a focus stack needs at least 2 frames, got 1")
        return StackResult(acc.out, acc.index, n)

    def close(self) -> None:
        self.compute.synchronize()
        self.runner.deactivate()
