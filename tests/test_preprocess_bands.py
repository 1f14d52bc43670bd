"""Luma and blend in row bands: the same numbers as the whole-array formulas of the spec,
with float temporaries bounded by the band (a 24 MP frame's float64 RGB copy is 576 MB)."""
import tracemalloc

import numpy as np
import pytest

from engine import preprocess


def luma_whole(img):
    peak = preprocess.max_value(img.dtype)
    if img.ndim == 2:
        return img.astype(np.float32) / np.float32(peak)
    rgb = img * (1.0 / peak)
    w = preprocess.LUMA_WEIGHTS
    return (rgb[..., 0] * w[0] + rgb[..., 1] * w[1] + rgb[..., 2] * w[2]).astype(np.float32)


def blend_whole(a, b, mask):
    peak = preprocess.max_value(a.dtype)
    m = mask if a.ndim == 2 else mask[:, :, None]
    fused = m * (a.astype(np.float32) / np.float32(peak)) + (np.float32(1) - m) * (b.astype(np.float32) / np.float32(peak))
    return np.rint(np.clip(fused, 0, 1) * np.float32(peak)).astype(a.dtype)


@pytest.mark.parametrize("shape,dtype", [((97, 61, 3), np.uint8), ((50, 33), np.uint16), ((40, 70, 3), np.uint16)])
def test_bands_equal_the_whole_array_formulas(shape, dtype, monkeypatch):
    monkeypatch.setattr(preprocess, "CHUNK_PIXELS", 500)  # many bands, a ragged last one
    rng = np.random.default_rng(5)
    hi = np.iinfo(dtype).max
    a, b = (rng.integers(0, hi + 1, shape).astype(dtype) for _ in range(2))
    m = rng.random(shape[:2], dtype=np.float32)
    np.testing.assert_array_equal(preprocess.luma(a), luma_whole(a))
    np.testing.assert_array_equal(preprocess.blend(a, b, m), blend_whole(a, b, m))


def test_temporaries_stay_within_a_band():
    a = np.zeros((1500, 2000, 3), np.uint8)
    m = np.zeros((1500, 2000), np.float32)
    tracemalloc.start()
    try:
        y = preprocess.luma(a)
        _, peak_luma = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        preprocess.blend(a, a, m)
        _, peak_blend = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    band = preprocess.CHUNK_PIXELS * 3 * 8  # one band of float64 RGB
    assert peak_luma <= y.nbytes + 3 * band, peak_luma
    assert peak_blend <= a.nbytes + y.nbytes + 3 * band, peak_blend
