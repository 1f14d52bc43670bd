"""The executor on a GPU: device buffers, three CUDA streams and the kernel library around a
DeviceRunner (PyTorch-CUDA, TensorRT).

uint8/uint16 frames go up once; luma (spec section 1), the network, the blend (section 7) and
the stack selection (section 8) run on the GPU, and only the fused image comes back. Copies in,
compute and copies out use three streams ordered by events, so with several workspaces in
flight (engine.streaming) one frame's copies overlap another's compute. Host memory for the
copies is pinned and kept per workspace; device arrays (CUDA array interface or DLPack) are
copied on the device. ``begin`` waits for a workspace's previous job before its pinned buffers
are written again. The CUDA layer (``cuda_api``, engine.cuda) and the kernel library are
injected, so tests run all of this on the host with an asynchronous stand-in. It implements
engine.executor.Executor and engine.pipeline_api.StackAccumulators.
"""
from __future__ import annotations

import logging

import numpy as np

from engine import kernels as K
from engine import memory, preprocess
from engine.executor import check_finite
from engine.results import FusionResult
from engine.stack import Sequential

log = logging.getLogger(__name__)
F32 = 4
TIMING_EVENTS = ("start", "h2d", "c0", "c1", "d0", "d1")


class DeviceArray:
    """A frame or plane in device memory; ``host`` keeps the host frame it came from, if any."""

    def __init__(self, buffer, shape, dtype, host: np.ndarray | None = None, offset: int = 0):
        self.buffer, self.shape, self.dtype, self.host, self.offset = buffer, tuple(shape), np.dtype(dtype), host, offset

    @property
    def ptr(self) -> int:
        return self.buffer.ptr + self.offset

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize


class DeviceWorkspace:
    """Device and pinned buffers by name, and the events of one frame in flight."""

    def __init__(self, cuda):
        self.cuda = cuda
        self.device: dict[str, object] = {}
        self.pinned_buffers: dict[str, object] = {}
        self.ev = {k: cuda.Event() for k in TIMING_EVENTS}
        self.ended = cuda.Event(timing=False)
        self.done = cuda.Event(timing=False)
        self.busy = False       # work was queued since the last begin()
        self.uploaded = False
        self.computing = False
        self.pending = None

    def _get(self, table, make, name, nbytes):
        buf = table.get(name)
        if buf is None or buf.nbytes < nbytes:
            if buf is not None:
                buf.close()
            buf = table[name] = make(nbytes)
        return buf

    def buffer(self, name: str, nbytes: int):
        return self._get(self.device, self.cuda.DeviceBuffer, name, nbytes)

    def pinned(self, name: str, nbytes: int):
        return self._get(self.pinned_buffers, self.cuda.PinnedBuffer, name, nbytes)

    def close(self) -> None:
        for table in (self.device, self.pinned_buffers):
            for buf in table.values():
                buf.close()
            table.clear()
        for ev in (*self.ev.values(), self.ended, self.done):
            ev.close()


def _geometry(img: DeviceArray):
    h, w = img.shape[:2]
    return h, w, 1 if len(img.shape) == 2 else 3, 8 if img.dtype == np.uint8 else 16


