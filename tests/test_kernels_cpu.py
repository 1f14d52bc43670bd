"""The kernels' arithmetic without a GPU.

- libgacn_kernels_cpu (the C ABI on the host, built from the same gacn_math.h as the CUDA
  kernels) against the PyTorch model of engine/export/model.py: float64 references computed from the
  very inputs the library sees (FP16-rounded where the I/O is FP16), with error bounds derived
  from FP32 rounding, on random inputs, odd sizes and borders, and on real intermediate tensors
  of the network run on a golden pair.
- libgacn_kernels_emu (the CUDA sources themselves, run on the host by kernels/emu/) against the
  CPU library (bit for bit where the summation order is shared) and the float64 references:
  tiling, halos, vector paths and barriers of the real kernels.
"""
from __future__ import annotations


import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from engine import kernels as K  # noqa: E402
from engine.testing import kernels as TK  # noqa: E402
from engine import preprocess  # noqa: E402
from engine.errors import BackendError  # noqa: E402
from engine.stack import Calibration  # noqa: E402
from engine.export import model as M  # noqa: E402

EPS32 = 2.0 ** -24  # unit roundoff of float32


@pytest.fixture(scope="session")
def emu(cpu) -> K.KernelLibrary:
    try:
        lib = K.KernelLibrary.load("emu")
    except BackendError as e:  # the build exists but was configured with -DGACN_BUILD_EMU=OFF
        pytest.skip(f"kernel emulator library not built: {e}")
    assert lib.backend == "cuda-emu" and lib.abi_version == 3
    return lib


