"""The compiled-model cache: a second start builds no graph, a corrupt entry is rebuilt, keys
separate what must not be shared, and a cache that cannot be written never fails a run."""
import logging

import numpy as np
import pytest

from engine.backends.model_cache import MAGIC, ModelCache, params_digest

RUNNERS = ["onnxruntime", "openvino"]


def make_runner(backend, params, cache):
    if backend == "openvino":
        pytest.importorskip("openvino", reason="openvino is not installed")
        from engine.backends.openvino import OpenVinoRunner
        return OpenVinoRunner(params=params, cache=cache, threads=1)
    from engine.backends.onnxruntime import OnnxRuntimeRunner
    return OnnxRuntimeRunner(params=params, cache=cache, threads=1, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def luma():
    rng = np.random.default_rng(3)
    return rng.random((2, 1, 40, 48), dtype=np.float32)


def no_graph_building(monkeypatch):
    import engine.onnx_graph

    def refuse(*a, **k):
        raise AssertionError("the graph was built although the cache holds it")
    monkeypatch.setattr(engine.onnx_graph, "build_model", refuse)


def entries(root):
    return sorted(p for p in root.iterdir() if p.suffix == ".bin")


@pytest.mark.parametrize("backend", RUNNERS)
def test_second_start_builds_no_graph(backend, params, luma, tmp_path, monkeypatch):
    first = make_runner(backend, params, ModelCache(tmp_path))
    first.activate()
    d1, m1 = first.infer(luma)
    first.deactivate()
    assert entries(tmp_path), "nothing was cached"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")], "a temporary file was left behind"
    no_graph_building(monkeypatch)
    second = make_runner(backend, params, ModelCache(tmp_path))
    second.activate()
    d2, m2 = second.infer(luma)
    np.testing.assert_array_equal(d1, d2)
    np.testing.assert_array_equal(m1, m2)


@pytest.mark.parametrize("backend", RUNNERS)
@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupt_entry_is_rebuilt(backend, damage, params, luma, tmp_path, caplog):
    first = make_runner(backend, params, ModelCache(tmp_path))
    first.activate()
    d1, _ = first.infer(luma)
    first.deactivate()
    for path in entries(tmp_path):
        data = bytearray(path.read_bytes())
        if damage == "truncate":
            data = data[: len(data) // 2]
        elif damage == "flip":
            data[len(data) // 2] ^= 0xFF
        else:
            data = bytearray(b"not a model at all")
        path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="engine.backends.model_cache"):
        second = make_runner(backend, params, ModelCache(tmp_path))
        second.activate()
        d2, _ = second.infer(luma)
    np.testing.assert_array_equal(d1, d2)
    assert "corrupt" in caplog.text
    for path in entries(tmp_path):  # rebuilt: valid again
        assert ModelCache(tmp_path).load(path) is not None


def test_entry_with_valid_checksum_but_unusable_payload_is_rebuilt(params, luma, tmp_path, caplog):
    """A blob that passes the checksum but the runtime cannot load (another build of it)."""
    import hashlib
    first = make_runner("onnxruntime", params, ModelCache(tmp_path))
    first.activate()
    d1, _ = first.infer(luma)
    for path in entries(tmp_path):
        payload = b"\x00garbage onnx"
        path.write_bytes(MAGIC + hashlib.sha256(payload).digest() + payload)
    with caplog.at_level(logging.WARNING, logger="engine.backends.model_cache"):
        second = make_runner("onnxruntime", params, ModelCache(tmp_path))
        d2, _ = second.infer(luma)
    np.testing.assert_array_equal(d1, d2)
    assert "not loadable" in caplog.text


def test_keys_follow_the_parameters(params, tmp_path):
    other = dict(params)
    name = "decision_path_conv4.decision_path_conv4_Conv2d.bias"
    other[name] = params[name] + np.float32(1e-3)
    assert params_digest(other) != params_digest(params)
    cache = ModelCache(tmp_path)
    key = {"params_sha256": params_digest(params), "variant": "whole"}
    assert cache.path("openvino", "whole", key) != cache.path("openvino", "whole", {**key, "params_sha256": params_digest(other)})
    assert cache.path("openvino", "whole", key) != cache.path("onnxruntime", "whole", key)
    assert cache.path("openvino", "whole", key) == ModelCache(tmp_path).path("openvino", "whole", dict(key))


def test_unwritable_cache_never_fails_a_run(params, luma, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    with caplog.at_level(logging.WARNING, logger="engine.backends.model_cache"):
        runner = make_runner("onnxruntime", params, ModelCache(blocker / "models"))
        d, m = runner.infer(luma)
    assert d.shape == (1, 1, 40, 48) and np.isfinite(m).all()
    assert "cannot write" in caplog.text


def test_disabled_cache_writes_nothing(params, luma, tmp_path, monkeypatch):
    monkeypatch.setenv("GACN_NO_MODEL_CACHE", "1")
    runner = make_runner("onnxruntime", params, ModelCache(tmp_path))
    runner.infer(luma)
    assert not list(tmp_path.iterdir())


def test_invalidation_follows_the_graph_builders_imports():
    """The fingerprint covers the builder and every engine module it imports (found from the
    modules, not a list of file names), and a missing source is an error, not a silent skip."""
    import importlib.machinery
    import importlib.util

    from engine.backends import model_cache as mc
    names = {p.name for p in mc.graph_sources()}
    assert {"onnx_graph.py", "spec.py", "folding.py"} <= names, names   # spec: constants and key names
    with pytest.raises(RuntimeError, match="engine.no_such_module"):
        mc.module_source("engine.no_such_module")
    spec = importlib.util.find_spec("engine.spec")
    gone = importlib.machinery.ModuleSpec("engine.spec", None, origin=spec.origin + ".moved")
    real = importlib.util.find_spec
    try:
        importlib.util.find_spec = lambda name, *a: gone if name == "engine.spec" else real(name, *a)
        with pytest.raises(RuntimeError, match=r"engine.spec .*spec.py.moved\) is missing"):
            mc.graph_sources()
    finally:
        importlib.util.find_spec = real
