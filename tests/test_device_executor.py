"""The GPU executor run on the host: engine.device_executor over tests/fake_cuda.py (host memory,
work queued and run as late as a GPU may run it) and the CPU twin of the kernel library.

It checks the executor's buffer offsets, window copies, kernel arguments, event ordering and
workspace reuse against the host executor: every result must be identical, and no pinned buffer
may be rewritten before its copy ran (the fake records it as a hazard). benchmarks/gpu_check.py
runs the same code on a real GPU.
"""
import numpy as np
import pytest

from engine import cuda

from engine.backends.onnxruntime import OnnxRuntimeRunner
from engine.device_executor import DeviceExecutor
from engine.host_executor import HostExecutor
from engine.pipeline import Pipeline
from engine.strategies import run as fuse_stack
from fake_cuda import FakeCuda, FakeDeviceArray, FakeDeviceRunner


@pytest.fixture()
def fake():
    return FakeCuda()


def device_pipeline(fake, params, cpu, **options):
    runner = FakeDeviceRunner(fake, OnnxRuntimeRunner(params=params, threads=2))
    return Pipeline(DeviceExecutor(runner, cuda_api=fake, lib=fake.kernels(cpu)), **options)


@pytest.fixture()
def device(fake, params, cpu):
    pipe = device_pipeline(fake, params, cpu)
    yield pipe
    pipe.close()
    assert not fake.hazards, fake.hazards


@pytest.fixture(scope="module")
def host(params):
    pipe = Pipeline(HostExecutor(OnnxRuntimeRunner(params=params, threads=2)))
    yield pipe
    pipe.close()


def assert_same(dev, ref):
    np.testing.assert_array_equal(dev.fused, ref.fused)
    for name in ("decision", "mask"):
        if getattr(ref, name) is not None:
            np.testing.assert_array_equal(getattr(dev, name), getattr(ref, name))


def test_pair_matches_host(device, host, golden):
    for name in ("color_tid_t5", "gray_mwg_clock"):
        a, b, *_ = golden(name)
        dev, ref = device.fuse(a, b, maps=True), host.fuse(a, b, maps=True)
        assert_same(dev, ref)
        assert set(dev.timings) == {"h2d", "compute", "d2h", "total"}
        assert_same(device.fuse(a, b), host.fuse(a, b))


def test_tiled_pair_matches_host(fake, params, cpu, host, golden):
    a, b, *_ = golden("color_tid_t5")
    dev = device_pipeline(fake, params, cpu, tile=128)
    host.tile = 128
    try:
        assert_same(dev.fuse(a, b, maps=True), host.fuse(a, b, maps=True))
    finally:
        host.tile = None
        dev.close()
    assert not fake.hazards, fake.hazards


def test_stream_slots_reuse_buffers_in_order(device, host):
    from engine.streaming import stream
    rng = np.random.default_rng(5)
    pairs = [(rng.integers(0, 65536, (20 + i, 30, 3), dtype=np.uint16), rng.integers(0, 65536, (20 + i, 30, 3), dtype=np.uint16))
             for i in range(3)] * 3  # sizes change between slots: buffers are re-made per shape
    out = list(stream(device, iter(pairs), slots=2, maps=True))
    assert [r.index for r in out] == list(range(9))
    for r, (a, b) in zip(out, pairs):
        assert_same(r, host.fuse(a, b, maps=True))
    pool = list(device._pools["stream"])
    assert len(pool) == 2                                          # one workspace per slot, kept
    again = list(stream(device, iter(pairs[:3]), slots=2, maps=True))
    assert device._pools["stream"] == pool and [r.index for r in again] == [0, 1, 2]   # reused, not re-made


@pytest.mark.parametrize("strategy", ["calibration", "sequential", "tree"])
def test_stack_matches_host(device, host, data_dir, strategy):
    from engine.imageio import read_image
    paths = sorted((data_dir / "stack9").glob("*.jpg"))[:5]
    frames = [read_image(p)[::6, ::6].copy() for p in paths]
    dev, ref = (fuse_stack(p, ((f, None) for f in frames), strategy) for p in (device, host))
    assert dev[2] == ref[2] == 5
    np.testing.assert_array_equal(dev[1], ref[1])   # one orchestration: the same batches, the same bits
    np.testing.assert_array_equal(dev[0], ref[0])


