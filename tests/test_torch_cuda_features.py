"""The torch-cuda feature path without elementwise passes (features="tc32" / "fold"), run on the
CPU with the CPU twin of the kernel library: the 3xTF32 arithmetic of the tensor-core kernel
(bit for bit the emulated CUDA kernel, tests/test_kernels_tc.py) through the whole network
against the golden outputs, external CSE scales, the decision path's dtype and layout, and the
switch itself. On a GPU benchmarks/gpu_check.py runs the same class with the CUDA library."""
import numpy as np
import pytest

from engine import preprocess
from engine.testing import metrics
from engine.errors import BackendError

torch = pytest.importorskip("torch")


def _luma(golden, name, crop=None):
    a, b, *_ = golden(name)
    luma = np.stack([preprocess.luma(a), preprocess.luma(b)])[:, None]
    if crop:
        luma = np.ascontiguousarray(luma[..., :crop[0], :crop[1]])
    return torch.from_numpy(luma)


@pytest.fixture(scope="module")
def nets(params, cpu):
    from engine.backends.torch_cuda import CudaGacn
    return {f: CudaGacn(params, cpu, torch.float32, torch, device="cpu", features=f) for f in ("default", "tc32")}


def test_tc32_network_matches_golden(nets, golden):
    """334 x 508 pair: FP32 golden tolerances, and within FP32 noise of today's path."""
    a, b, gf, gd, gm = golden("color_tid_t5")
    luma = _luma(golden, "color_tid_t5")
    with torch.no_grad():
        d, m = (t[0, 0].numpy() for t in nets["tc32"](luma))
        d0, m0 = (t[0, 0].numpy() for t in nets["default"](luma))
    rep = metrics.golden_report(preprocess.blend(a, b, m), d, m, gf, gd, gm)
    assert metrics.within(rep, metrics.FP32), rep
    assert np.mean((d > 0.5) == (d0 > 0.5)) > 0.9999
    assert np.percentile(np.abs(m - m0), 99.9) < 1e-4


def test_external_scales_reproduce_computed_ones(nets, golden):
    """Scales handed in (tiled execution) give the Bm of the scales computed from the partial sums;
    other scales give another Bm (they are really used)."""
    path = nets["tc32"].feature_path
    luma = _luma(golden, "color_tid_t5", crop=(40, 72))
    k, _, h, w = luma.shape
    s = torch.empty((k, 4, 16))
    u = torch.empty((1, 64, h, w))
    with torch.no_grad():
        for j in range(k):
            path.features(luma[j:j + 1], u, s[j:j + 1])
        want = path.bm(luma)
        np.testing.assert_array_equal(path.bm(luma, scales=s.clone()).numpy(), want.numpy())
        assert not np.array_equal(path.bm(luma, scales=(s * 1.01).contiguous()).numpy(), want.numpy())
    with pytest.raises(ValueError, match="scales must be"):
        path.bm(luma, scales=s[:, :3].contiguous())


def test_fp16_mode_writes_bm_as_fp16_channels_last(params, cpu, nets, golden):
    from engine.backends.torch_cuda import CudaGacn
    net16 = CudaGacn(params, cpu, torch.float16, torch, device="cpu", features="tc32")
    luma = _luma(golden, "color_tid_t5", crop=(24, 40))
    with torch.no_grad():
        bm16 = net16.feature_path.bm(luma)
        bm32 = nets["tc32"].feature_path.bm(luma)
    assert bm16.dtype == torch.float16 and bm16.is_contiguous(memory_format=torch.channels_last)
    assert bm32.dtype == torch.float32 and bm32.is_contiguous()
    np.testing.assert_array_equal(bm16.float().numpy(), bm32.half().float().numpy())


def test_feature_switch(monkeypatch, params):
    from engine.backends.torch_cuda import TorchCudaRunner
    from engine.backends.torch_cuda_features import feature_path_name
    monkeypatch.delenv("GACN_FEATURES", raising=False)
    assert TorchCudaRunner(params).features == "default"  # today's path unless asked
    assert TorchCudaRunner(params, features="tc32").features == "tc32"
    monkeypatch.setenv("GACN_FEATURES", "FOLD")
    assert TorchCudaRunner(params).features == "fold" and feature_path_name() == "fold"
    monkeypatch.setenv("GACN_FEATURES", "tf32")
    with pytest.raises(BackendError, match="unknown feature path 'tf32'"):
        TorchCudaRunner(params)
