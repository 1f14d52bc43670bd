"""TensorRT: what runs here (no TensorRT in this workplace) and what needs TensorRT (skipped)."""
import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import REPO
from engine.backends.tensorrt import check_compatibility
from engine.errors import BackendError

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
needs_trt = pytest.mark.skipif(not HAS_TRT, reason="TensorRT is not installed here (NVIDIA's index is out of reach); "
                                                  "run on a machine with TensorRT 10/11 and a GPU")


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown when TensorRT is missing")
def test_build_engine_without_tensorrt_exits_2(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "export" / "build_engine.py"), "--onnx", str(tmp_path / "m.onnx"),
                        "-o", str(tmp_path / "e.plan")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "TensorRT is not installed" in r.stderr
    assert not (tmp_path / "e.plan").exists()


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown when TensorRT is missing")
def test_tensorrt_backend_without_tensorrt_is_a_clear_error(pair_paths, tmp_path, capsys):
    """An engine and its sidecar are there: what is missing is TensorRT, and the message says so."""
    from engine import Fuser
    from engine.cli import main
    plan = tmp_path / "e.plan"
    plan.write_bytes(b"\0" * 64)
    (tmp_path / "e.plan.json").write_text(json.dumps(META))
    rc = main([*map(str, pair_paths), "-o", str(tmp_path / "o.png"), "--backend", "tensorrt",
               "--engine", str(plan), "-q"])   # no --weights: a plan holds its weights (refused: test_options.py)
    err = capsys.readouterr().err
    assert rc == 2 and not (tmp_path / "o.png").exists()
    assert err.count("\n") == 1 and err.startswith("gacn-fuse: error: TensorRT is not installed"), err
    assert "--backend torch-cuda or onnxruntime" in err, err
    with pytest.raises(BackendError, match="^TensorRT is not installed"):
        Fuser(engine=plan)  # auto picks tensorrt for an engine


@pytest.fixture()
def pair_paths(data_dir):
    return data_dir / "pairs" / "color_tid_t5_1.png", data_dir / "pairs" / "color_tid_t5_2.png"


def test_build_engine_imports_without_tensorrt():
    sys.path.insert(0, str(REPO))
    import engine.export.build_engine as be
    assert be.parse_hw("1080x1920") == (1080, 1920)
    with pytest.raises(Exception):
        be.parse_hw("1080")


META = {"tensorrt_version": "10.13.2", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0",
        "hardware_compatibility": "none"}


def test_engine_for_this_machine_passes():
    check_compatibility(META, "10.13.2", "NVIDIA H100 80GB HBM3", "9.0")


@pytest.mark.parametrize("trt_version, cc, words", [
    ("10.14.1", "9.0", "built with TensorRT 10.13.2, running 10.14.1"),
    ("10.13.2", "8.9", "built for compute capability 9.0"),
])
def test_engine_for_another_machine_is_refused(trt_version, cc, words):
    with pytest.raises(BackendError, match=words):
        check_compatibility(META, trt_version, "NVIDIA L4", cc)


def test_hardware_compatible_engine():
    meta = {**META, "hardware_compatibility": "ampere+"}
    check_compatibility(meta, "10.13.2", "NVIDIA A100", "8.0")
    with pytest.raises(BackendError, match="Ampere and newer"):
        check_compatibility(meta, "10.13.2", "Tesla T4", "7.5")


def test_onnx_for_build_must_be_the_plugin_graph(params, tmp_path):
    import engine.export.build_engine as be
    from engine.errors import GacnError
    from engine.onnx_graph import build_model
    p = tmp_path / "portable.onnx"
    p.write_bytes(build_model(params).SerializeToString())
    with pytest.raises(GacnError, match="--plugins"):
        be.onnx_metadata(p)
    q = tmp_path / "plugins.onnx"
    q.write_bytes(build_model(params, plugins=True, fp16=True).SerializeToString())
    assert be.onnx_metadata(q)["gacn.precision"] == "fp16"


@needs_trt
def test_fp16_engine_matches_golden(params, tmp_path, golden):
    """Build the FP16 plugin engine and hold it to the FP16 tolerances on every golden pair."""
    from conftest import golden_names
    from engine import Fuser
    from engine.testing import metrics
    from engine.onnx_graph import build_model
    onnx_path, plan = tmp_path / "g.onnx", tmp_path / "g.plan"
    onnx_path.write_bytes(build_model(params, plugins=True, fp16=True).SerializeToString())
    r = subprocess.run([sys.executable, str(REPO / "export" / "build_engine.py"), "--onnx", str(onnx_path), "-o", str(plan),
                        "--max", "1080x1920", "--opt", "520x520"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "g.plan.json").read_text())["precision"] == "fp16"
    with Fuser("tensorrt", engine=plan) as f:
        for name in golden_names():
            a, b, gf, gd, gm = golden(name)
            res = f.fuse(a, b, maps=True)
            rep = metrics.golden_report(res.fused, res.decision, res.mask, gf, gd, gm)
            assert metrics.within(rep, metrics.FP16), (name, rep)


# -- the plan's shape policy (engine/backends/shape_cache.py), on fakes: no TensorRT or GPU needed ------
class _FakeEngine:
    """The TensorRT 10/11 ICudaEngine calls _Plan makes, for a whole-frame plan."""
    num_io_tensors = 3

    def __init__(self, log):
        self.log = log

    def get_tensor_name(self, i):
        return ("luma", "decision", "mask")[i]

    def get_tensor_dtype(self, name):
        return "float32"

    def get_tensor_profile_shape(self, name, profile):
        return [(2, 1, 8, 8), (2, 1, 64, 64), (3, 1, 512, 512)]

    def create_execution_context(self):
        return _FakeContext(self.log)


