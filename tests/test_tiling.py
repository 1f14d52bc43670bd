"""Exact tiled execution (engine.tiling, engine.pipeline): the plan, the receptive field it is
built on, tiles against whole frames, memory planning and its refusals."""
import numpy as np
import pytest

from conftest import golden_names
from engine import preprocess
from engine.testing import metrics
from engine.errors import InputError
from engine.spec import HALO
from engine.tiling import MIN_TILE, SUMS_HALO, Tile, _spans, check_tile, plan, window_shape


@pytest.mark.parametrize("n", [8, 70, 77, 78, 129, 520, 1201, 6000])
@pytest.mark.parametrize("side, halo", [(MIN_TILE, HALO), (128, HALO), (656, HALO), (128, SUMS_HALO)])
def test_spans_partition_with_one_window_length_and_full_overlap(n, side, halo):
    spans = _spans(n, side, halo)
    covered = [i for c0, c1, _, _ in spans for i in range(c0, c1)]
    assert covered == list(range(n))                       # cores partition the axis
    lengths = {w1 - w0 for *_, w0, w1 in spans}
    assert len(lengths) == 1 and lengths.pop() <= min(side, n)
    for c0, c1, w0, w1 in spans:                           # a window edge is the frame's edge or >= halo away
        assert 0 <= w0 <= c0 and c1 <= w1 <= n
        assert w0 == 0 or c0 - w0 >= halo
        assert w1 == n or w1 - c1 >= halo


def test_plan_tiles_cover_the_frame_once():
    tiles = plan(333, 517, 128)
    count = np.zeros((333, 517), int)
    for t in tiles:
        ys, xs = t.core_slices
        count[ys, xs] += 1
        wy, wx = t.window_slices
        assert (wy.stop - wy.start, wx.stop - wx.start) == window_shape(333, 517, 128)
    assert (count == 1).all()


def test_tile_sides_below_the_overlap_are_refused():
    assert check_tile(None) is None and check_tile(0) == 0 and check_tile(MIN_TILE) == MIN_TILE
    with pytest.raises(InputError, match=f"at least {MIN_TILE} px"):
        check_tile(MIN_TILE - 1)


def test_halo_is_the_receptive_field_of_the_mask(torch_model):
    """HALO (engine.spec) is derived from the architecture; here the float64 reference shows it
    is exact and that one pixel less is not. Low-contrast sources keep the sigmoids away from
    saturation (which would hide the dependency): cutting the window HALO px left of and above a
    pixel leaves M there unchanged to float64 rounding; HALO - 1 px changes it by 1e-10."""
    import torch
    rng = np.random.default_rng(0)
    h = w = 110
    p = 55
    model = torch_model.double()
    try:
        y = torch.from_numpy(0.5 + 0.01 * rng.standard_normal((2, 1, h, w)))
        with torch.no_grad():
            cse = model.cse_scales(y)
            _, m_whole = model(y, cse)
            err = {}
            for halo in (HALO, HALO - 1):
                _, m_cut = model(y[:, :, p - halo:, p - halo:], cse)
                err[halo] = float((m_cut[0, 0, halo:, halo:] - m_whole[0, 0, p:, p:]).abs().max())
    finally:
        torch_model.float()
    assert err[HALO] < 1e-12, err
    assert err[HALO - 1] > 1e-11, err


@pytest.fixture(scope="module")
def tiled(weights):
    from engine import Fuser
    with Fuser("onnxruntime", weights=weights, tile=128) as f:
        yield f


def test_tiles_are_bit_identical_to_the_whole_frame_given_the_same_scales(ort_fuser, golden):
    """With the CSE scales fixed, a tile's core is the whole frame's computation: the same bits."""
    a, b, *_ = golden("color_tid_t5")
    pipe = ort_fuser.pipeline
    ex, ws = pipe.ex, pipe.ex.workspace()
    lumas = [preprocess.luma(a)[None], preprocess.luma(b)[None]]
    h, w = a.shape[:2]
    from engine.pipeline import Plan
    p = Plan(128, plan(h, w, 128), plan(h, w, 128, SUMS_HALO))
    cse = pipe.scales(ws, lumas, p)
    whole = [np.empty((1, h, w), np.float32) for _ in range(2)]
    ex.network(ws, lumas, [Tile((0, h, 0, w), (0, h, 0, w))], cse, *whole)
    d, m = np.empty((1, h, w), np.float32), np.empty((1, h, w), np.float32)
    ex.network(ws, lumas, p.tiles, cse, d, m)
    np.testing.assert_array_equal(d, whole[0])
    np.testing.assert_array_equal(m, whole[1])


