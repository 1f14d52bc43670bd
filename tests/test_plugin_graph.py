"""The exact graph handed to TensorRT, executed on the CPU: ONNX Runtime with GACN's custom
operations backed by the CPU twin of the CUDA kernels, against the golden outputs."""
import numpy as np
import pytest

from conftest import golden_names
from engine import preprocess
from engine.testing import metrics

pytest.importorskip("onnxruntime_extensions")


@pytest.fixture(scope="module")
def session(params, cpu):
    from engine.testing.ort_plugins import plugin_session
    from engine.onnx_graph import build_model
    return plugin_session(build_model(params, plugins=True).SerializeToString())


@pytest.mark.parametrize("name", golden_names())
def test_fp32_plugin_graph_matches_golden(session, golden, name):
    from engine.testing.ort_plugins import run
    a, b, gf, gd, gm = golden(name)
    d, m = run(session, np.stack([preprocess.luma(a), preprocess.luma(b)])[:, None])
    d, m = d[0, 0], m[0, 0]
    rep = metrics.golden_report(preprocess.blend(a, b, m), d, m, gf, gd, gm)
    assert metrics.within(rep, metrics.FP32), rep


def test_plugin_graph_batches_frames(session, ort_fuser, golden):
    """K = 3 through the plugin graph equals the portable graph's K = 3 (broadcast reference)."""
    from engine.testing.ort_plugins import run
    a, b, *_ = golden(golden_names()[0])
    luma = np.stack([preprocess.luma(a), preprocess.luma(b), preprocess.luma(a[:, ::-1].copy())])[:, None]
    d, m = run(session, luma)
    d2, m2 = ort_fuser.pipeline.ex.runner.infer(luma)
    assert d.shape == d2.shape == (2, 1) + luma.shape[2:]
    assert np.mean((d > 0.5) == (d2 > 0.5)) > 0.9999
    assert np.percentile(np.abs(m - m2), 99.9) < 1e-3


@pytest.fixture(scope="module")
def tiled_plugin_graph(params, cpu):
    """The TensorRT tile bundle's graphs (tile network with plugins, float32 sums passes) behind
    the pipeline, in 128 px tiles."""
    from engine.host_executor import HostExecutor
    from engine.testing.ort_plugins import PluginGraphRunner
    from engine.pipeline import Pipeline
    pipe = Pipeline(HostExecutor(PluginGraphRunner(params)), tile=128)
    yield pipe
    pipe.close()


@pytest.mark.parametrize("name", ["color_tid_t5", "gray_mwg_clock"])
def test_tiled_plugin_graph_matches_golden(tiled_plugin_graph, golden, name):
    a, b, gf, gd, gm = golden(name)
    res = tiled_plugin_graph.fuse(a, b, maps=True)
    rep = metrics.golden_report(res.fused, res.decision, res.mask, gf, gd, gm)
    assert metrics.within(rep, metrics.FP32), rep
