"""Spec sections 1 and 7 on the host, uint16 sources, and inputs that must not produce NaN."""
import numpy as np
import pytest

from engine import preprocess
from engine.errors import InputError


def test_luma_matches_skimage_rgb2gray():
    skimage = pytest.importorskip("skimage.color")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    ref = skimage.rgb2gray(img).astype(np.float32)
    np.testing.assert_array_equal(preprocess.luma(img), ref)


def test_gray_luma_is_float32_division():
    v = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(preprocess.luma(v), v.astype(np.float32) / np.float32(255))


def test_uint16_pair_gives_uint16_close_to_uint8(ort_fuser, golden):
    from conftest import golden_names
    a, b, *_ = golden(golden_names()[-1])
    r8 = ort_fuser.fuse(a, b, maps=True)
    r16 = ort_fuser.fuse(a.astype(np.uint16) * 257, b.astype(np.uint16) * 257, maps=True)
    assert r16.fused.dtype == np.uint16
    assert np.mean((r16.mask - r8.mask) ** 2) < 1e-8
    assert np.abs(r16.fused.astype(np.int64) - r8.fused.astype(np.int64) * 257).max() <= 257


@pytest.mark.parametrize("kind", ["zeros", "ones", "constant", "checker", "noise"])
def test_no_nan_on_degenerate_inputs(ort_fuser, kind):
    rng = np.random.default_rng(3)
    h, w = 16, 23
    a = {"zeros": np.zeros((h, w)), "ones": np.full((h, w), 255), "constant": np.full((h, w), 77),
         "checker": (np.indices((h, w)).sum(0) % 2) * 255, "noise": rng.integers(0, 256, (h, w))}[kind].astype(np.uint8)
    b = np.zeros_like(a) if kind != "zeros" else np.full_like(a, 255)
    r = ort_fuser.fuse(a, b, maps=True)
    assert np.isfinite(r.mask).all() and np.isfinite(r.decision).all()
    assert r.fused.shape == a.shape


@pytest.mark.parametrize("bad, msg", [
    (np.zeros((16, 16), np.float32), "unsupported dtype float32"),
    (np.zeros((16, 16, 4), np.uint8), "neither gray"),
    (np.zeros((5, 16), np.uint8), "too small"),
    ([[1, 2]], "numpy array"),
])
def test_bad_arrays(ort_fuser, bad, msg):
    ok = np.zeros((16, 16), np.uint8)
    with pytest.raises(InputError, match=msg):
        ort_fuser.fuse(bad, ok)


def test_dtype_mismatch(ort_fuser):
    with pytest.raises(InputError, match="pixel type mismatch"):
        ort_fuser.fuse(np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint16))