class _FakeContext:
    def __init__(self, log):
        self.log, self.shape, self.capturing = log, None, False

    def set_input_shape(self, name, shape):
        self.shape = shape
        return True

    def set_tensor_address(self, name, ptr):
        return True

    def execute_async_v3(self, stream):
        self.log.append(("capture" if self.capturing else "run", self.shape[2:]))
        return True


def _fake_plan(monkeypatch, fake, graphs_made):
    from types import SimpleNamespace
    import engine.backends.tensorrt as T
    log = []

    class Graph:
        def __init__(self, stream, enqueue):
            plan.context.capturing = True
            try:
                enqueue()
            finally:
                plan.context.capturing = False
            self.shape, self.closed = plan.context.shape[2:], False
            graphs_made.append(self)

        def launch(self, stream):
            assert not self.closed
            log.append(("replay", self.shape))

        def close(self):
            self.closed = True
    monkeypatch.setattr(T, "import_tensorrt", lambda: SimpleNamespace(float32="float32"))
    monkeypatch.setattr(T, "cuda", SimpleNamespace(DeviceBuffer=fake.DeviceBuffer, Graph=Graph))
    runtime = SimpleNamespace(deserialize_cuda_engine=lambda data: _FakeEngine(log))
    path = SimpleNamespace(read_bytes=lambda: b"", __str__=lambda self: "fake.plan")
    plan = T._Plan(runtime, path, {"luma"}, {"decision", "mask"})
    return plan, log


@pytest.fixture()
def trt_plan(monkeypatch):
    """(plan, log of its context's runs, graphs made, the fake CUDA) for a fake whole-frame plan."""
    from fake_cuda import FakeCuda
    fake, graphs = FakeCuda(), []
    plan, log = _fake_plan(monkeypatch, fake, graphs)
    yield plan, log, graphs, fake
    plan.close()


def _run(plan, side, times=1):
    for _ in range(times):
        plan.bind(2, side, side)
        plan.enqueue(0)


def test_tensorrt_plan_runs_eager_then_captures_then_replays(trt_plan):
    plan, log, graphs, fake = trt_plan
    _run(plan, 64, 4)
    # one plain run per shape before its capture (TensorRT's rule after a shape change), then replays
    assert log == [("run", (64, 64)), ("run", (64, 64)), ("capture", (64, 64)), ("replay", (64, 64)),
                   ("replay", (64, 64))]
    plan.close()
    assert fake.allocated == 0 and all(g.closed for g in graphs)


def test_tensorrt_plan_keeps_a_bounded_lru_of_graphs(trt_plan):
    """Every shape met twice used to keep its graph for ever; now the SHAPES_KEPT most recently
    used stay and an evicted one is closed."""
    from engine.backends.shape_cache import SHAPES_KEPT
    plan, log, graphs, fake = trt_plan
    _run(plan, 64)                      # the largest shape first: the buffers never grow after it
    for side in range(8, 8 + 3 * SHAPES_KEPT):
        _run(plan, side, 2)
    assert len(graphs) == 3 * SHAPES_KEPT
    assert sum(not g.closed for g in graphs) == len(plan.graphs) == SHAPES_KEPT   # the old dict: 24 open


def test_tensorrt_plan_starts_over_when_its_buffers_grow(trt_plan):
    """Larger buffers move the addresses a graph captured: its graphs are closed, shapes run eagerly again."""
    plan, log, graphs, fake = trt_plan
    _run(plan, 16, 2)
    plan.bind(2, 64, 64)                 # grows every buffer
    assert graphs[0].closed
    plan.enqueue(0)
    log.clear()
    _run(plan, 16)
    assert log == [("run", (16, 16))]


def test_plan_sidecar_schema_round_trip_and_refusals(tmp_path):
    """One schema for the builder and the runner: what one writes the other reads, and a file
    that is not a builder's sidecar is refused with a message, not a KeyError."""
    from engine.backends.plan_sidecar import PlanSidecar
    tile = PlanSidecar(**META, variant="tile", tile=1024, sums_plans=[f"e.plan.sums{k}.plan" for k in range(4)],
                       cse_fc=[[[0.0]], [[0.0]]] * 2, precision="fp16")
    assert PlanSidecar.from_json(tile.to_json()) == tile
    (tmp_path / "e.plan.json").write_text(tile.to_json())
    assert PlanSidecar.read(tmp_path / "e.plan").tile == 1024
    for bad, words in (({k: v for k, v in META.items() if k != "gpu"}, "no gpu"),
                       ({**META, "variant": "tile"}, "a tile bundle needs"),
                       ({**META, "variant": "slices"}, "variant is 'slices'"),
                       ([1, 2], "not an object")):
        (tmp_path / "e.plan.json").write_text(json.dumps(bad))
        with pytest.raises(BackendError, match=words):
            PlanSidecar.read(tmp_path / "e.plan")
    (tmp_path / "e.plan.json").unlink()
    with pytest.raises(BackendError, match="missing; engines must be built with gacn-build-engine"):
        PlanSidecar.read(tmp_path / "e.plan")