@pytest.mark.parametrize("name", golden_names())
def test_golden_pairs_in_128px_tiles(name, tiled, ort_fuser, golden):
    a, b, gf, gd, gm = golden(name)
    res = tiled.fuse(a, b, maps=True)
    whole = ort_fuser.fuse(a, b, maps=True)
    assert np.mean((res.decision > 0.5) == (whole.decision > 0.5)) >= 0.99999
    assert np.percentile(np.abs(res.mask - whole.mask), 99.9) <= 1e-4
    rep = metrics.golden_report(res.fused, res.decision, res.mask, gf, gd, gm)
    assert metrics.within(rep, metrics.FP32), rep


def test_large_pair_in_128px_tiles_matches_the_whole_frame(weights, data_dir):
    """A 1600x1200 pair (two frames of the microscope stack) whole and in 128 px tiles."""
    from engine import Fuser
    from engine.imageio import read_image
    frames = sorted((data_dir / "stack9").glob("*.jpg"))
    a, b = read_image(frames[1]), read_image(frames[5])
    with Fuser("onnxruntime", weights=weights, tile=0, max_memory="16G") as f:
        whole = f.fuse(a, b, maps=True)
    with Fuser("onnxruntime", weights=weights, tile=128) as f:
        res = f.fuse(a, b, maps=True)
    assert np.mean((res.decision > 0.5) == (whole.decision > 0.5)) >= 0.99999
    assert np.percentile(np.abs(res.mask - whole.mask), 99.9) <= 1e-4


def test_the_wrong_scales_are_caught(tiled, ort_fuser, golden, monkeypatch):
    """Negative control: tiles with each tile's own CSE means (what naive tiling does) fail."""
    a, b, *_ = golden("color_lytro_01")
    whole = ort_fuser.fuse(a, b, maps=True)
    pipe = tiled.pipeline
    runner = pipe.ex.runner
    monkeypatch.setattr(runner, "infer", lambda luma, cse=None, _f=runner.infer: _f(luma))   # in-graph means per tile
    res = tiled.fuse(a, b, maps=True)
    assert np.percentile(np.abs(res.mask - whole.mask), 99.9) > 1e-4


class _Runner:
    """A runner stand-in for planning tests: 100 bytes per pixel and frame."""
    name, on_device, cse_weights, tile_side, max_frames, max_tile = "plan", False, [], None, None, None

    def __init__(self, refuse=None):
        self.refuse = refuse

    def memory(self, variant, frames, height, width):
        return 100 * frames * height * width

    def unsupported(self, variant, frames, height, width):
        return self.refuse(variant, frames, height, width) if self.refuse else None


class _Executor:
    def __init__(self, runner, available=None):
        self.runner, self._available = runner, available

    def budget(self):
        return 1 << 30

    def available(self):
        return self._available


def pipeline(runner=None, available=None, **options):
    from engine.pipeline import Pipeline
    return Pipeline(_Executor(runner or _Runner(), available), **options)


def test_whole_frames_when_they_fit_tiles_when_not():
    p = pipeline(max_memory="100M")
    assert p.plan(2, 400, 600, 0).side is None                       # 48 MB
    tiled = p.plan(2, 4000, 6000, 0)                                  # 4.8 GB whole
    assert tiled.side and tiled.estimate <= 100 << 20
    assert tiled.side == pipeline(max_memory="100M").plan(2, 4000, 6000, 0).side


def test_a_budget_too_small_for_one_tile_is_refused_with_the_numbers():
    with pytest.raises(InputError, match=r"too small for a 6000x4000 frame.*smallest tile"):
        pipeline(max_memory="1M").plan(2, 4000, 6000, 0)


def test_never_tiling_refuses_a_frame_over_the_budget():
    with pytest.raises(InputError, match=r"whole 6000x4000 frame needs about 4\.47 GiB.*drop --tile 0"):
        pipeline(max_memory="1G", tile=0).plan(2, 4000, 6000, 0)


