"""Kernel ABI 3 without a GPU: the feature path without elementwise passes.

- gacn_feature_conv: the input's per-channel scale folded into the weights; the 3xTF32
  tensor-core kernel (conv3x3_tc.cu) run by the emulator, whose mma.sync model (PTX fragment
  layout, exact TF32 products added in k order in FP32) the CPU library's twin reproduces bit for
  bit; both against float64 with the error bound derived in kernels/README.md ("3xTF32"), with
  negative controls that drop each split product; the TF32 rounding itself against its definition.
- gacn_cse_scale against a float64 reference (and the model's ChannelSE on real features).
- gacn_activity_scaled against float64 with the activity's FP32 bound, the emulated kernel (MIXED
  tile: NCHW in, NHWC out) bit for bit against the CPU library, and a control showing why the
  scale is applied to G rather than to the features.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from engine import kernels as K  # noqa: E402
from engine.testing import kernels as TK  # noqa: E402
from engine.errors import BackendError  # noqa: E402
from engine.export import model as M  # noqa: E402

U = 2.0 ** -24  # unit roundoff of float32
MASK = np.uint32(0xFFFFE000)


@pytest.fixture(scope="module")
def emu(cpu) -> K.KernelLibrary:
    try:
        lib = K.KernelLibrary.load("emu")
    except BackendError as e:
        pytest.skip(f"kernel emulator library not built: {e}")
    assert lib.abi_version == K.ABI_VERSION == 3
    return lib


def t64(a) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


# ---- the 3xTF32 split in numpy (the kernels' definitions, for the negative controls) ---------------------
def tf32_trunc(a: np.ndarray) -> np.ndarray:
    return (np.asarray(a, np.float32).view(np.uint32) & MASK).view(np.float32)


def tf32_rna(a: np.ndarray) -> np.ndarray:
    b = np.asarray(a, np.float32).view(np.uint32)
    return ((b + np.uint32(0x1000)) & MASK).view(np.float32)  # finite inputs


def rna_definition(v: np.ndarray) -> np.ndarray:
    """Round to 10 mantissa bits, ties away from zero, from the definition (float64 arithmetic)."""
    v = np.asarray(v, np.float64)
    out = np.zeros_like(v)
    nz = v != 0
    e = np.floor(np.log2(np.abs(v[nz])))
    q = np.ldexp(np.ones_like(e), (e - 10).astype(int))  # the TF32 ulp at v
    out[nz] = np.sign(v[nz]) * np.floor(np.abs(v[nz]) / q + 0.5) * q
    return out


def split(a: np.ndarray, x: bool) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) as the kernels split inputs (x: hi truncated) or weights (hi rounded)."""
    a = np.asarray(a, np.float32)
    hi = tf32_trunc(a) if x else tf32_rna(a)
    return hi, tf32_rna(a - hi)


