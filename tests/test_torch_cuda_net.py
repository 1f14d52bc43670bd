"""The PyTorch-CUDA backend's network (folded weights, fused gates, kernel calls) run on the CPU
with the CPU twin of the kernel library, against the golden outputs. On a GPU the same class
runs with the CUDA library (benchmarks/gpu_check.py)."""
import numpy as np
import pytest

from conftest import golden_names
from engine import preprocess
from engine.testing import metrics

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


def test_tile_and_sums_variants_match_onnxruntime(net, ort_fuser, golden):
    """The variants tiled execution runs (external CSE scales; row sums of each block's output
    over a column mask) agree with the portable graph's."""
    a, b, *_ = golden("color_tid_t5")
    luma = np.stack([preprocess.luma(a), preprocess.luma(b)])[:, None]
    runner = ort_fuser.pipeline.ex.runner
    rng = np.random.default_rng(0)
    cse = rng.uniform(0.2, 0.9, (2, 64, 1, 1)).astype(np.float32)
    colmask = (rng.random(luma.shape[-1]) < 0.5).astype(np.float32)
    t = torch.from_numpy
    with torch.no_grad():
        d, m = (x.numpy() for x in net(t(luma), t(cse)))
        for block in range(4):
            ref = runner.block_sums(block, luma, cse[:, :16 * block], colmask)
            got = net.block_sums(block, t(luma), t(cse[:, :16 * block]) if block else None,
                                 t(colmask).view(1, 1, 1, -1)).numpy()
            np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-3)
    d_ref, m_ref = runner.infer(luma, cse)
    assert np.mean((d > 0.5) == (d_ref > 0.5)) > 0.9999
    assert np.percentile(np.abs(m - m_ref), 99.9) < 1e-4
