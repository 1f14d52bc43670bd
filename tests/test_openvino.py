"""The OpenVINO backend: strictly float32, static and dynamic models agree, exact tiles, and
its place among the backends (the golden pairs and stack are in test_golden.py/test_stack.py)."""
import numpy as np
import pytest

from engine.testing import metrics
from engine.backends import base

ov = pytest.importorskip("openvino", reason="openvino is not installed (a dependency of gacn-engine: pip install openvino)")


SMALL = np.random.default_rng(4).random((2, 1, 48, 40), dtype=np.float32)


def make(params, tmp_path, **options):
    from engine.backends.model_cache import ModelCache
    from engine.backends.openvino import OpenVinoRunner
    return OpenVinoRunner(params=params, cache=ModelCache(tmp_path), **options)


@pytest.fixture()
def runner(params, tmp_path):
    r = make(params, tmp_path)
    yield r
    r.deactivate()


def compiled_models(r):
    return [c for c, _ in list(r._dynamic.values()) + list(r._static.values())]


@pytest.mark.parametrize("static", ["always", "never"])
def test_compiled_in_float32(params, tmp_path, static):
    """On CPUs with BF16 instructions OpenVINO's default would run this graph in bfloat16."""
    r = make(params, tmp_path, static=static)
    r.infer(SMALL)
    (compiled,) = compiled_models(r)
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert str(compiled.get_property("EXECUTION_MODE_HINT")).endswith("ACCURACY")


def test_a_lower_precision_is_refused(runner):
    from engine.errors import BackendError
    runner.config = {**runner.config, "INFERENCE_PRECISION_HINT": "bf16", "EXECUTION_MODE_HINT": "PERFORMANCE"}
    with pytest.raises(BackendError, match="not float32"):
        runner.infer(SMALL)


def test_static_model_agrees_with_dynamic(params, tmp_path, golden):
    """Static (per shape) and dynamic models must compute the same maps."""
    from engine import preprocess
    a, b, *_ = golden("color_tid_t5")
    luma = np.stack([preprocess.luma(a), preprocess.luma(b)])[:, None]
    dynamic, static = make(params, tmp_path, static="never"), make(params, tmp_path, static="always")
    d1, m1 = dynamic.infer(luma)
    d2, m2 = static.infer(luma)
    assert list(dynamic._dynamic) == [("whole", 2)] and not dynamic._static and len(static._static) == 1
    assert np.mean((d1 > 0.5) == (d2 > 0.5)) >= 0.99999
    assert np.percentile(np.abs(m1 - m2), 99.9) < 1e-5


def test_mixed_shapes_fall_back_to_the_dynamic_model(runner):
    """After DYNAMIC_AFTER_SHAPES shapes, a new small one runs dynamic until it is met again."""
    from engine.backends.openvino import DYNAMIC_AFTER_SHAPES
    shapes = [(2, 1, 40 + 8 * i, 48) for i in range(DYNAMIC_AFTER_SHAPES + 1)]
    for s in shapes:
        runner.infer(np.zeros(s, np.float32))
    assert len(runner._static) == DYNAMIC_AFTER_SHAPES and list(runner._dynamic) == [("whole", 2)]
    runner.infer(np.zeros(shapes[-1], np.float32))
    assert len(runner._static) == DYNAMIC_AFTER_SHAPES + 1


@pytest.mark.parametrize("k", [2, 3])
def test_tiled_run_is_exact(weights, golden, k, tmp_path, monkeypatch):
    """Forced small tiles (sums0..3 passes, then the tile network) reproduce the golden maps;
    K = 3 is the stack's batch (the reference against two frames)."""
    monkeypatch.setenv("GACN_MODEL_CACHE", str(tmp_path))
    from engine import Fuser, preprocess
    name = "color_lytro_03"
    a, b, g_fused, g_d, g_m = golden(name)
    with Fuser("openvino", weights=weights, tile=208) as fuser:
        if k == 2:
            res = fuser.fuse(a, b, maps=True)
            report = metrics.golden_report(res.fused, res.decision, res.mask, g_fused, g_d, g_m)
            assert metrics.within(report, metrics.FP32), report
        else:
            pipe = fuser.pipeline
            lumas = [preprocess.luma(x)[None] for x in (a, b, b)]
            plan = pipe.plan(3, *a.shape[:2], 0)
            assert plan.side == 208
            _, m = pipe.maps(None, lumas, plan, decision=False)
            for j in range(2):
                assert np.percentile(np.abs(m[j].astype(np.float64) - g_m), 99.9) <= metrics.FP32.max_mask_p999


def test_auto_prefers_openvino_on_the_cpu(monkeypatch):
    monkeypatch.setattr(base, "_cuda_torch_available", lambda: False)
    assert base.resolve_backend("auto") == "openvino"
    assert base.available_backends()[:2] == ["openvino", "onnxruntime"]
    real = base._installed
    monkeypatch.setattr(base, "_installed", lambda m: False if m == "openvino" else real(m))
    assert base.resolve_backend("auto") == "onnxruntime"
    assert "openvino" not in base.available_backends()


def test_threads_reach_the_runtime(params, tmp_path):
    r = make(params, tmp_path, threads=1)
    r.infer(SMALL)
    assert [int(c.get_property("INFERENCE_NUM_THREADS")) for c in compiled_models(r)] == [1]


def test_cli_offers_openvino():
    from engine.cli import build_parser
    args = build_parser().parse_args(["a.png", "b.png", "-o", "f.png", "--backend", "openvino", "--threads", "2"])
    assert args.backend == "openvino" and args.threads == 2