# ---- references ------------------------------------------------------------------------------------------
def tc_steps(cin: int) -> tuple[int, int]:
    """(products N, mma steps S) behind one output of the 3xTF32 kernel: per chunk of 8 input
    channels (zero-padded) and tap, 3 mma of 8 products each."""
    chunks = -(-cin // 8)
    return 3 * 9 * 8 * chunks, 3 * 9 * chunks


def conv_bound_factor(cin: int, algo: int, scaled: bool, model: str = "emulator") -> float:
    """|c - c64| <= factor * u * T, T = |b| + sum |w s x| (kernels/README.md, "Error bounds").

    FFMA: (9 cin + 2) (any FP32 order; products rounded) + 1 for the folded scale.
    3XTF32: 22 per term (split, dropped x_lo w_lo, the fold) plus the accumulation: the
    emulator's (and CPU twin's) sequential FP32 sums of N exact products, 1.01 N; on the device,
    where PTX leaves mma's internal order and rounding open, 20 per mma step: 20.2 (S + 1)."""
    if algo == K.CONV_FFMA or cin < 8:
        return 9 * cin + 2 + (1 if scaled else 0)
    n, s = tc_steps(cin)
    return 22 + (1.01 * n if model == "emulator" else 20.2 * (s + 1))


def ref_feature_conv(x, weight, bias, bn, in_scale, algo, model="emulator"):
    """u64 = BN(ReLU(conv3x3(s x) + bias)) with s x exact, and the bound of ``algo`` on |u - u64|."""
    cin = weight.shape[1]
    xs = t64(x)
    if in_scale is not None:
        xs = xs * t64(in_scale)[:, :, None, None]
    c = F.conv2d(xs, t64(weight), t64(bias), padding=1)
    mag = F.conv2d(xs.abs(), t64(weight).abs(), t64(bias).abs(), padding=1)
    tol = conv_bound_factor(cin, algo, in_scale is not None, model) * U * mag
    u = c.clamp_min(0)
    if bn is not None:
        scale, shift = t64(bn[0])[:, None, None], t64(bn[1])[:, None, None]
        tol = tol * scale.abs() + (u * scale).abs() * U * 2 + (u * scale + shift).abs() * U * 2
        u = u * scale + shift
    return u.numpy(), tol.numpy() + 1e-30


def check_feature_conv(y, x, weight, bias, bn, in_scale, algo, model="emulator") -> None:
    ref, tol = ref_feature_conv(x, weight, bias, bn, in_scale, algo, model)
    err = np.abs(np.asarray(y, np.float64) - ref)
    assert not np.isnan(y).any(), "unwritten (NaN) outputs"
    bad = err > tol
    assert not bad.any(), f"{bad.sum()} of {bad.size} outputs off, worst {(err / tol).max():.3g} x the bound"


def check_partials(ps, y) -> None:
    """ps [N, blocks, 16] against float64 sums of y over the 16 x 64 block tiles."""
    n, _, h, w = y.shape
    bx, by = -(-w // 64), -(-h // 16)
    assert ps.shape == (n, bx * by, 16)
    y64 = y.astype(np.float64)
    for b in range(bx * by):
        blk = y64[:, :, (b // bx) * 16:(b // bx) * 16 + 16, (b % bx) * 64:(b % bx) * 64 + 64]
        tol = blk.shape[2] * blk.shape[3] * U * np.abs(blk).sum(axis=(2, 3)) + 1e-30
        assert (np.abs(ps[:, b] - blk.sum(axis=(2, 3))) <= tol).all(), f"block {b}"


def random_block(rng, n, cin, h, w, bn=True, scaled=True):
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    weight = (rng.standard_normal((16, cin, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32)
    bias = (rng.standard_normal(16) * 0.1).astype(np.float32)
    bnp = np.stack([rng.random(16) * 3.5 - 1.5, rng.standard_normal(16) * 0.2]).astype(np.float32) if bn else None
    s = rng.uniform(0.05, 1.0, (n, cin)).astype(np.float32) if scaled else None
    return x, weight, bias, bnp, s


# ---- TF32 rounding ---------------------------------------------------------------------------------------
def test_tf32_split_matches_its_definition(cpu):
    """Through the public ABI: with one centre weight of 1, the 3xTF32 output is x_hi + x_lo
    (exact), with x = 1 it is w_hi + w_lo; both against truncation / round-half-away from their
    float64 definitions, over every pattern of the 13 dropped bits (ties included) at two
    exponents. A round-to-nearest-even or truncating lo would fail on the ties / halves."""
    low = np.arange(8192, dtype=np.uint32)
    vals = np.concatenate([((np.uint32(0x3F9A5000) & MASK) | low).view(np.float32),     # ~1.2
                           ((np.uint32(0x42C6B000) & MASK) | low).view(np.float32)])    # ~99.3
    # x split: image of the values, channel 0 only, centre tap weight 1 for every output
    x = np.zeros((1, 8, 128, 128), np.float32)
    x[0, 0] = vals.reshape(128, 128)
    wt = np.zeros((16, 8, 3, 3), np.float32)
    wt[:, 0, 1, 1] = 1.0
    y = TK.cpu_feature_conv(x, wt, np.zeros(16, np.float32), algo=K.CONV_3XTF32, partials=False, lib=cpu)
    v64 = vals.astype(np.float64)
    hi = np.trunc(v64 / 2.0 ** (np.floor(np.log2(v64)) - 10)) * 2.0 ** (np.floor(np.log2(v64)) - 10)
    want = hi + rna_definition(v64 - hi)
    np.testing.assert_array_equal(y[0, 0].ravel().astype(np.float64), want)
    # w split: 1x1 images of x = 1 (channel 0), the weight's value from the folded input scale
    n = vals.size
    x1 = np.zeros((n, 8, 1, 1), np.float32)
    x1[:, 0] = 1.0
    s = np.ones((n, 8), np.float32)
    s[:, 0] = vals
    y1 = TK.cpu_feature_conv(x1, wt, np.zeros(16, np.float32), in_scale=s, algo=K.CONV_3XTF32, partials=False, lib=cpu)
    whi = rna_definition(v64)
    np.testing.assert_array_equal(y1[:, 0, 0, 0].astype(np.float64), whi + rna_definition(v64 - whi))
    # the ties really are there and really round away
    ties = vals[(vals.view(np.uint32) & np.uint32(0x1FFF)) == 0x1000]
    assert ties.size == 2 and (rna_definition(ties) > ties).all()


# ---- gacn_feature_conv on the host ---------------------------------------------------------------------------
FC_CASES = [(1, 8, 7, 9), (2, 16, 20, 33), (1, 17, 19, 70), (1, 32, 17, 65), (1, 48, 18, 66), (2, 3, 9, 13)]


@pytest.mark.parametrize("algo", [K.CONV_FFMA, K.CONV_3XTF32], ids=["ffma", "3xtf32"])
@pytest.mark.parametrize("case", FC_CASES, ids=lambda s: "x".join(map(str, s)))
def test_feature_conv_within_bound(cpu, case, algo):
    n, cin, h, w = case
    rng = np.random.default_rng(cin * 100 + h)
    x, weight, bias, bnp, s = random_block(rng, n, cin, h, w, bn=cin % 2 == 0)
    y, ps = TK.cpu_feature_conv(x, weight, bias, bnp, s, algo, lib=cpu)
    check_feature_conv(y, x, weight, bias, bnp, s, algo)
    check_partials(ps, y)
    assert cpu.feature_conv_algo(cin, algo) == (algo if cin >= 8 else K.CONV_FFMA)


def test_feature_conv_unscaled_is_conv3x3_c16(cpu, emu):
    """in_scale NULL with the FMA algorithm is gacn_conv3x3_c16, bit for bit, on both libraries."""
    rng = np.random.default_rng(3)
    x, weight, bias, bnp, _ = random_block(rng, 1, 16, 17, 68, scaled=False)
    for lib in (cpu, emu):
        a, pa = TK.cpu_conv3x3_c16(x, weight, bias, bnp, lib=lib)
        b, pb = TK.cpu_feature_conv(x, weight, bias, bnp, None, K.CONV_FFMA, lib=lib)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(pa, pb)


def test_tc_bound_rejects_dropped_products(cpu):
    """Positive inputs and weights whose TF32 roundings all err the same way (x truncates down,
    w's dropped bits are 3/4 of an ulp: rna rounds up), so dropping any split product shifts
    every output by ~2^-12 of T, far beyond the bound; the kernel's arithmetic passes."""
    rng = np.random.default_rng(4)
    cin, h, w = 16, 12, 20
    x = rng.uniform(0.5, 1.5, (1, cin, h, w)).astype(np.float32)
    x = ((x.view(np.uint32) & MASK) | np.uint32(0x1800)).view(np.float32)   # half an ulp below the next TF32
    wt = rng.uniform(0.5, 1.5, (16, cin, 3, 3)).astype(np.float32) / (9 * cin)
    wt = ((wt.view(np.uint32) & MASK) | np.uint32(0x1800)).view(np.float32)
    bias = np.full(16, 0.1, np.float32)
    y = TK.cpu_feature_conv(x, wt, bias, algo=K.CONV_3XTF32, partials=False, lib=cpu)
    check_feature_conv(y, x, wt, bias, None, None, K.CONV_3XTF32)
    check_feature_conv(y, x, wt, bias, None, None, K.CONV_3XTF32, model="device")
    (xh, xl), (wh, wl) = split(x, True), split(wt, False)

    def conv(a, b):
        return F.conv2d(t64(a), t64(b), padding=1).numpy()
    b64 = np.float64(0.1)
    variants = {"hi only (1xTF32)": conv(xh, wh), "no x_lo*w_hi": conv(xh, wh) + conv(xh, wl),
                "no x_hi*w_lo": conv(xh, wh) + conv(xl, wh), "no x_hi*w_hi": conv(xh, wl) + conv(xl, wh)}
    for name, c in variants.items():
        with pytest.raises(AssertionError):
            check_feature_conv((c + b64).astype(np.float32), x, wt, bias, None, None, K.CONV_3XTF32, model="device")
    # and all three kept: within the bound (float64 sums of the exact products)
    check_feature_conv((conv(xh, wh) + conv(xh, wl) + conv(xl, wh) + b64).astype(np.float32), x, wt, bias, None, None,
                       K.CONV_3XTF32)


def test_feature_conv_bound_rejects_mistakes(cpu):
    """A wrong scale, a mirrored kernel and a plain TF32 conv (no split) are rejected."""
    rng = np.random.default_rng(5)
    x, weight, bias, bnp, s = random_block(rng, 1, 16, 11, 15)
    y = TK.cpu_feature_conv(x, weight, bias, bnp, s, K.CONV_3XTF32, partials=False, lib=cpu)
    check_feature_conv(y, x, weight, bias, bnp, s, K.CONV_3XTF32)
    with pytest.raises(AssertionError):
        check_feature_conv(y, x, weight, bias, bnp, s * np.float32(1.001), K.CONV_3XTF32)
    with pytest.raises(AssertionError):
        check_feature_conv(TK.cpu_feature_conv(x, weight[:, :, ::-1, ::-1], bias, bnp, s, K.CONV_3XTF32,
                                              partials=False, lib=cpu), x, weight, bias, bnp, s, K.CONV_3XTF32)
    with pytest.raises(AssertionError):  # cin swapped with the scale's channel order
        check_feature_conv(y, x, weight, bias, bnp, s[:, ::-1], K.CONV_3XTF32)


# ---- the tensor-core kernel, emulated ---------------------------------------------------------------------------
EMU_CASES = [  # n, cin, h, w: one block; chunk tail (17); several blocks both ways + batch (scalar path, W % 4);
    # three full chunks; x / y unaligned below
    (1, 8, 7, 9), (1, 17, 20, 68), (2, 16, 18, 70), (1, 48, 16, 64), (1, 12, 33, 132)]


@pytest.mark.parametrize("case", EMU_CASES, ids=lambda s: "x".join(map(str, s)))
def test_emu_tc_conv_bit_exact(cpu, emu, case):
    """The emulated CUDA kernel (fragment indexing, staging, chunk tails, B-fragment order,
    epilogue) equals the CPU twin bit for bit; partial sums to FP32 rounding (other order)."""
    n, cin, h, w = case
    rng = np.random.default_rng(cin + h * w)
    x, weight, bias, bnp, s = random_block(rng, n, cin, h, w, bn=cin != 12)
    assert emu.feature_conv_algo(cin, K.CONV_3XTF32) == K.CONV_3XTF32  # the emulated device is sm_90
    y = np.full((n, 16, h, w), np.nan, np.float32)
    _, ps = TK.cpu_feature_conv(x, weight, bias, bnp, s, K.CONV_3XTF32, y=y, lib=emu)
    want, pc = TK.cpu_feature_conv(x, weight, bias, bnp, s, K.CONV_3XTF32, lib=cpu)
    np.testing.assert_array_equal(y, want)
    check_partials(ps, y)
    np.testing.assert_allclose(ps, pc, rtol=1e-4, atol=1e-4 * np.abs(pc).max())
    # bit-exactness is not trivial: the FMA kernel rounds differently
    assert not np.array_equal(want, TK.cpu_feature_conv(x, weight, bias, bnp, s, K.CONV_FFMA, partials=False, lib=cpu))


def test_emu_tc_conv_strides_slices_unaligned(cpu, emu):
    """x = the first 24 channels of a 64-channel buffer one float off 16-byte alignment (scalar
    staging although W % 4 == 0), y = channels 16..31 of another (the rest untouched)."""
    rng = np.random.default_rng(6)
    n, cin, h, w = 1, 24, 17, 68
    raw = np.zeros(n * 64 * h * w + 1, np.float32)
    buf = raw[1:].reshape(n, 64, h, w)
    buf[:] = rng.standard_normal(buf.shape)
    assert buf.ctypes.data % 16
    _, weight, bias, bnp, s = random_block(rng, n, cin, h, w)
    out = np.full((n, 64, h, w), np.nan, np.float32)
    y = out[:, 16:32]
    ps = np.full((n, emu.conv3x3_c16_partials(h, w), 16), np.nan, np.float32)
    emu.feature_conv(buf.ctypes.data, cin, s.ctypes.data, cin, weight.ctypes.data, bias.ctypes.data, bnp.ctypes.data,
                     y.ctypes.data, ps.ctypes.data, n, h, w, 64 * h * w, 64 * h * w, K.CONV_3XTF32)
    want = TK.cpu_feature_conv(np.ascontiguousarray(buf[:, :cin]), weight, bias, bnp, s, K.CONV_3XTF32, partials=False,
                              lib=cpu)
    np.testing.assert_array_equal(y, want)
    check_partials(ps, np.ascontiguousarray(y))
    assert np.isnan(out[:, :16]).all() and np.isnan(out[:, 32:]).all()


def test_emu_tc_falls_back_below_8_channels(cpu, emu):
    rng = np.random.default_rng(7)
    x, weight, bias, bnp, s = random_block(rng, 1, 3, 9, 20)
    for lib in (cpu, emu):
        assert lib.feature_conv_algo(3, K.CONV_3XTF32) == K.CONV_FFMA
        assert lib.feature_conv_algo(8, K.CONV_3XTF32) == K.CONV_3XTF32
        assert lib.feature_conv_algo(48, K.CONV_FFMA) == K.CONV_FFMA
    a = TK.cpu_feature_conv(x, weight, bias, bnp, s, K.CONV_3XTF32, partials=False, lib=emu)
    b = TK.cpu_feature_conv(x, weight, bias, bnp, s, K.CONV_FFMA, partials=False, lib=emu)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["cpu", "emu"])
def test_abi3_invalid_arguments(kind, request):
    lib = request.getfixturevalue(kind)
    buf = np.zeros(8192, np.float32)
    p = buf.ctypes.data
    good = dict(x=p, cin=8, in_scale=0, scale_batch_stride=0, weight=p, bias=p, bn=0, y=p + 4096, partial_sums=0,
                n=1, h=4, w=5, x_batch_stride=160, y_batch_stride=320, algo=K.CONV_3XTF32)
    for key, value in [("algo", 2), ("algo", -1), ("cin", 0), ("x", 0), ("x_batch_stride", 159), ("n", 0)]:
        with pytest.raises(BackendError, match="invalid arguments"):
            lib.feature_conv(*{**good, key: value}.values())
    for args in [(p, 1, 0, 10, p, p, p, 16), (p, 1, 3, 10, 0, p, p, 16), (p, 1, 3, 10, p, p, p, 15)]:
        with pytest.raises(BackendError, match="invalid arguments"):  # blocks 0, fc1 NULL, stride < 16
            lib.cse_scale(*args)
    with pytest.raises(BackendError, match="invalid arguments"):  # NHWC in -> NCHW out
        lib.activity_scaled(p, p, 0, 0, p + 4096, 1, 1, 4, 4, 4, K.F32, K.NHWC, K.F32, K.NCHW)
    with pytest.raises(BackendError, match="invalid arguments"):  # out dtype
        lib.activity_scaled(p, p, 0, 0, p + 4096, 1, 1, 4, 4, 4, K.F32, K.NCHW, 2, K.NCHW)


# ---- gacn_cse_scale --------------------------------------------------------------------------------------------
def ref_cse(ps: np.ndarray, count: int, fc1, fc2) -> np.ndarray:
    mean = ps.astype(np.float64).sum(axis=1) / count
    z = np.maximum(mean @ fc1.astype(np.float64).T, 0) @ fc2.astype(np.float64).T
    return 1 / (1 + np.exp(-z))


def test_cse_scale(cpu, emu):
    """float64 mean and MLP, one float32 rounding: within 1 ulp of the float64 reference (plus the
    float64 sum's own rounding); the emulated kernel equals the CPU library; a mean over the
    wrong count is caught."""
    rng = np.random.default_rng(8)
    ps = (rng.random((3, 77, 16)) * 50).astype(np.float32)
    fc1 = rng.standard_normal((2, 16)).astype(np.float32)
    fc2 = rng.standard_normal((16, 2)).astype(np.float32)
    s = TK.cpu_cse_scale(ps, 4321, fc1, fc2, lib=cpu)
    ref = ref_cse(ps, 4321, fc1, fc2)
    tol = ref * 2.0 ** -23 + 1e-12
    assert (np.abs(s - ref) <= tol).all(), np.abs(s - ref).max()
    np.testing.assert_array_equal(TK.cpu_cse_scale(ps, 4321, fc1, fc2, lib=emu), s)
    assert (np.abs(TK.cpu_cse_scale(ps, 4320, fc1, fc2, lib=cpu) - ref) > tol).any()
    # a channel whose hidden layer is negative everywhere: ReLU -> 0 -> sigmoid(0) = 1/2 exactly
    s0 = TK.cpu_cse_scale(ps, 4321, -np.abs(fc1), fc2, lib=cpu)
    np.testing.assert_array_equal(s0, np.full_like(s0, 0.5))


def test_real_cse_scales_and_feature_blocks(cpu, torch_model, golden):
    """The four feature blocks of the golden pair's reference frame through the new path on the
    host (3xTF32 twin, scales from gacn_cse_scale, folded into the next blocks) against the
    float32 model: u_k * s_k = f_k and s_k = the model's ChannelSE scale."""
    from engine import preprocess
    a, *_ = golden("color_tid_t5")
    h, w = 96, 160
    y = preprocess.luma(a)[None, None, :h, :w].copy()
    with torch.no_grad():
        yt = torch.from_numpy(y)
        feats, f_prev = [], []
        for blk, cse in zip(torch_model.fe_blocks, torch_model.cse):
            u_ref = blk(torch.cat(f_prev, 1) if f_prev else yt)
            s_ref = torch.sigmoid(cse.fc2(F.relu(cse.fc1(u_ref.mean(dim=(2, 3))))))
            f_prev.append(u_ref * s_ref[:, :, None, None])
            feats.append((blk, cse, u_ref.numpy(), s_ref.numpy()))
    u = np.zeros((1, 64, h, w), np.float32)
    scales = np.zeros((1, 64), np.float32)
    for i, (blk, cse, u_ref, s_ref) in enumerate(feats):
        x = y if i == 0 else u[:, :16 * i]
        wt, b = blk.conv.weight.detach().numpy(), blk.conv.bias.detach().numpy()
        bn = torch.stack(blk.bn_affine()).detach().numpy()
        out, ps = TK.cpu_feature_conv(x, wt, b, bn, None if i == 0 else scales[:, :16 * i], K.CONV_3XTF32, lib=cpu)
        u[:, 16 * i:16 * (i + 1)] = out
        scales[:, 16 * i:16 * (i + 1)] = TK.cpu_cse_scale(ps, h * w, cse.fc1.weight.detach().numpy(),
                                                         cse.fc2.weight.detach().numpy(), lib=cpu)
        np.testing.assert_allclose(scales[:, 16 * i:16 * (i + 1)], s_ref, rtol=2e-6, atol=0)
        assert np.abs(out - u_ref).max() < 2e-4 * max(1.0, np.abs(u_ref).max())


# ---- gacn_activity_scaled --------------------------------------------------------------------------------------
def ref_activity_scaled(fa, fb, sa, sb):
    """Bm64 of the exactly scaled features and the FP32 bound of test_kernels_cpu's activity check
    (64 u of box(G_A + G_B)); kernels/README.md shows that G(f) * fl(s s) stays inside it."""
    fa64, fb64 = t64(fa), t64(fb)
    if sa is not None:
        fa64 = fa64 * t64(sa)[:, :, None, None]
    if sb is not None:
        fb64 = fb64 * t64(sb)[:, :, None, None]
    ga, gb = M.squared_gradient(fa64), M.squared_gradient(fb64)
    s = M.box_sum(ga - gb, M.ACTIVITY_RADIUS)
    tol_s = 64 * U * M.box_sum(ga + gb, M.ACTIVITY_RADIUS) + 1e-30
    tol = 0.25 * M.SHARPNESS * tol_s + 0.25 * (M.SHARPNESS * s).abs() * 2 * U
    return torch.sigmoid(M.SHARPNESS * s).numpy(), tol.numpy()


def check_activity_scaled(bm_nchw, fa, fb, sa, sb) -> None:
    ref, tol = ref_activity_scaled(fa, fb, sa, sb)
    out = np.abs(ref) * (2.0 ** -11 if bm_nchw.dtype == np.float16 else 2.0 ** -23) + 2.0 ** -24
    err = np.abs(bm_nchw.astype(np.float64) - ref)
    assert not np.isnan(bm_nchw).any(), "unwritten (NaN) outputs"
    bad = err > tol + out + 1e-7
    assert not bad.any(), f"{bad.sum()} of {bad.size} Bm values off, worst {err.max():.3g}"


def nchw(a, layout):
    return a if layout == "NCHW" else a.transpose(0, 3, 1, 2)


@pytest.mark.parametrize("in_dtype,out_dtype", [(np.float32, np.float16), (np.float32, np.float32),
                                                (np.float16, np.float16), (np.float16, np.float32)])
@pytest.mark.parametrize("layouts", [("NCHW", "NHWC"), ("NCHW", "NCHW"), ("NHWC", "NHWC")], ids="->".join)
def test_activity_scaled_within_bound(cpu, layouts, in_dtype, out_dtype):
    rng = np.random.default_rng(9)
    n, c, h, w = 2, 5, 13, 17
    fa = (rng.standard_normal((1, c, h, w)) * 0.3).astype(in_dtype)
    fb = (rng.standard_normal((n, c, h, w)) * 0.3).astype(in_dtype)
    sa, sb = rng.uniform(0.2, 1, (1, c)).astype(np.float32), rng.uniform(0.2, 1, (n, c)).astype(np.float32)
    tr = (lambda a: a) if layouts[0] == "NCHW" else (lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1)))
    bm = TK.cpu_activity_scaled(tr(fa), tr(fb), sa, sb, *layouts, out_dtype, lib=cpu)
    assert bm.dtype == out_dtype
    check_activity_scaled(nchw(bm, layouts[1]), fa, fb, sa, sb)
    with pytest.raises(AssertionError):  # the scales of A and B swapped
        check_activity_scaled(nchw(bm, layouts[1]), fa, fb, sb[:1], np.concatenate([sa, sa]))


def test_activity_scale_order_keeps_the_bound(cpu):
    """Why G(f) * s^2 and not G(s f): features with a large offset and tiny gradients. Scaling
    the features first (today's torch path: f' = fl(s f), then G) rounds the offset and loses the
    gradients' low bits, far outside the FP32 bound relative to G; the kernel's order keeps it."""
    rng = np.random.default_rng(10)
    c, h, w = 3, 23, 23
    base = np.float32(37.0)
    fa = (base + rng.standard_normal((1, c, h, w)) * 1e-3).astype(np.float32)
    fb = (base + rng.standard_normal((1, c, h, w)) * 1e-3).astype(np.float32)
    sa, sb = np.full((1, c), 0.7371, np.float32), np.full((1, c), 0.6619, np.float32)
    good = TK.cpu_activity_scaled(fa, fb, sa, sb, lib=cpu)
    check_activity_scaled(good, fa, fb, sa, sb)
    pre = TK.cpu_activity(fa * sa[:, :, None, None], fb * sb[:, :, None, None], lib=cpu)
    with pytest.raises(AssertionError):
        check_activity_scaled(pre, fa, fb, sa, sb)


def test_activity_scaled_without_scales_is_gacn_activity(cpu, emu):
    rng = np.random.default_rng(11)
    fa, fb = (rng.standard_normal((1, 16, 25, 50)) * 0.1).astype(np.float32), \
        (rng.standard_normal((2, 16, 25, 50)) * 0.1).astype(np.float32)
    for lib in (cpu, emu):
        np.testing.assert_array_equal(TK.cpu_activity_scaled(fa, fb, lib=lib), TK.cpu_activity(fa, fb, lib=lib))


EMU_ACT_CASES = [  # n, na, c, h, w: MIXED strips of 44 columns and 8-channel groups (tail: 20), 121-row bands,
    # odd W (scalar loads), C % 8 != 0 (scalar stores)
    (2, 1, 16, 130, 100), (1, 1, 20, 9, 90), (2, 2, 8, 14, 31), (1, 1, 64, 12, 44)]


@pytest.mark.parametrize("out", [("NHWC", np.float16), ("NHWC", np.float32), ("NCHW", np.float16)],
                         ids=lambda o: f"{o[0]}-{np.dtype(o[1]).name}")
@pytest.mark.parametrize("case", EMU_ACT_CASES, ids=lambda s: "x".join(map(str, s)))
def test_emu_activity_scaled_bit_exact(cpu, emu, case, out):
    n, na, c, h, w = case
    layout, dtype = out
    if c == 16 and h == 130 and out != ("NHWC", np.float16):
        pytest.skip("the large case runs for the fp16 path only (test time)")
    rng = np.random.default_rng(n + c + h + w)
    fa = (rng.standard_normal((na, c, h, w)) * 0.1).astype(np.float32)
    fb = (rng.standard_normal((n, c, h, w)) * 0.1).astype(np.float32)
    sa, sb = rng.uniform(0.2, 1, (na, c)).astype(np.float32), rng.uniform(0.2, 1, (n, c)).astype(np.float32)
    shape = (n, h, w, c) if layout == "NHWC" else (n, c, h, w)
    got = TK.cpu_activity_scaled(fa, fb, sa, sb, "NCHW", layout, dtype, out=np.full(shape, np.nan, dtype), lib=emu)
    want = TK.cpu_activity_scaled(fa, fb, sa, sb, "NCHW", layout, dtype, lib=cpu)
    np.testing.assert_array_equal(got, want)


def test_emu_activity_mixed_unaligned_output(cpu, emu):
    """bm 2 bytes off 16-byte alignment: the MIXED tile's per-channel stores."""
    rng = np.random.default_rng(12)
    n, c, h, w = 1, 16, 10, 50
    fa, fb = ((rng.standard_normal((1, c, h, w)) * 0.1).astype(np.float32) for _ in range(2))
    sa, sb = rng.uniform(0.2, 1, (1, c)).astype(np.float32), rng.uniform(0.2, 1, (1, c)).astype(np.float32)
    raw = np.full(n * h * w * c + 1, np.nan, np.float16)
    bm = raw[1:].reshape(n, h, w, c)
    assert bm.ctypes.data % 16
    emu.activity_scaled(fa.ctypes.data, fb.ctypes.data, sa.ctypes.data, sb.ctypes.data, bm.ctypes.data, n, 1, c, h, w,
                        K.F32, K.NCHW, K.F16, K.NHWC)
    np.testing.assert_array_equal(bm, TK.cpu_activity_scaled(fa, fb, sa, sb, "NCHW", "NHWC", np.float16, lib=cpu))