def test_more_than_the_machine_has_is_refused_not_oom_killed():
    with pytest.raises(InputError, match="only 10.00 MiB is available"):
        pipeline(max_memory="64G", tile=0, available=10 << 20).plan(2, 400, 600, 0)


def test_outside_an_engine_profile_with_tiling_off_is_a_clear_error():
    def refuse(variant, frames, height, width):
        return "outside the engine's profile (256x256 to 1920x1080)" if width > 1920 else None
    with pytest.raises(InputError, match=r"3840x2160: outside the engine's profile.*tiling is off"):
        pipeline(_Runner(refuse), tile=0).plan(2, 2160, 3840, 0)
    assert pipeline(_Runner(refuse)).plan(2, 2160, 3840, 0).side is not None   # tiles instead


def test_runners_implement_the_contract_they_are_called_through(params):
    """By signature (tests/contracts.py), not isinstance: a runtime-checkable Protocol's isinstance
    checks only that the names exist."""
    import importlib.util
    from contracts import assert_implements
    from engine.backends.base import DeviceRunner, HostRunner
    from engine.backends.onnxruntime import OnnxRuntimeRunner
    from engine.backends.tensorrt import TensorRTRunner
    from engine.backends.torch_cuda import TorchCudaRunner
    assert_implements(OnnxRuntimeRunner(params=params), HostRunner)
    if importlib.util.find_spec("openvino") is not None:
        from engine.backends.openvino import OpenVinoRunner
        assert_implements(OpenVinoRunner(params=params), HostRunner)
    assert_implements(TorchCudaRunner(params), DeviceRunner)
    assert_implements(TensorRTRunner("missing.plan"), DeviceRunner)
    with pytest.raises(AssertionError, match="lacks DeviceRunner.bind"):
        assert_implements(OnnxRuntimeRunner(params=params), DeviceRunner)

    class WrongInfer(OnnxRuntimeRunner):      # negative control: isinstance accepts it, the signature check does not
        def infer(self, luma):
            return super().infer(luma)
    assert isinstance(WrongInfer(params=params), HostRunner)
    with pytest.raises(AssertionError, match="infer"):
        assert_implements(WrongInfer(params=params), HostRunner)


def test_no_import_cycles_and_the_runtime_never_imports_the_tools():
    """Imports of engine/ and export/ (at any level, function-local ones too) form no cycle; the runtime imports
    nothing of the tools (engine.export, engine.testing, the export/ scripts)."""
    import ast
    from conftest import REPO
    files = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
             for d in ("engine", "export") for p in (REPO / d).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("engine", "export"):
                subs = {f"{node.module}.{a.name}" for a in node.names} & files.keys()
                deps |= subs | ({node.module} if len(subs) < len(node.names) else set())
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names} & files.keys()
        graph[name] = deps & files.keys() - {name}
    tools = ("engine.export", "engine.testing", "export")
    assert any(m.startswith(tools[0]) for m in graph) and any(d.startswith(tools[0]) for ds in graph.values() for d in ds)
    assert not [(m, d) for m, ds in graph.items() for d in ds if not m.startswith(tools) and d.startswith(tools)]
    state = {}

    def visit(node, path):
        state[node] = "open"
        for dep in graph[node]:
            assert state.get(dep) != "open", "import cycle: " + " -> ".join(path + [dep])
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_tiled_pair_reports_every_planned_tile(tiled, golden):
    """The progress callback counts the tile runs the plan made: the sums passes (one per CSE
    block over the sums tiles) and the network over the tiles, one call each, then done."""
    a, b, *_ = golden("gray_mwg_clock")
    pipe = tiled.pipeline
    plans, plan_of, events = [], pipe.plan, []
    pipe.plan = lambda *args: plans.append(plan_of(*args)) or plans[-1]
    pipe.progress = lambda unit, done, total: events.append((unit, done, total))
    try:
        tiled.fuse(a, b)
    finally:
        del pipe.plan
        pipe.progress = None
    p, = plans
    planned = len(p.tiles) + len(pipe.ex.runner.cse_weights) * len(p.sums_tiles)
    assert p.side == 128 and len(p.tiles) > 4
    assert events == [("tiles", i, planned) for i in range(1, planned + 1)]