def t64(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def to_nchw(a: np.ndarray, layout: str) -> np.ndarray:
    return a if layout == "NCHW" else a.transpose(0, 3, 1, 2)


def from_nchw(a: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(a if layout == "NCHW" else a.transpose(0, 2, 3, 1))


def nan_like(a: np.ndarray) -> np.ndarray:
    return np.full(a.shape, np.nan, a.dtype)


def out_rounding(ref: np.ndarray, dtype) -> np.ndarray:
    """Half an ulp of the output type at |ref| (plus the subnormal spacing for FP16)."""
    if np.dtype(dtype) == np.float16:
        return np.abs(ref) * 2.0 ** -11 + 2.0 ** -24
    return np.abs(ref) * 2.0 ** -23 + 1e-45


# ---- references (float64 PyTorch, engine/export/model.py) -------------------------------------------
def ref_activity(fa: np.ndarray, fb: np.ndarray):
    """Bm and the bound on |Bm - Bm64| of an FP32 evaluation (fa, fb NCHW, any float dtype)."""
    ga, gb = M.squared_gradient(t64(fa)), M.squared_gradient(t64(fb))
    s = M.box_sum(ga - gb, M.ACTIVITY_RADIUS)
    s_abs = M.box_sum(ga + gb, M.ACTIVITY_RADIUS)  # sum of |terms|: the scale of S's rounding error
    bm = torch.sigmoid(M.SHARPNESS * s)
    # FP32: ~3 roundings per G, 121 + 1 sums and the product by 1000; sigmoid' <= 1/4.
    tol_s = 64 * EPS32 * s_abs + 1e-30
    tol = 0.25 * M.SHARPNESS * tol_s + 0.25 * (M.SHARPNESS * s).abs() * 2 * EPS32
    return bm.numpy(), tol.numpy()


def check_activity(bm: np.ndarray, fa: np.ndarray, fb: np.ndarray) -> None:
    ref, tol = ref_activity(fa, fb)
    err = np.abs(bm.astype(np.float64) - ref)
    bad = err > tol + out_rounding(ref, bm.dtype) + 1e-7
    assert not np.isnan(bm).any(), "unwritten (NaN) outputs"
    assert not bad.any(), f"{bad.sum()} of {bad.size} Bm values off, worst {err.max():.3g} (tol {tol.ravel()[err.argmax()]:.3g})"


def ref_gate(x: np.ndarray, weight: np.ndarray, bn, relu: bool):
    """y64 and its FP32 error bound; x NCHW (its own dtype's values), weight [C,7,7], bn [2,C] or None."""
    u = t64(x)
    if relu:
        u = u.clamp_min(0)
    mag = u.abs()  # the size u's rounding error scales with: |relu(x) * scale| + |shift| with BN
    if bn is not None:
        scale, shift = t64(bn[0])[:, None, None], t64(bn[1])[:, None, None]
        mag = (u * scale).abs() + shift.abs()
        u = u * scale + shift
    w = t64(weight)[None]
    logit = F.conv2d(u, w, padding=3)
    labs = F.conv2d(mag, w.abs(), padding=3)
    y = u * torch.sigmoid(logit)
    # FP32 (c, dy, dx)-ordered sums of 49 C products: worst-case relative n*eps, in practice far
    # less; 2e-5 of sum|w u| is > 100 times the typical error and below any indexing mistake.
    tol_logit = 2e-5 * labs + 1e-7
    tol = u.abs() * 0.25 * tol_logit + mag * 4 * EPS32
    return y.numpy(), tol.numpy()


def check_gate(y: np.ndarray, x: np.ndarray, weight, bn, relu, layout: str = "NCHW") -> None:
    ref, tol = ref_gate(to_nchw(x, layout), weight, bn, relu)
    y = to_nchw(y, layout).astype(np.float64)
    err = np.abs(y - ref)
    bad = err > tol + out_rounding(ref, x.dtype)
    assert not np.isnan(y).any(), "unwritten (NaN) outputs"
    assert not bad.any(), f"{bad.sum()} of {bad.size} gate outputs off, worst {err.max():.3g}"


def ref_refine(d4: np.ndarray, ya: np.ndarray, yb: np.ndarray):
    """(D, M, Bl) of engine/export/model.py in float64 with the exact float64 Gaussian taps."""
    model = M.GACN()
    model.gauss = torch.from_numpy(M.gaussian_taps())
    d, m = model.boundary_refine(t64(d4), t64(ya), t64(yb))
    g = model.gauss
    bl = F.conv2d(F.conv2d(d, g.view(1, 1, 1, -1), padding=(0, 4)), g.view(1, 1, -1, 1), padding=(4, 0))
    return d.numpy(), m.numpy(), bl.numpy()


def check_refine(d: np.ndarray, m: np.ndarray, d4, ya, yb, tol_m: float = 2e-6) -> None:
    d_ref, m_ref, bl = ref_refine(d4, ya, yb)
    t = np.abs(M.SHARPNESS * d4.astype(np.float64))
    assert not (np.isnan(d).any() or np.isnan(m).any()), "unwritten (NaN) outputs"
    d_err = np.abs(d - d_ref)
    assert (d_err <= 0.25 * t * 4 * EPS32 + 2 * EPS32).all(), f"D off by {d_err.max():.3g}"
    # The thresholds Bl > 0.8 and Bl < 0.1 are discontinuous: where Bl is within float32
    # rounding of them, float32 and float64 may rightly disagree.
    ambiguous = (np.abs(bl - M.THRESH_HIGH) < 1e-6) | (np.abs(bl - M.THRESH_LOW) < 1e-6)
    assert ambiguous.mean() < 1e-3
    m_err = np.where(ambiguous, 0.0, np.abs(m - m_ref))
    assert m_err.max() <= tol_m, f"M off by {m_err.max():.3g} at {np.unravel_index(m_err.argmax(), m.shape)}"


def random_features(rng, n, c, h, w, dtype, scale=0.1):
    return (rng.standard_normal((n, c, h, w)) * scale).astype(dtype)


def random_gate_params(rng, c, bn: bool):
    weight = (rng.standard_normal((c, 7, 7)) * 0.3 / np.sqrt(c)).astype(np.float32)
    bnp = np.stack([rng.uniform(-1.5, 2.0, c), rng.standard_normal(c) * 0.2]).astype(np.float32) if bn else None
    return weight, bnp


def random_refine_inputs(rng, n, na, h, w, dtype=np.float32):
    # Smooth random d4 so that D has both flat regions and transitions (the boundary band).
    base = rng.standard_normal((n, 1, h // 4 + 2, w // 4 + 2))
    d4 = F.interpolate(torch.from_numpy(base), size=(h, w), mode="bilinear", align_corners=False).numpy()
    d4 = (d4 * 0.004 + rng.standard_normal((n, 1, h, w)) * 0.0005).astype(dtype)
    return d4, rng.random((na, 1, h, w)).astype(np.float32), rng.random((n, 1, h, w)).astype(np.float32)


# ---- library identity and argument checks ------------------------------------------------------------
def test_identity(cpu):
    assert (cpu.backend, cpu.abi_version) == ("cpu", 3)
    assert K.find_library("cpu").name == "libgacn_kernels_cpu.so"


def test_missing_library_says_how_to_build(monkeypatch, tmp_path):
    monkeypatch.setenv("GACN_KERNELS_DIR", str(tmp_path))
    monkeypatch.setattr(K, "REPO_ROOT", tmp_path)
    with pytest.raises(BackendError, match="cmake -S . -B build"):
        K.find_library("cuda")


@pytest.mark.parametrize("kind", ["cpu", "emu"])
def test_invalid_arguments_are_rejected(kind, request):
    lib = request.getfixturevalue(kind)
    buf = np.zeros(4096, np.float32)
    p = buf.ctypes.data
    bad_calls = [
        ("activity", (p, p, p, 1, 1, 4, 8, 8, 2, 0)),        # dtype
        ("activity", (p, p, p, 1, 1, 4, 8, 8, 0, 2)),        # layout
        ("activity", (p, p, p, 2, 3, 4, 8, 8, 0, 0)),        # na not in {1, n}
        ("activity", (0, p, p, 1, 1, 4, 8, 8, 0, 0)),        # NULL
        ("activity", (p, p, p, 1, 1, 0, 8, 8, 0, 0)),        # C = 0
        ("spatial_gate", (p, p, 0, 1, p, 1, 4, 8, 8, 0, 0)),  # y aliases x
        ("boundary_refine", (p, p, p, p + 4, p + 8, 1, 1, 7, 8, 0)),  # H < 8
        ("luma", (p, p, 1, 8, 8, 2, 8, 0)),                  # 2 channels
        ("luma", (p, p, 1, 8, 8, 3, 12, 0)),                 # 12 bits
        ("blend", (p, p, p, p, 2, 3, 8, 8, 3, 8)),           # na
        ("stack_next", (p, p, 1, p, p, p, p, 8, 8, 3, 8)),   # i < 2
    ]
    for name, args in bad_calls:
        with pytest.raises(BackendError, match="invalid arguments"):
            getattr(lib, name)(*args)


# ---- spec section 4: activity --------------------------------------------------------------------------
ACT_SHAPES = [  # n, na, c, h, w: windows clipped on all sides, odd sizes, 1 x W and H x 1
    (1, 1, 1, 1, 1), (2, 1, 2, 1, 17), (1, 1, 3, 19, 1), (2, 1, 3, 9, 13), (2, 2, 5, 8, 8), (1, 1, 16, 23, 31),
]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", ACT_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_activity_random(cpu, shape, dtype, layout):
    n, na, c, h, w = shape
    rng = np.random.default_rng(sum(shape))
    fa, fb = random_features(rng, na, c, h, w, dtype), random_features(rng, n, c, h, w, dtype)
    bm = TK.cpu_activity(from_nchw(fa, layout), from_nchw(fb, layout), layout, lib=cpu)
    check_activity(to_nchw(bm, layout), fa, fb)
    assert bm.dtype == dtype


def test_activity_large_sums_stay_float32(cpu):
    """FP16 features whose 11x11 sums exceed FP16's range (the reason for this kernel)."""
    rng = np.random.default_rng(7)
    fa = (rng.standard_normal((1, 2, 24, 24)) * 40).astype(np.float16)
    fb = (rng.standard_normal((1, 2, 24, 24)) * 40).astype(np.float16)
    assert M.box_sum(M.squared_gradient(t64(fa)), 5).max() > 65504
    check_activity(TK.cpu_activity(fa, fb, lib=cpu), fa, fb)


def test_activity_check_can_fail(cpu):
    """The Bm comparison rejects a box of the wrong size and a swapped A/B."""
    rng = np.random.default_rng(8)
    fa, fb = random_features(rng, 1, 4, 20, 20, np.float32), random_features(rng, 1, 4, 20, 20, np.float32)
    bm = TK.cpu_activity(fa, fb, lib=cpu)
    with pytest.raises(AssertionError):
        check_activity(bm, fb, fa)
    wrong = torch.sigmoid(M.SHARPNESS * M.box_sum(M.squared_gradient(t64(fa)) - M.squared_gradient(t64(fb)), 4))
    with pytest.raises(AssertionError):
        check_activity(wrong.numpy(), fa, fb)


# ---- spec sections 2 and 5: spatial gate ------------------------------------------------------------------
GATE_CASES = [  # c, h, w
    (1, 9, 13), (1, 1, 17), (16, 8, 8), (16, 13, 61), (64, 14, 20), (64, 1, 5), (3, 5, 1),
]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("relu,bn", [(False, False), (True, False), (True, True), (False, True)])
@pytest.mark.parametrize("case", GATE_CASES, ids=lambda s: "x".join(map(str, s)))
def test_spatial_gate_random(cpu, case, relu, bn, dtype, layout):
    c, h, w = case
    rng = np.random.default_rng(c * 1000 + h * w)
    x = random_features(rng, 2, c, h, w, dtype, scale=1.0)
    weight, bnp = random_gate_params(rng, c, bn)
    y = TK.cpu_spatial_gate(from_nchw(x, layout), weight, bnp, relu, layout, lib=cpu)
    check_gate(to_nchw(y, layout), x, weight, bnp, relu)


def test_spatial_gate_check_can_fail(cpu):
    rng = np.random.default_rng(9)
    x = random_features(rng, 1, 16, 12, 12, np.float32, scale=1.0)
    weight, _ = random_gate_params(rng, 16, False)
    y = TK.cpu_spatial_gate(x, weight, lib=cpu)
    with pytest.raises(AssertionError):
        check_gate(y, x, np.ascontiguousarray(weight.transpose(0, 2, 1)), None, False)  # dy and dx swapped
    with pytest.raises(AssertionError):
        check_gate(y, x, weight, None, True)


def test_fp16_conversions_exhaustive(cpu):
    """Every finite FP16 value through u -> float32 -> u * 0.5 -> FP16 (zero weights: gate 1/2)."""
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    x = bits.view(np.float16)
    x = x[np.isfinite(x)].reshape(1, 1, 1, -1)
    y = TK.cpu_spatial_gate(x, np.zeros((1, 7, 7), np.float32), lib=cpu)
    want = (x.astype(np.float32) * np.float32(0.5)).astype(np.float16)
    np.testing.assert_array_equal(y.view(np.uint16), want.view(np.uint16))


# ---- spec sections 5-6: boundary refine ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(1, 1, 8, 8), (2, 1, 9, 13), (2, 2, 37, 45), (1, 1, 70, 33)],
                         ids=lambda s: "x".join(map(str, s)))
def test_boundary_refine_random(cpu, shape, dtype):
    n, na, h, w = shape
    rng = np.random.default_rng(h * w)
    d4, ya, yb = random_refine_inputs(rng, n, na, h, w, dtype)
    out = (np.full((n, 1, h, w), np.nan, np.float32), np.full((n, 1, h, w), np.nan, np.float32))
    d, m = TK.cpu_boundary_refine(d4, ya, yb, out=out, lib=cpu)
    assert d is out[0] and m is out[1]
    assert 0.05 < (d > 0.5).mean() < 0.95, "the random decision map should have a boundary"
    check_refine(d, m, d4, ya, yb)


def test_boundary_refine_check_can_fail(cpu):
    """A guided filter with unclipped (zero-padded) means differs at the borders and is caught."""
    rng = np.random.default_rng(10)
    d4, ya, yb = random_refine_inputs(rng, 1, 1, 24, 24)
    d, m = TK.cpu_boundary_refine(d4, ya, yb, lib=cpu)
    check_refine(d, m, d4, ya, yb)
    m_bad = m.copy()
    m_bad[..., 0, :] += 1e-4
    with pytest.raises(AssertionError):
        check_refine(d, m_bad, d4, ya, yb)


def test_gaussian_taps_match_the_model(cpu):
    """A step edge in D: Bl across it runs through the partial sums of the Gaussian taps, and bd
    (hence M) through the thresholds, so wrong taps or thresholds show in M along the edge."""
    h, w = 16, 24
    d4 = np.full((1, 1, h, w), -1.0, np.float32)
    d4[..., :, 12:] = 1.0  # D = 0 | 1, edge between columns 11 and 12
    ya = np.zeros((1, 1, h, w), np.float32)
    d, m = TK.cpu_boundary_refine(d4, ya, ya, lib=cpu)
    check_refine(d, m, d4, ya, ya, tol_m=1e-6)


# ---- spec sections 1, 7, 8: pixel operations --------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_luma_gray_exhaustive(cpu, dtype):
    v = np.arange(np.iinfo(dtype).max + 1, dtype=np.uint32).astype(dtype).reshape(256, -1)  # gray H x W
    lf = TK.cpu_luma(v, np.float32, lib=cpu)
    np.testing.assert_array_equal(lf[0, 0], preprocess.luma(v))
    lh = TK.cpu_luma(v, np.float16, lib=cpu)
    np.testing.assert_array_equal(lh.view(np.uint16), lf.astype(np.float16).view(np.uint16))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_luma_rgb(cpu, dtype):
    rng = np.random.default_rng(11)
    top = np.iinfo(dtype).max
    img = rng.integers(0, top + 1, (3, 41, 57, 3)).astype(dtype)
    img[0, 0, :8] = [[0, 0, 0], [top, top, top], [top, 0, 0], [0, top, 0], [0, 0, top], [1, 2, 3], [top - 1] * 3, [7, 0, top]]
    out = np.full((3, 1, 41, 57), np.nan, np.float32)
    lf = TK.cpu_luma(img, np.float32, out=out, lib=cpu)
    for i in range(3):
        np.testing.assert_array_equal(lf[i, 0], preprocess.luma(img[i]))
    lh = TK.cpu_luma(img, np.float16, lib=cpu)
    np.testing.assert_array_equal(lh.view(np.uint16), lf.astype(np.float16).view(np.uint16))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("na", [1, 3])
def test_blend(cpu, dtype, channels, na):
    rng = np.random.default_rng(12)
    n, h, w = 3, 17, 29
    a = rng.integers(0, np.iinfo(dtype).max + 1, (na, h, w, channels)).astype(dtype)
    b = rng.integers(0, np.iinfo(dtype).max + 1, (n, h, w, channels)).astype(dtype)
    m = rng.random((n, 1, h, w)).astype(np.float32)
    m[:, 0, 0, :6] = [0.0, 1.0, 0.5, -2e-6, 1 + 2e-6, 0.25]  # exact ends, a tie, M leaving [0, 1]
    out = TK.cpu_blend(a, b, m, lib=cpu)
    assert out.shape == b.shape and out.dtype == dtype
    one = (lambda x: x[..., 0]) if channels == 1 else (lambda x: x)  # preprocess.blend takes gray as H x W
    for i in range(n):
        np.testing.assert_array_equal(one(out[i]), preprocess.blend(one(a[i % na]), one(b[i]), m[i, 0]))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3])
def test_stack_calibration(cpu, dtype, channels):
    """Against engine.stack.Calibration (spec section 8), ties included."""
    rng = np.random.default_rng(13)
    h, w, frames = 13, 21, 6
    shape = (h, w) if channels == 1 else (h, w, 3)
    imgs = [rng.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype) for _ in range(frames)]
    masks = [rng.random((h, w)).astype(np.float32) for _ in range(frames)]
    masks[1][0, :4] = [0.5, 0.0, 1.0, 0.25]
    masks[2][0, :4] = [0.5, 1.0, 0.0, 0.5]
    ref = Calibration(masks[1], imgs[0], imgs[1])
    st = TK.cpu_stack_first(masks[1], imgs[0], imgs[1], lib=cpu)
    for i in range(2, frames):
        ref.update(masks[i], imgs[i], i)
        TK.cpu_stack_next(st, masks[i], imgs[i], i, lib=cpu)
    np.testing.assert_array_equal(st["v0"], ref.v0)
    np.testing.assert_array_equal(st["best"], ref.best)
    np.testing.assert_array_equal(st["index"], ref.index)
    np.testing.assert_array_equal(st["out"], ref.out)
    assert len(np.unique(st["index"])) == frames