class DeviceExecutor:
    """engine.executor.Executor for device runners."""

    on_device = True

    def __init__(self, runner, *, cuda_api=None, lib=None):
        if cuda_api is None:
            from engine import cuda as cuda_api
        self.cuda = cuda_api
        self.runner = runner
        runner.activate()
        try:
            self.lib = lib or K.KernelLibrary.load("cuda")
            self.h2d, self.compute, self.d2h = (cuda_api.Stream() for _ in range(3))
            self._spaces: list[DeviceWorkspace] = []
            self._scratch = self.workspace()
            free, _ = cuda_api.mem_info()
            self._budget = max(free - memory.DEVICE_MARGIN, 0)
        except Exception:
            runner.deactivate()   # streams made so far are released when collected (engine.cuda)
            raise

    # -- workspaces ----------------------------------------------------------------------------------
    def workspace(self) -> DeviceWorkspace:
        ws = DeviceWorkspace(self.cuda)
        self._spaces.append(ws)
        return ws

    def begin(self, ws: DeviceWorkspace) -> None:
        if ws.busy:
            ws.done.synchronize()   # its pinned and device buffers are free again
        ws.busy, ws.uploaded, ws.computing = True, False, False

    def end(self, ws: DeviceWorkspace) -> None:
        if ws.uploaded:
            self.compute.wait(ws.ev["h2d"])
        ws.ended.record(self.compute)
        self.d2h.wait(ws.ended)
        ws.done.record(self.d2h)

    def budget(self) -> int:
        return self._budget

    def available(self) -> int | None:
        return self.cuda.mem_info()[0] + self._held()

    def _held(self) -> int:
        return sum(b.nbytes for ws in self._spaces for b in ws.device.values())

    # -- frames and planes ---------------------------------------------------------------------------
    def put(self, ws, name, image, what) -> DeviceArray:
        dev = self.cuda.device_array_pointer(image, self.h2d)
        if dev is None:
            img = preprocess.check_image(image, what)
            shape, dtype, host = img.shape, img.dtype, img
        else:
            ptr, shape, dtype = dev
            shape, host = preprocess.check_meta(shape, dtype, what), None
        out = DeviceArray(ws.buffer(name, int(np.prod(shape)) * np.dtype(dtype).itemsize), shape, dtype, host)
        if not ws.uploaded:
            ws.ev["start"].record(self.h2d)
        if host is not None:
            pin = ws.pinned(name, out.nbytes)
            np.copyto(pin.view(shape, dtype), host)
            self.cuda.copy_async(out.ptr, pin.ptr, out.nbytes, self.h2d, "h2d")
        else:
            self.cuda.copy_async(out.ptr, ptr, out.nbytes, self.h2d, "d2d")
        ws.ev["h2d"].record(self.h2d)
        ws.uploaded = True
        return out

    def _computing(self, ws) -> int:
        """The compute stream's handle, after the workspace's uploads."""
        if not ws.computing:
            if ws.uploaded:
                self.compute.wait(ws.ev["h2d"])
            ws.ev["c0"].record(self.compute)
            ws.computing = True
        return int(self.compute)

    def luma(self, ws, name, image: DeviceArray) -> DeviceArray:
        h, w, c, bits = _geometry(image)
        plane = DeviceArray(ws.buffer(name, F32 * h * w), (1, h, w), np.float32)
        self.lib.luma(image.ptr, plane.ptr, 1, h, w, c, bits, K.F32, self._computing(ws))
        return plane

    def planes(self, ws, name, n, height, width) -> DeviceArray:
        return DeviceArray(ws.buffer(name, F32 * n * height * width), (n, height, width), np.float32)

    def _upload_small(self, dst: int, array: np.ndarray) -> None:
        """A few bytes from pageable host memory (CUDA stages them before returning)."""
        array = np.ascontiguousarray(array, np.float32)
        self.cuda.copy_async(dst, array.ctypes.data, array.nbytes, self.compute, "h2d")

    def _windows_in(self, dst: int, lumas, tile, th, tw) -> None:
        """Each frame's window of the luma planes into the runner's [K,1,th,tw] input."""
        _, height, width = lumas[0].shape
        y0, _, x0, _ = tile.window if tile is not None else (0, height, 0, width)
        for i, plane in enumerate(lumas):
            self.cuda.copy_2d_async(dst + i * F32 * th * tw, F32 * tw, plane.ptr + F32 * (y0 * width + x0), F32 * width,
                                    F32 * tw, th, self.compute, "d2d")

    def network(self, ws, lumas, tiles, cse, decision, mask, on_tile=None) -> None:
        stream = self._computing(ws)
        k = len(lumas)
        _, height, width = lumas[0].shape
        if tiles is None:
            io = self.runner.bind("whole", k, height, width)
            self._windows_in(io["luma"], lumas, None, height, width)
            self.runner.enqueue(stream)
            n = F32 * (k - 1) * height * width
            self.cuda.copy_async(mask.ptr, io["mask"], n, self.compute, "d2d")
            if decision is not None:
                self.cuda.copy_async(decision.ptr, io["decision"], n, self.compute, "d2d")
            return
        y0, y1, x0, x1 = tiles[0].window
        th, tw = y1 - y0, x1 - x0
        io = self.runner.bind("tile", k, th, tw)
        self._upload_small(io["cse"], cse)
        outputs = [(mask, io["mask"])] + ([(decision, io["decision"])] if decision is not None else [])
        for tile in tiles:
            self._windows_in(io["luma"], lumas, tile, th, tw)
            self.runner.enqueue(stream)
            (cy, cx), (ys, xs) = tile.core_in_window, tile.core_slices
            for plane, src in outputs:
                for j in range(k - 1):
                    self.cuda.copy_2d_async(plane.ptr + F32 * (j * height * width + ys.start * width + xs.start),
                                            F32 * width, src + F32 * (j * th * tw + cy.start * tw + cx.start), F32 * tw,
                                            F32 * (xs.stop - xs.start), ys.stop - ys.start, self.compute, "d2d")
            if on_tile is not None:
                on_tile()

    def block_sums(self, ws, block, lumas, tiles, cse, on_tile=None) -> np.ndarray:
        stream = self._computing(ws)
        k = len(lumas)
        y0, y1, x0, x1 = tiles[0].window
        th, tw = y1 - y0, x1 - x0
        io = self.runner.bind(f"sums{block}", k, th, tw)
        if block:
            self._upload_small(io["cse"], cse)
        per_tile = k * 16 * th
        rows = ws.pinned("sums", F32 * per_tile * len(tiles))
        for t, tile in enumerate(tiles):
            colmask = np.zeros(tw, np.float32)
            colmask[tile.core_in_window[1]] = 1
            self._upload_small(io["colmask"], colmask)
            self._windows_in(io["luma"], lumas, tile, th, tw)
            self.runner.enqueue(stream)
            self.cuda.copy_async(rows.ptr + F32 * per_tile * t, io["sums"], F32 * per_tile, self.compute, "d2h")
            if on_tile is not None:
                on_tile()
        self.compute.synchronize()   # the next pass needs these scales on the host
        sums = rows.view((len(tiles), k, 16, th), np.float32)
        total = np.zeros((k, 16), np.float64)
        for t, tile in enumerate(tiles):
            total += sums[t][:, :, tile.core_in_window[0]].sum(axis=2, dtype=np.float64)
        return total

    def blend(self, ws, name, a, b, mask, k=0) -> DeviceArray:
        h, w, c, bits = _geometry(a)
        out = DeviceArray(ws.buffer(name, a.nbytes), a.shape, a.dtype)
        self.lib.blend(a.ptr, b.ptr, mask.ptr + F32 * k * h * w, out.ptr, 1, 1, h, w, c, bits, self._computing(ws))
        return out

    def calibration(self, ws, mask, frame0, frame1):
        return _DeviceCalibration(self, ws, mask, frame0, frame1)

    def sequential(self, ws, frame0):
        return _DeviceSequential(self, ws, frame0)

    # -- results -------------------------------------------------------------------------------------
    def fetch(self, ws, fused, decision, mask, maps) -> None:
        """The fused image, and M always (4 bytes a pixel on the copy stream: ``collect`` checks
        it as the host executor does), D when given."""
        ev = ws.ev
        ev["c1"].record(self.compute)
        self.d2h.wait(ev["c1"])
        ev["d0"].record(self.d2h)
        pin = ws.pinned("out", fused.nbytes)
        self.cuda.copy_async(pin.ptr, fused.ptr, fused.nbytes, self.d2h, "d2h")
        hw = fused.shape[0] * fused.shape[1]
        pin_maps = ws.pinned("maps", 2 * F32 * hw)
        for i, p in enumerate((decision, mask)):
            if p is not None:
                self.cuda.copy_async(pin_maps.ptr + i * F32 * hw, p.ptr, F32 * hw, self.d2h, "d2h")
        ev["d1"].record(self.d2h)
        ws.pending = (fused.shape, fused.dtype, decision is not None, maps)

    def collect(self, ws) -> FusionResult:
        ev = ws.ev
        ev["d1"].synchronize()
        shape, dtype, with_d, maps = ws.pending
        ws.pending = None
        res = FusionResult(ws.pinned("out", 0).view(shape, dtype).copy())
        dm = ws.pinned("maps", 0).view((2, *shape[:2]), np.float32)
        check_finite(self.runner.name, dm[0] if with_d else None, dm[1])
        if maps:
            res.decision = dm[0].copy() if with_d else None
            res.mask = dm[1].copy()
        res.timings = {"h2d": ev["h2d"].elapsed_ms(ev["start"]), "compute": ev["c1"].elapsed_ms(ev["c0"]),
                       "d2h": ev["d1"].elapsed_ms(ev["d0"]), "total": ev["d1"].elapsed_ms(ev["start"])}
        return res

    def download(self, ws, name: str, array: DeviceArray) -> np.ndarray:
        """A host copy of ``array`` after the compute stream's work (waits)."""
        pin = ws.pinned(name, array.nbytes)
        self.cuda.copy_async(pin.ptr, array.ptr, array.nbytes, self.compute, "d2h")
        self.compute.synchronize()
        return pin.view(array.shape, array.dtype).copy()

    def to_host(self, image: DeviceArray) -> np.ndarray:
        """The host frame an image came from, else a copy from the device (waits)."""
        if image.host is not None:
            return image.host
        return self.download(self._scratch, "host", image)

    def close(self) -> None:
        try:
            self.compute.synchronize()
            self.d2h.synchronize()
        finally:
            self.runner.deactivate()
            for ws in self._spaces:
                ws.close()
            self._spaces.clear()
            for s in (self.h2d, self.compute, self.d2h):
                s.close()