def test_device_arrays_give_the_host_result(fake, device, host, golden):
    a, b, *_ = golden("color_tid_t5")
    dev = device.fuse(FakeDeviceArray(fake, a), FakeDeviceArray(fake, b), maps=True)
    assert_same(dev, host.fuse(a, b, maps=True))


def test_reusing_a_workspace_before_its_copies_ran_is_caught(fake, params, cpu, data_dir, monkeypatch):
    """Negative control for the hazard check: without begin()'s wait, the next frame overwrites
    the pinned buffer of a copy that has not run yet."""
    from engine.imageio import read_image
    frames = [read_image(p)[::8, ::8].copy() for p in sorted((data_dir / "stack9").glob("*.jpg"))[:6]]
    monkeypatch.setattr(DeviceExecutor, "begin", lambda self, ws: None)
    pipe = device_pipeline(fake, params, cpu)
    fuse_stack(pipe, ((f, None) for f in frames), "calibration")
    pipe.close()
    assert fake.hazards and "overwritten before the copy ran" in fake.hazards[0]


def test_close_releases_every_cuda_object(fake, params, cpu, golden):
    a, b, *_ = golden("gray_mwg_clock")
    pipe = device_pipeline(fake, params, cpu, tile=128)
    pipe.fuse(a, b, maps=True)
    ex = pipe.ex
    spaces = list(ex._spaces)
    assert len(spaces) > 1                                         # the pools' workspaces, not only the scratch one
    pipe.close()
    assert fake.allocated == 0
    assert all(s.closed for s in (ex.h2d, ex.compute, ex.d2h))
    assert all(e.closed for ws in spaces for e in (*ws.ev.values(), ws.ended, ws.done))


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


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")   # the host blend of the NaN, before the check
def test_non_finite_maps_are_refused_the_same_on_both_executors(fake, params, cpu, golden):
    """One check (engine.executor.check_finite) on both executors, whether or not the maps are
    asked for: the GPU executor used to check only fetched maps, so a NaN mask reached the
    blend unnoticed when only the fused image was wanted."""
    from engine.errors import BackendError
    a, b, *_ = golden("gray_mwg_clock")

    def broken():
        runner = OnnxRuntimeRunner(params=params, threads=2)
        real = runner.infer

        def infer(luma, cse=None):
            d, m = real(luma, cse)
            m = m.copy()
            m[0, 0, 3, 4] = np.nan
            return d, m
        runner.infer = infer
        return runner
    pipes = [Pipeline(HostExecutor(broken())),
             Pipeline(DeviceExecutor(FakeDeviceRunner(fake, broken()), cuda_api=fake, lib=fake.kernels(cpu)))]
    try:
        for pipe in pipes:
            for maps in (False, True):
                with pytest.raises(BackendError, match="non-finite"):
                    pipe.fuse(a, b, maps=maps)
    finally:
        for pipe in pipes:
            pipe.close()


def test_non_finite_stack_masks_are_refused_on_the_host(params, golden):
    """Stack strategies take their masks from Pipeline.maps too, not through a pair's collect:
    a NaN mask is refused there, not blended (sequential cast it to 0, calibration kept it)."""
    from engine.errors import BackendError
    from engine.fusion import fuse_stack
    a, b, *_ = golden("gray_mwg_clock")
    runner = OnnxRuntimeRunner(params=params, threads=2)
    real = runner.infer

    def infer(luma, cse=None):
        d, m = real(luma, cse)
        m = m.copy()
        m[..., 3, 4] = np.nan
        return d, m
    runner.infer = infer
    pipe = Pipeline(HostExecutor(runner))
    try:
        for strategy in ("calibration", "sequential", "tree"):
            with pytest.raises(BackendError, match="non-finite"):
                fuse_stack([a, b, a], pipeline=pipe, strategy=strategy, align="none")
    finally:
        pipe.close()