# ---- real tensors of the network on a golden pair ----------------------------------------------------------
@pytest.fixture(scope="module")
def real(torch_model, golden):
    """Intermediate float32 tensors of the PyTorch model on the 334x508 colour pair."""
    a, b, g_fused, g_d, g_m = golden("color_tid_t5")
    luma = torch.from_numpy(np.stack([preprocess.luma(a), preprocess.luma(b)])[:, None])
    with torch.no_grad():
        f = torch_model.features(luma)
        bm = torch_model.activity(f[:1], f[1:])
        block = torch_model.dp_blocks[0]
        pre = block.conv(torch_model.sse[0](bm))  # decision_path_conv1 before its ReLU/BatchNorm
        scale, shift = block.bn_affine()
        gated = torch_model.sse[1](block(torch_model.sse[0](bm)))
        d4 = torch_model.decision_logits(bm)
        d, m = torch_model.boundary_refine(d4, luma[:1], luma[1:])
    return dict(a=a, b=b, golden=(g_fused, g_d, g_m), luma=luma.numpy(), f=f.numpy(), bm=bm.numpy(),
                pre=pre.numpy(), bn=torch.stack([scale, shift]).detach().numpy(), gated=gated.numpy(),
                w4=torch_model.sse[0].conv.weight[0].detach().numpy(),
                w5=torch_model.sse[1].conv.weight[0].detach().numpy(), d4=d4.numpy(), d=d.numpy(), m=m.numpy())


