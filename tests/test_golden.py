"""Every golden pair through the PyTorch reference and each CPU backend (float32)."""
import numpy as np
import pytest

from conftest import golden_names
from engine import preprocess
from engine.testing import metrics

NAMES = golden_names()


def test_golden_set_present():
    assert len(NAMES) >= 12, f"expected the 12 golden pairs, found {NAMES}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_cpu_backend_matches_golden(backend, name, golden, request):
    fuser = request.getfixturevalue("ort_fuser" if backend == "onnxruntime" else "ov_fuser")
    a, b, g_fused, g_d, g_m = golden(name)
    res = fuser.fuse(a, b, maps=True)
    report = metrics.golden_report(res.fused, res.decision, res.mask, g_fused, g_d, g_m)
    assert metrics.within(report, metrics.FP32), report
    assert res.fused.dtype == g_fused.dtype and res.fused.shape == g_fused.shape


@pytest.mark.parametrize("name", NAMES)
def test_openvino_bf16_decision_path_within_fp16_tolerances(name, golden, ov_bf16_fuser):
    """--precision bf16: float32 features and activity, bfloat16 decision path (the fp16 row)."""
    a, b, g_fused, g_d, g_m = golden(name)
    res = ov_bf16_fuser.fuse(a, b, maps=True)
    report = metrics.golden_report(res.fused, res.decision, res.mask, g_fused, g_d, g_m)
    print(f"bf16 {name}: {report}")
    assert metrics.within(report, metrics.FP16), report


@pytest.mark.parametrize("name", NAMES)
def test_pytorch_reference_matches_golden(name, torch_model, golden):
    import torch
    a, b, g_fused, g_d, g_m = golden(name)
    luma = torch.from_numpy(np.stack([preprocess.luma(a), preprocess.luma(b)])[:, None])
    with torch.no_grad():
        d, m = (t[0, 0].numpy() for t in torch_model(luma))
    fused = preprocess.blend(a, b, m)
    report = metrics.golden_report(fused, d, m, g_fused, g_d, g_m)
    assert metrics.within(report, metrics.FP32), report


def test_tolerances_reject_a_wrong_map(golden):
    """The golden check must be able to fail: a map shifted by a few pixels is caught."""
    a, b, g_fused, g_d, g_m = golden(NAMES[0])
    m = np.roll(g_m, 3, axis=1)
    fused = preprocess.blend(a, b, m)
    report = metrics.golden_report(fused, np.roll(g_d, 3, axis=1), m, g_fused, g_d, g_m)
    assert not metrics.within(report, metrics.FP32)
