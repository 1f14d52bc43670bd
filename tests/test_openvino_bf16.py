"""--precision bf16 on OpenVINO: the decision path in bfloat16 and nothing else (read back from
the compiled model's runtime graph), the sums passes in float32, a model that would run
features in bfloat16 refused, and the option refused where it does not apply (the golden
pairs within the float16 tolerances are in test_golden.py)."""
import numpy as np
import pytest

from engine.errors import BackendError, InputError

ov = pytest.importorskip("openvino", reason="openvino is not installed (pip install '.[openvino]')")

SMALL = np.random.default_rng(4).random((2, 1, 48, 40), dtype=np.float32)


@pytest.fixture()
def bf16_runner(params, tmp_path):
    from engine.backends.model_cache import ModelCache
    from engine.backends.openvino import OpenVinoRunner
    from engine.backends.openvino_bf16 import cpu_has_bf16
    if not cpu_has_bf16(ov.Core()):
        pytest.skip("this CPU has no bfloat16 instructions (AVX512_BF16/AMX): --precision bf16 is refused here")
    r = OpenVinoRunner(params=params, cache=ModelCache(tmp_path), precision="bf16", static="always")
    yield r
    r.deactivate()


def test_only_the_decision_path_runs_in_bf16(bf16_runner):
    from engine.backends.openvino_bf16 import runtime_precisions
    from engine.variants import DECISION_SCOPE
    bf16_runner.infer(SMALL)
    (compiled, _), = bf16_runner._static.values()
    nodes = runtime_precisions(compiled)
    inside = [prec for kind, prec, names in nodes if kind == "Convolution" and names[0].startswith(DECISION_SCOPE)]
    outside = [prec for kind, prec, names in nodes if not any(n.startswith(DECISION_SCOPE) for n in names)]
    assert len(inside) >= 12 and set(inside) == {"bf16"}      # 4 ConvBlocks, 5 gates of two passes
    assert len(outside) > 50 and set(outside) == {"f32"}      # features, CSE, activity, refinement


def test_tiled_run_within_fp16_tolerances(weights, golden, bf16_runner, tmp_path, monkeypatch):
    """Tiles (the sums passes in float32, the tile network with its given CSE scales) run the
    same split: a scale that ran in bfloat16 would be refused by the runtime-graph check."""
    monkeypatch.setenv("GACN_MODEL_CACHE", str(tmp_path))
    from engine import Fuser
    from engine.testing import metrics
    a, b, g_fused, g_d, g_m = golden("color_lytro_03")
    with Fuser("openvino", weights=weights, tile=208, precision="bf16") as fuser:
        res = fuser.fuse(a, b, maps=True)
    report = metrics.golden_report(res.fused, res.decision, res.mask, g_fused, g_d, g_m)
    assert metrics.within(report, metrics.FP16), report


def test_sums_passes_stay_float32(bf16_runner):
    bf16_runner.block_sums(1, SMALL, np.ones((2, 16, 1, 1), np.float32), np.ones(SMALL.shape[-1], np.float32))
    (compiled, _), = bf16_runner._static.values()
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32


def test_sums_passes_share_the_float32_cache_entries(bf16_runner, params):
    """A bf16 runner's sums passes compile exactly what the float32 runner compiles: one cache
    entry for both; its other variants are keyed apart (and by the bf16 marking's source)."""
    from engine.backends.openvino import OpenVinoRunner
    fp32 = OpenVinoRunner(params=params, cache=bf16_runner._cache, static="always")
    try:
        for r in (fp32, bf16_runner):
            r.activate()
        shapes = {"luma": list(SMALL.shape)}
        assert fp32._cache_path("sums1", 2, shapes) == bf16_runner._cache_path("sums1", 2, shapes)
        assert fp32._cache_path("whole", 2, shapes) != bf16_runner._cache_path("whole", 2, shapes)
    finally:
        fp32.deactivate()


def test_a_model_with_features_in_bf16_is_refused(params):
    """The negative control of the runtime check: without the marks, OpenVINO runs the feature
    convolutions in bfloat16 too."""
    from engine.backends.graphs import graph_bytes
    from engine.backends.openvino_bf16 import check_precisions, cpu_has_bf16
    core = ov.Core()
    if not cpu_has_bf16(core):
        pytest.skip("no bfloat16 on this CPU")
    model = core.read_model(graph_bytes(params, None, "whole", "openvino", 2), b"")
    model.reshape({"luma": list(SMALL.shape)})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    with pytest.raises(BackendError, match="outside the decision path"):
        check_precisions(compiled)


def test_a_cpu_without_bf16_is_refused(params, tmp_path, monkeypatch):
    from engine.backends import openvino_bf16
    from engine.backends.model_cache import ModelCache
    from engine.backends.openvino import OpenVinoRunner
    monkeypatch.setattr(openvino_bf16, "cpu_has_bf16", lambda core: False)
    r = OpenVinoRunner(params=params, cache=ModelCache(tmp_path), precision="bf16")
    with pytest.raises(BackendError, match="bfloat16 instructions"):
        r.infer(SMALL)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch-cuda", "tensorrt"])
def test_bf16_is_refused_off_openvino(backend):
    from engine.backends.base import create_runner
    with pytest.raises(InputError, match=f"precision='bf16' does not apply to the {backend} backend.*bf16 applies to openvino"):
        create_runner(backend, params={}, precision="bf16")


def test_cli_refuses_bf16_on_another_backend(data_dir, tmp_path, weights, capsys):
    from engine.cli import main
    a, b = (data_dir / "pairs" / f"color_tid_t5_{i}.png" for i in (1, 2))
    rc = main([str(a), str(b), "-o", str(tmp_path / "f.png"), "--weights", str(weights),
               "--backend", "onnxruntime", "--precision", "bf16"])
    assert rc == 2 and "--precision bf16 does not apply to the onnxruntime backend" in capsys.readouterr().err
    assert not (tmp_path / "f.png").exists()