def test_real_activity(cpu, real):
    f = real["f"]
    bm = TK.cpu_activity(f[:1], f[1:], lib=cpu)
    check_activity(bm, f[:1], f[1:])
    nhwc = TK.cpu_activity(from_nchw(f[:1], "NHWC"), from_nchw(f[1:], "NHWC"), "NHWC", lib=cpu)
    np.testing.assert_array_equal(to_nchw(nhwc, "NHWC"), bm)
    assert np.abs(bm - real["bm"]).max() < 1e-3  # the model's own float32 result


def test_real_spatial_gates(cpu, real):
    """SSE4 on Bm (no ReLU/BN) and SSE5 fused with decision_path_conv1's ReLU + BatchNorm."""
    y4 = TK.cpu_spatial_gate(real["bm"], real["w4"], lib=cpu)
    check_gate(y4, real["bm"], real["w4"], None, False)
    pre = real["pre"][:, :, :96, :128]  # a corner: borders on two sides, 48 channels
    y5 = TK.cpu_spatial_gate(from_nchw(pre, "NHWC"), real["w5"], real["bn"], True, "NHWC", lib=cpu)
    check_gate(to_nchw(y5, "NHWC"), pre, real["w5"], real["bn"], True)
    # The model computes the same up to float32 rounding (its BatchNorm is not fused), away from
    # the crop's own right and bottom edges.
    assert np.abs(to_nchw(y5, "NHWC")[..., :-3, :-3] - real["gated"][:, :, :93, :125]).max() < 1e-4