class _DeviceCalibration:
    """Decision calibration with the stack_first/next kernels on full-size device state."""

    def __init__(self, ex: DeviceExecutor, ws, mask, frame0, frame1):
        self.ex, self.ws = ex, ws
        h, w, self.c, self.bits = _geometry(frame0)
        self.h, self.w = h, w
        self.state = [ws.buffer(n, F32 * h * w).ptr for n in ("v0", "best", "index")]
        self.out = DeviceArray(ws.buffer("stack_out", frame0.nbytes), frame0.shape, frame0.dtype)
        ex.lib.stack_first(mask.ptr, frame0.ptr, frame1.ptr, *self.state, self.out.ptr, h, w, self.c, self.bits,
                           ex._computing(ws))

    def update(self, mask, k, frame, index) -> None:
        ex = self.ex
        ex.lib.stack_next(mask.ptr + F32 * k * self.h * self.w, frame.ptr, index, *self.state, self.out.ptr, self.h,
                          self.w, self.c, self.bits, int(ex.compute))

    def result(self):
        index = DeviceArray(self.ws.device["index"], (self.h, self.w), np.int32)
        return self.ex.download(self.ws, "stack_out", self.out), self.ex.download(self.ws, "stack_index", index)


class _DeviceSequential:
    """One after another: the running result is float, so its blend stays on the host (engine.stack)."""

    def __init__(self, ex: DeviceExecutor, ws, frame0):
        self.ex, self.ws = ex, ws
        self.acc = Sequential(ex.to_host(frame0))

    def luma(self) -> DeviceArray:
        host, ws = self.acc.luma(), self.ws
        h, w = host.shape
        pin = ws.pinned("seq_luma", F32 * h * w)   # its last copy finished: update() waited
        np.copyto(pin.view((h, w), np.float32), host)
        plane = DeviceArray(ws.buffer("seq_luma", F32 * h * w), (1, h, w), np.float32)
        self.ex.cuda.copy_async(plane.ptr, pin.ptr, F32 * h * w, self.ex.compute, "h2d")
        return plane

    def update(self, mask, k, frame, index) -> None:
        h, w = self.acc.index.shape
        m = DeviceArray(mask.buffer, (h, w), np.float32, offset=mask.offset + F32 * k * h * w)
        self.acc.update(self.ex.download(self.ws, "seq_mask", m), self.ex.to_host(frame), index)

    def result(self):
        return self.acc.out, self.acc.index
