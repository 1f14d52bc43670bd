"""The GPU pipeline's orchestration, run on the host.

A host stand-in for ``engine.cuda`` (plain memory, synchronous copies, no-op events) and for
the kernel library (the CPU twin, same per-pixel arithmetic) lets the DevicePipeline run here:
this checks its buffer offsets, kernel arguments, stack bookkeeping and slot reuse against the
host pipeline. The GPU check (benchmarks/gpu_check.py) runs the same code on a real GPU.
"""
import ctypes

import numpy as np
import pytest

from engine import cuda, preprocess
from engine import kernels as K
from engine.backends.onnxruntime import OnnxRuntimeRunner


class HostBuffer:
    def __init__(self, nbytes):
        self.nbytes = max(int(nbytes), 1)
        self._mem = np.zeros(self.nbytes + 64, np.uint8)
        self.ptr = (self._mem.ctypes.data + 63) // 64 * 64
        self._bytes = np.ctypeslib.as_array((ctypes.c_uint8 * self.nbytes).from_address(self.ptr))

    def view(self, shape, dtype):
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self._bytes[:n].view(dtype).reshape(shape)

    def close(self):
        pass


class HostStream:
    def __int__(self):
        return 0

    def wait(self, event):
        pass

    def synchronize(self):
        pass


class HostEvent:
    def __init__(self, timing=True):
        pass

    def record(self, stream):
        pass

    def synchronize(self):
        pass

    def elapsed_ms(self, since):
        return 0.0


def host_copy(dst, src, nbytes, stream, kind):
    ctypes.memmove(dst, src, nbytes)


class HostDeviceRunner(OnnxRuntimeRunner):
    """ONNX Runtime behind the device-runner interface: luma, D and M live in 'device' buffers."""

    on_device = True

    def io(self, k, h, w):
        self.shape = (k, h, w)
        self.bufs = [HostBuffer(4 * k * h * w), HostBuffer(4 * (k - 1) * h * w), HostBuffer(4 * (k - 1) * h * w)]
        return tuple(b.ptr for b in self.bufs)

    def enqueue(self, stream):
        k, h, w = self.shape
        d, m = self.infer(self.bufs[0].view((k, 1, h, w), np.float32).copy())
        self.bufs[1].view(d.shape, np.float32)[...] = d
        self.bufs[2].view(m.shape, np.float32)[...] = m


@pytest.fixture()
def host_device(monkeypatch, params, cpu):
    monkeypatch.setattr(cuda, "DeviceBuffer", HostBuffer)
    monkeypatch.setattr(cuda, "PinnedBuffer", HostBuffer)
    monkeypatch.setattr(cuda, "Stream", HostStream)
    monkeypatch.setattr(cuda, "Event", HostEvent)
    monkeypatch.setattr(cuda, "copy_async", host_copy)
    monkeypatch.setattr(K.KernelLibrary, "load", classmethod(lambda cls, kind="cuda": cpu))
    from engine.device_pipeline import DevicePipeline
    pipe = DevicePipeline(HostDeviceRunner(params=params))
    yield pipe
    pipe.close()


def test_pair_matches_host_pipeline(host_device, ort_fuser, golden):
    from conftest import golden_names
    for name in (golden_names()[0], "gray_mwg_clock"):
        a, b, *_ = golden(name)
        dev = host_device.fuse(a, b, maps=True)
        ref = ort_fuser.fuse(a, b, maps=True)
        np.testing.assert_array_equal(dev.mask, ref.mask)
        np.testing.assert_array_equal(dev.decision, ref.decision)
        np.testing.assert_array_equal(dev.fused, ref.fused)
        assert set(dev.timings) == {"h2d", "compute", "d2h", "total"}


def test_stream_slots_reuse_buffers_in_order(host_device, ort_fuser):
    from engine.streaming import stream
    rng = np.random.default_rng(5)
    pairs = [(rng.integers(0, 65536, (20 + i, 30, 3), dtype=np.uint16), rng.integers(0, 65536, (20 + i, 30, 3), dtype=np.uint16))
             for i in range(3)] * 3  # sizes change between slots: buffers are re-made per shape
    out = list(stream(host_device, iter(pairs), slots=2, maps=True))
    assert [r.index for r in out] == list(range(9))
    for r, (a, b) in zip(out, pairs):
        ref = ort_fuser.fuse(a, b, maps=True)
        np.testing.assert_array_equal(r.fused, ref.fused)
        np.testing.assert_array_equal(r.mask, ref.mask)


@pytest.mark.parametrize("strategy", ["calibration", "sequential"])
def test_stack_matches_host_pipeline(host_device, ort_fuser, data_dir, strategy):
    from engine.imageio import read_image
    paths = sorted((data_dir / "stack9").glob("*.jpg"))[:5]
    frames = [read_image(p)[::6, ::6].copy() for p in paths]
    dev = host_device.stack(iter(frames), lambda f, i: preprocess.check_image(f), strategy)
    ref = ort_fuser.fuse_stack(frames, strategy=strategy)
    assert dev.frames == ref.frames == 5
    same = np.mean(dev.index == ref.index)
    assert same > 0.999, same  # the host pipeline batches 2 frames per run: rounding may flip a rare tie
    np.testing.assert_array_equal(dev.fused[dev.index == ref.index], ref.fused[dev.index == ref.index])


def test_device_arrays_are_rejected_when_not_contiguous():
    class Fake:
        __cuda_array_interface__ = {"data": (1234, False), "shape": (8, 8, 3), "typestr": "|u1", "strides": (1, 8, 64),
                                    "version": 3}
    from engine.errors import BackendError
    with pytest.raises(BackendError, match="contiguous"):
        cuda.device_array_pointer(Fake())
    Fake.__cuda_array_interface__ = {**Fake.__cuda_array_interface__, "strides": None}
    assert cuda.device_array_pointer(Fake()) == (1234, (8, 8, 3), np.dtype(np.uint8))


def test_dlpack_pointer_reads_the_dltensor():
    from engine.dlpack import dlpack_pointer
    a = np.arange(2 * 9 * 10, dtype=np.uint16).reshape(2, 9, 10)
    assert dlpack_pointer(a) == (a.ctypes.data, (2, 9, 10), np.dtype(np.uint16))
    assert cuda.device_array_pointer(a) is None  # host arrays take the pinned-copy path