def test_real_boundary_refine_and_blend(cpu, real):
    from engine.testing import metrics
    luma = real["luma"]
    d, m = TK.cpu_boundary_refine(real["d4"], luma[:1], luma[1:], lib=cpu)
    check_refine(d, m, real["d4"], luma[:1], luma[1:], tol_m=1e-5)
    assert np.abs(m - real["m"]).max() < 1e-4
    fused = TK.cpu_blend(real["a"], real["b"], m, lib=cpu)
    np.testing.assert_array_equal(fused, preprocess.blend(real["a"], real["b"], m[0, 0]))
    report = metrics.golden_report(fused, d[0, 0], m[0, 0], *real["golden"])
    assert metrics.within(report, metrics.FP32), report
    lf = TK.cpu_luma(np.stack([real["a"], real["b"]]), lib=cpu)
    np.testing.assert_array_equal(lf, luma)


# ---- the CUDA kernels, emulated on the host --------------------------------------------------------------
EMU_ACT_SHAPES = [  # several 121-row bands and strips (NCHW strips are 484 columns), channel groups with a
    # tail (C = 20 in NHWC), odd W (NCHW scalar loads) and odd C (NHWC scalar loads)
    (2, 1, 3, 130, 300), (1, 1, 20, 9, 70), (2, 2, 16, 5, 33), (1, 1, 5, 1, 40), (1, 1, 2, 14, 980),
]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", EMU_ACT_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_emu_activity_bit_exact(cpu, emu, shape, dtype, layout):
    n, na, c, h, w = shape
    rng = np.random.default_rng(h + w)
    fa = from_nchw(random_features(rng, na, c, h, w, dtype), layout)
    fb = from_nchw(random_features(rng, n, c, h, w, dtype), layout)
    want = TK.cpu_activity(fa, fb, layout, lib=cpu)
    got = TK.cpu_activity(fa, fb, layout, out=nan_like(fb), lib=emu)
    np.testing.assert_array_equal(got, want)


def test_emu_activity_unaligned_nhwc(cpu, emu):
    """Inputs and output 2 bytes off alignment: the output takes single-element stores."""
    rng = np.random.default_rng(14)
    buf_a, buf_b = (random_features(rng, 1, 1, 1, 1 + 10 * 12 * 16, np.float16).ravel() for _ in range(2))
    fa, fb = (x[1:].reshape(1, 10, 12, 16) for x in (buf_a, buf_b))  # contiguous views, 2 bytes in
    out = np.full(1 + fa.size, np.nan, np.float16)[1:].reshape(fa.shape)
    assert fa.ctypes.data % 4 and fb.ctypes.data % 4 and out.ctypes.data % 4
    want = TK.cpu_activity(np.ascontiguousarray(fa), np.ascontiguousarray(fb), "NHWC", lib=cpu)
    emu.activity(fa.ctypes.data, fb.ctypes.data, out.ctypes.data, 1, 1, 16, 10, 12, K.F16, K.NHWC)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", [  # c, h, w, dtype: tensor-core path (FP16, C % 16 == 0; W % 4 == 0 vectorised
    # in NCHW) and the FMA path
    (16, 13, 61, np.float16), (64, 25, 9, np.float16), (48, 12, 60, np.float16), (32, 7, 63, np.float16),
    (16, 1, 3, np.float16), (1, 9, 13, np.float16), (16, 13, 61, np.float32), (3, 17, 35, np.float32)],
    ids=lambda s: str(s)[:30])
@pytest.mark.parametrize("relu,bn", [(False, False), (True, True)])
def test_emu_spatial_gate(emu, case, relu, bn, layout):
    c, h, w, dtype = case
    rng = np.random.default_rng(c + h + w)
    x = random_features(rng, 2, c, h, w, dtype, scale=1.0)
    weight, bnp = random_gate_params(rng, c, bn)
    xin = from_nchw(x, layout)
    y = TK.cpu_spatial_gate(xin, weight, bnp, relu, layout, out=nan_like(xin), lib=emu)
    check_gate(to_nchw(y, layout), x, weight, bnp, relu)


def test_emu_tensor_core_gate_is_float32_accurate(cpu, emu):
    """FP16 gates on the tensor cores: the hi/lo weight split keeps the logit at FP32 accuracy, so
    nearly every output is the correctly rounded FP16 value (dropping the lo part: ~70-89%)."""
    rng = np.random.default_rng(15)
    for relu, bn in [(False, False), (True, True)]:
        x = random_features(rng, 1, 64, 24, 60, np.float16, scale=1.0)
        weight, bnp = random_gate_params(rng, 64, bn)
        ref, _ = ref_gate(x, weight, bnp, relu)
        for lib in (cpu, emu):
            y = TK.cpu_spatial_gate(x, weight, bnp, relu, lib=lib)
            ulps = np.abs(y.view(np.int16).astype(np.int32) - ref.astype(np.float16).view(np.int16))
            assert (ulps == 0).mean() > 0.995 and ulps.max() <= 1, (lib.backend, (ulps == 0).mean(), ulps.max())


