"""The PyTorch-CUDA backend's network (folded weights, fused gates, kernel calls) run on the CPU
with the CPU twin of the kernel library, against the golden outputs. On a GPU the same class
runs with the CUDA library (benchmarks/gpu_check.py)."""
import numpy as np
import pytest

from conftest import golden_names
from engine import metrics, preprocess

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def net(params, cpu):
    from engine.backends.torch_cuda import CudaGacn
    return CudaGacn(params, cpu, torch.float32, torch, device="cpu")


@pytest.mark.parametrize("name", [golden_names()[0], "gray_mwg_clock", "color_tid_t5"])
def test_cpu_run_of_the_cuda_network_matches_golden(net, golden, name):
    a, b, gf, gd, gm = golden(name)
    luma = torch.from_numpy(np.stack([preprocess.luma(a), preprocess.luma(b)])[:, None])
    with torch.no_grad():
        d, m = (t[0, 0].numpy() for t in net(luma))
    rep = metrics.golden_report(preprocess.blend(a, b, m), d, m, gf, gd, gm)
    assert metrics.within(rep, metrics.FP32), rep


def test_batched_frames_share_the_reference(net, golden):
    a, b, *_ = golden(golden_names()[0])
    ya, yb, yc = (torch.from_numpy(preprocess.luma(x))[None, None] for x in (a, b, a[::-1].copy()))
    with torch.no_grad():
        d3, m3 = net(torch.cat([ya, yb, yc]))
        d1, m1 = net(torch.cat([ya, yc]))
    torch.testing.assert_close(m3[1:], m1, atol=1e-5, rtol=0)