def test_emu_gate_unaligned_and_odd_width(emu):
    """Vector paths off: NHWC base off 16 bytes, NCHW with odd W (no half2 pairs)."""
    rng = np.random.default_rng(16)
    weight, bnp = random_gate_params(rng, 16, True)
    buf = random_features(rng, 1, 1, 1, 1 + 9 * 11 * 16, np.float16, scale=1.0).ravel()
    x = buf[1:].reshape(1, 9, 11, 16)
    y = np.full(1 + x.size, np.nan, np.float16)[1:].reshape(x.shape)
    emu.spatial_gate(x.ctypes.data, weight.ctypes.data, bnp.ctypes.data, 1, y.ctypes.data, 1, 16, 9, 11, K.F16, K.NHWC)
    check_gate(to_nchw(y, "NHWC"), to_nchw(x, "NHWC"), weight, bnp, True)
    x = random_features(rng, 1, 16, 9, 11, np.float16, scale=1.0)
    check_gate(TK.cpu_spatial_gate(x, weight, bnp, True, lib=emu), x, weight, bnp, True)


def test_emu_fp16_conversions_tensor_core_path(emu):
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    x = bits.view(np.float16)
    x = x[np.isfinite(x)][: 16 * 3968].reshape(1, 16, 62, 64)
    y = TK.cpu_spatial_gate(x, np.zeros((16, 7, 7), np.float32), lib=emu)
    want = (x.astype(np.float32) * np.float32(0.5)).astype(np.float16)
    np.testing.assert_array_equal(y.view(np.uint16), want.view(np.uint16))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(1, 1, 8, 8), (2, 1, 33, 70), (2, 2, 45, 31)], ids=lambda s: "x".join(map(str, s)))
def test_emu_boundary_refine_bit_exact(cpu, emu, shape, dtype):
    n, na, h, w = shape
    d4, ya, yb = random_refine_inputs(np.random.default_rng(h + w), n, na, h, w, dtype)
    want = TK.cpu_boundary_refine(d4, ya, yb, lib=cpu)
    out = (np.full((n, 1, h, w), np.nan, np.float32), np.full((n, 1, h, w), np.nan, np.float32))
    got = TK.cpu_boundary_refine(d4, ya, yb, out=out, lib=emu)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_emu_real_tensors(cpu, emu, real):
    """Crops of the real features, Bm and d4 through the emulated kernels."""
    f = real["f"][:, :, :40, -70:]
    np.testing.assert_array_equal(TK.cpu_activity(from_nchw(f[:1], "NHWC"), from_nchw(f[1:], "NHWC"), "NHWC", lib=emu),
                                  TK.cpu_activity(from_nchw(f[:1], "NHWC"), from_nchw(f[1:], "NHWC"), "NHWC", lib=cpu))
    bm = real["bm"][:, :, -30:, :50].astype(np.float16)
    check_gate(TK.cpu_spatial_gate(bm, real["w4"], lib=emu), bm, real["w4"], None, False)
    d4, luma = real["d4"][:, :, :64, -96:], real["luma"][:, :, :64, -96:]
    got = TK.cpu_boundary_refine(d4, luma[:1], luma[1:], lib=emu)
    want = TK.cpu_boundary_refine(d4, luma[:1], luma[1:], lib=cpu)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_emu_pixel_ops_bit_exact(cpu, emu, dtype):
    rng = np.random.default_rng(17)
    top = np.iinfo(dtype).max
    a = rng.integers(0, top + 1, (1, 19, 23, 3)).astype(dtype)
    b = rng.integers(0, top + 1, (2, 19, 23, 3)).astype(dtype)
    m = rng.random((2, 1, 19, 23)).astype(np.float32)
    for ft in (np.float32, np.float16):
        np.testing.assert_array_equal(TK.cpu_luma(b, ft, lib=emu), TK.cpu_luma(b, ft, lib=cpu))
        np.testing.assert_array_equal(TK.cpu_luma(b[..., :1], ft, lib=emu), TK.cpu_luma(b[..., :1], ft, lib=cpu))
    np.testing.assert_array_equal(TK.cpu_blend(a, b, m, lib=emu), TK.cpu_blend(a, b, m, lib=cpu))
    frames = [rng.integers(0, top + 1, (19, 23, 3)).astype(dtype) for _ in range(4)]
    masks = [rng.random((19, 23)).astype(np.float32) for _ in range(4)]
    states = [TK.cpu_stack_first(masks[1], frames[0], frames[1], lib=lib) for lib in (cpu, emu)]
    for i in (2, 3):
        for st, lib in zip(states, (cpu, emu)):
            TK.cpu_stack_next(st, masks[i], frames[i], i, lib=lib)
    for key in ("v0", "best", "index", "out"):
        np.testing.assert_array_equal(states[1][key], states[0][key])


# ---- the GPU check's own logic (benchmarks/gpu_ops.py) on the host libraries -------------------------------------
def _gpu_ops():
    import importlib.util
    path = K.REPO_ROOT / "benchmarks" / "gpu_ops.py"
    spec = importlib.util.spec_from_file_location("gpu_ops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_logic_on_emulated_kernels(emu, data_dir):
    """check_ops as the GPU check runs it, on the emulated CUDA kernels and host tensors."""
    rows = _gpu_ops().check_ops(emu, torch, data=data_dir, device="cpu", quick=True)
    assert len(rows) > 50 and all(r["ok"] for r in rows), [r for r in rows if not r["ok"]]
    assert {r["input"] for r in rows} == {"random", "real"}


def test_gpu_check_can_fail(cpu):
    """A library that swaps A and B in the activity, or leaves an output unwritten, is reported."""
    gpu_ops = _gpu_ops()

    class Broken:
        def __getattr__(self, name):
            return getattr(cpu, name)

        def activity(self, fa, fb, bm, *args):
            cpu.activity(fb, fa, bm, *args)

        def boundary_refine(self, d4, ya, yb, d, m, n, na, h, w, dtype, stream=0):
            cpu.boundary_refine(d4, ya, yb, d, m, n, na, h - 1, w, dtype, stream)  # last row unwritten

    gen = torch.Generator().manual_seed(0)
    fa, fb = torch.randn(1, 4, 9, 13, generator=gen) * 0.1, torch.randn(1, 4, 9, 13, generator=gen) * 0.1
    assert gpu_ops.check_activity(cpu, torch, fa, fb, K.F32, K.NCHW, "random", "cpu")["ok"]
    assert not gpu_ops.check_activity(Broken(), torch, fa, fb, K.F32, K.NCHW, "random", "cpu")["ok"]
    d4 = gpu_ops._smooth_d4(torch, gen, 1, 16, 16, "cpu")
    ya, yb = torch.rand(1, 1, 16, 16, generator=gen), torch.rand(1, 1, 16, 16, generator=gen)
    rows = gpu_ops.check_refine(Broken(), torch, d4, ya, yb, K.F32, "random", "cpu")
    assert not any(r["written"] for r in rows)


def test_gpu_timing_logic_on_host(cpu):
    rows = _gpu_ops().time_ops(cpu, torch, sizes=((16, 24),), device="cpu", reps=1, warmup=0)
    assert {r["op"] for r in rows} == {"activity", "spatial_gate", "boundary_refine", "luma", "blend", "conv3x3_c16"}
    assert all(r["kernel_ms"] > 0 and r["torch_ms"] > 0 for r in rows)


# ---- gacn_conv3x3_c16: the feature blocks' conv + ReLU + BatchNorm in FP32 ---------------------------------
def ref_conv(x: np.ndarray, weight, bias, bn):
    """u64 = BN(ReLU(conv3x3(x) + bias)) and the bound on |u - u64| of any FP32 summation order."""
    cin = weight.shape[1]
    c = F.conv2d(t64(x), t64(weight), t64(bias), padding=1)
    mag = F.conv2d(t64(x).abs(), t64(weight).abs(), t64(bias).abs(), padding=1)
    tol = (9 * cin + 2) * EPS32 * mag  # gamma_n of a length-(9 cin + 1) sum, rounded products included
    u = c.clamp_min(0)
    if bn is not None:
        scale, shift = t64(bn[0])[:, None, None], t64(bn[1])[:, None, None]
        tol = tol * scale.abs() + (u * scale).abs() * EPS32 * 2 + (u * scale + shift).abs() * EPS32 * 2
        u = u * scale + shift
    return u.numpy(), tol.numpy() + 1e-30


def check_conv(y: np.ndarray, x, weight, bias, bn) -> None:
    ref, tol = ref_conv(x, weight, bias, bn)
    err = np.abs(y.astype(np.float64) - ref)
    assert not np.isnan(y).any(), "unwritten (NaN) outputs"
    bad = err > tol
    assert not bad.any(), f"{bad.sum()} of {bad.size} outputs off, worst {err.max():.3g} (tol {tol.ravel()[err.argmax()]:.3g})"


def check_partials(ps: np.ndarray, y: np.ndarray) -> None:
    """ps [N, blocks, 16] against float64 sums of y over the kernel's 16 x 64 block tiles."""
    n, k, h, w = y.shape
    bx, by = -(-w // 64), -(-h // 16)
    assert ps.shape == (n, bx * by, 16)
    y64 = y.astype(np.float64)
    for b in range(bx * by):
        i0, j0 = (b // bx) * 16, (b % bx) * 64
        blk = y64[:, :, i0:i0 + 16, j0:j0 + 64]
        ref = blk.sum(axis=(2, 3))
        tol = blk.shape[2] * blk.shape[3] * EPS32 * np.abs(blk).sum(axis=(2, 3)) + 1e-30
        assert (np.abs(ps[:, b] - ref) <= tol).all(), f"block {b}: {ps[:, b]} vs {ref}"


def random_conv(rng, n, cin, h, w, bn: bool):
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    weight = (rng.standard_normal((16, cin, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32)
    bias = (rng.standard_normal(16) * 0.1).astype(np.float32)
    bnp = np.stack([rng.random(16) * 3.5 - 1.5, rng.standard_normal(16) * 0.2]).astype(np.float32) if bn else None
    return x, weight, bias, bnp


CONV_CASES = [(1, 1, 1, 1), (2, 1, 7, 9), (1, 3, 31, 65), (1, 16, 31, 65), (2, 17, 7, 9), (1, 32, 33, 68),
              (1, 48, 31, 65), (1, 16, 130, 259), (1, 48, 130, 259)]  # n, cin, h, w


def test_conv3x3_partials_count(cpu):
    assert cpu.conv3x3_c16_partials(1, 1) == 1
    assert cpu.conv3x3_c16_partials(2160, 3840) == 135 * 60
    assert cpu.conv3x3_c16_partials(17, 65) == 4
    assert cpu.conv3x3_c16_partials(0, 5) == 0


@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda s: "x".join(map(str, s)))
def test_conv3x3_random(cpu, case, bn):
    n, cin, h, w = case
    x, weight, bias, bnp = random_conv(np.random.default_rng(cin * 1000 + h), n, cin, h, w, bn)
    y, ps = TK.cpu_conv3x3_c16(x, weight, bias, bnp, lib=cpu)
    check_conv(y, x, weight, bias, bnp)
    check_partials(ps, y)
    assert TK.cpu_conv3x3_c16(x, weight, bias, bnp, partials=False, lib=cpu).shape == y.shape


def test_conv3x3_check_can_fail(cpu):
    x, weight, bias, bnp = random_conv(np.random.default_rng(1), 1, 16, 9, 13, True)
    y, ps = TK.cpu_conv3x3_c16(x, weight, bias, bnp, lib=cpu)
    with pytest.raises(AssertionError):
        check_conv(y, x, weight, bias + 2e-4, bnp)
    with pytest.raises(AssertionError):  # a mirrored kernel (cross-correlation vs convolution)
        check_conv(TK.cpu_conv3x3_c16(x, weight[:, :, ::-1, ::-1], bias, bnp, partials=False, lib=cpu), x, weight,
                   bias, bnp)
    bad = ps.copy()
    bad[0, 0, 3] += 1e-3 * np.abs(y[0, 3]).sum()
    with pytest.raises(AssertionError):
        check_partials(bad, y)


@pytest.mark.parametrize("kind", ["cpu", "emu"])
def test_conv3x3_strides_and_slices(kind, request):
    """x = the first cin channels of a 64-channel buffer, y = channels 32..47 of another one."""
    lib = request.getfixturevalue(kind)
    rng = np.random.default_rng(7)
    n, cin, h, w = 2, 17, 20, 68
    buf = rng.standard_normal((n, 64, h, w)).astype(np.float32)
    _, weight, bias, bnp = random_conv(rng, n, cin, h, w, True)
    out = np.full((n, 64, h, w), np.nan, np.float32)
    y, ps = TK.cpu_conv3x3_c16(buf, weight, bias, bnp, cin=cin, y=out[:, 32:48], lib=lib)
    check_conv(out[:, 32:48], buf[:, :cin], weight, bias, bnp)
    check_partials(ps, out[:, 32:48])
    assert np.isnan(out[:, :32]).all() and np.isnan(out[:, 48:]).all()


@pytest.mark.parametrize("kind", ["cpu", "emu"])
def test_conv3x3_invalid_arguments(kind, request):
    lib = request.getfixturevalue(kind)
    x, wt, b, y = (np.zeros(s, np.float32) for s in ((1, 4, 5, 6), (16, 4, 3, 3), (16,), (1, 16, 5, 6)))
    p = (x.ctypes.data, wt.ctypes.data, b.ctypes.data, y.ctypes.data)
    good = dict(x=p[0], cin=4, weight=p[1], bias=p[2], bn=0, y=p[3], partial_sums=0, n=1, h=5, w=6,
                x_batch_stride=120, y_batch_stride=480)
    lib.conv3x3_c16(*good.values())
    for key, value in [("x", 0), ("weight", 0), ("bias", 0), ("y", 0), ("cin", 0), ("n", 0), ("h", 0), ("w", 0),
                       ("x_batch_stride", 119), ("y_batch_stride", 479), ("n", 65536)]:
        with pytest.raises(BackendError, match="invalid arguments"):
            lib.conv3x3_c16(*{**good, key: value}.values())


def test_real_feature_blocks(cpu, real, torch_model):
    """The four feature ConvBlocks on the golden pair's luma and features (a corner crop)."""
    h, w = 70, 133
    luma, f = real["luma"][:, :, :h, :w], real["f"][:, :, :h, :w]
    for i, blk in enumerate(torch_model.fe_blocks):
        x = luma if i == 0 else f[:, :16 * i]
        weight, bias = blk.conv.weight.detach().numpy(), blk.conv.bias.detach().numpy()
        bn = torch.stack(blk.bn_affine()).detach().numpy()
        y, ps = TK.cpu_conv3x3_c16(x, weight, bias, bn, lib=cpu)
        check_conv(y, x, weight, bias, bn)
        check_partials(ps, y)
        with torch.no_grad():
            model = blk(torch.from_numpy(np.ascontiguousarray(x))).numpy()
        assert np.abs(y[..., :-1, :-1] - model[..., :-1, :-1]).max() < 1e-4
        # the CSE mean from the partial sums
        mean = ps.astype(np.float64).sum(axis=1) / (h * w)
        np.testing.assert_allclose(mean, y.astype(np.float64).mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("case", [(1, 1, 7, 9), (2, 3, 17, 70), (1, 16, 31, 65), (1, 48, 20, 68), (1, 17, 33, 132),
                                  (1, 32, 5, 4)], ids=lambda s: "x".join(map(str, s)))
def test_emu_conv3x3(cpu, emu, case, bn):
    """The CUDA kernel (vector path when W % 4 == 0, scalar otherwise; channel chunk tails) against
    the float64 bound and the CPU library (to FP32 rounding: different summation order)."""
    n, cin, h, w = case
    x, weight, bias, bnp = random_conv(np.random.default_rng(cin + h * w), n, cin, h, w, bn)
    y = np.full((n, 16, h, w), np.nan, np.float32)
    _, ps = TK.cpu_conv3x3_c16(x, weight, bias, bnp, y=y, lib=emu)
    check_conv(y, x, weight, bias, bnp)
    check_partials(ps, y)
    yc, pc = TK.cpu_conv3x3_c16(x, weight, bias, bnp, lib=cpu)
    _, tol = ref_conv(x, weight, bias, bnp)
    assert (np.abs(y.astype(np.float64) - yc) <= 2 * tol).all()
    np.testing.assert_allclose(ps, pc, rtol=1e-4, atol=1e-3)


def test_emu_conv3x3_unaligned(cpu, emu):
    """x and y one float off 16-byte alignment (scalar paths although W % 4 == 0)."""
    rng = np.random.default_rng(3)
    n, cin, h, w = 1, 5, 18, 68
    xb = np.zeros(cin * h * w + 1, np.float32)
    x = xb[1:].reshape(n, cin, h, w)
    x[:] = rng.standard_normal(x.shape)
    _, weight, bias, bnp = random_conv(rng, n, cin, h, w, True)
    yb = np.full(16 * h * w + 1, np.nan, np.float32)
    y = yb[1:].reshape(n, 16, h, w)
    assert x.ctypes.data % 16 and y.ctypes.data % 16
    emu.conv3x3_c16(x.ctypes.data, cin, weight.ctypes.data, bias.ctypes.data, bnp.ctypes.data, y.ctypes.data, 0, n, h,
                    w, cin * h * w, 16 * h * w)
    check_conv(y, x, weight, bias, bnp)
