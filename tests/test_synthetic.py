"""The ground-truth stack generator: optics (focus, occlusion), breathing, exposure, noise,
determinism."""
import time

import cv2
import numpy as np
import pytest

from engine import synthetic as S


def texture(h, w, seed=0):
    rng = np.random.default_rng(seed)
    t = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 0.8)
    return np.clip((t - t.min()) / (t.max() - t.min()) * 255, 0, 255).astype(np.uint8)


def mad(a, b, where):
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))[where]))


def test_each_half_is_sharp_in_its_own_frame():
    img = texture(40, 60)
    depth = np.zeros((40, 60), np.float32)
    depth[:, 30:] = 1.0                       # left far (frame 0), right near (last frame)
    st = S.render_stack(img, depth, 5, max_blur=4)
    left, right = np.zeros((40, 60), bool), np.zeros((40, 60), bool)
    left[5:-5, 3:24], right[5:-5, 36:-3] = True, True
    assert mad(st.frames[0], img, left) < 1 and mad(st.frames[-1], img, right) < 1
    assert mad(st.frames[0], img, right) > 10 and mad(st.frames[-1], img, left) > 10
    assert mad(st.frames[2], img, left) > 5   # half way: both halves blurred
    np.testing.assert_array_equal(st.best_frame()[:, :30], 0)
    np.testing.assert_array_equal(st.best_frame()[:, 30:], 4)


def test_occlusion_near_edge_sharp_over_blurred_background():
    """A near square in focus keeps its edge: no background bleeds into it. The same square out
    of focus spreads over the in-focus background around it (a halo), which stays sharp farther
    away."""
    h = w = 64
    img = texture(h, w, seed=1)
    depth = np.zeros((h, w), np.float32)
    depth[20:44, 20:44] = 1.0
    st = S.render_stack(img, depth, 3, max_blur=6)
    inside = np.zeros((h, w), bool)
    inside[21:43, 21:43] = True               # up to 1 px from the edge
    assert mad(st.frames[-1], img, inside) < 0.5
    ring = np.zeros((h, w), bool)
    ring[16:48, 16:48] = True
    ring[20:44, 20:44] = False                # background within 4 px of the square
    far = np.zeros((h, w), bool)
    far[2:10, 2:-2] = True
    assert mad(st.frames[0], img, ring) > 5 * mad(st.frames[0], img, far)


def test_blurred_background_has_no_seam_at_an_occluder():
    """The background behind a near object is extended under it: defocused, it stays its own
    colour up to the object's edge instead of darkening (a seam where nothing is behind)."""
    h = w = 64
    img = np.full((h, w, 3), 200, np.uint8)
    img[20:44, 20:44] = texture(24, 24, seed=3)
    depth = np.zeros((h, w), np.float32)
    depth[20:44, 20:44] = 1.0
    near_focus = S.render_stack(img, depth, 3, max_blur=6).frames[-1]
    ring = np.zeros((h, w), bool)
    ring[16:48, 16:48] = True
    ring[20:44, 20:44] = False
    assert np.abs(near_focus[ring].astype(int) - 200).max() <= 1


def test_hidden_surface_continues_at_its_own_depth():
    """A background tilted in depth (top nearer) behind a disc: the nearer top rows must not
    continue all the way behind the disc and, defocused, leak their colour over the farther
    bottom rows beside it."""
    h, w = 80, 100
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (xx - 50) ** 2 + (yy - 40) ** 2 < 25 ** 2
    img = np.where(yy < 40, 200, 50).astype(np.uint8)
    img[disc] = 120
    depth = np.where(disc, 1.0, 0.5 * (1 - yy / h)).astype(np.float32)
    near_focus = S.render_stack(np.dstack([img] * 3), depth, 3, max_blur=8).frames[-1]
    beside = np.zeros((h, w), bool)
    beside[52:62, 76:82] = True            # right of the disc, well below the colour change
    assert np.abs(near_focus[beside].astype(int) - 50).max() <= 2


def test_breathing_exposure_and_noise():
    img = texture(60, 80, seed=2)
    depth = np.zeros((60, 80), np.float32)
    st = S.render_stack(img, depth, 3, max_blur=0, breathing=0.03, exposure_drift=0.1)
    m = st.matrices[-1]
    assert m[0, 0] == pytest.approx(1.03) and m[1, 1] == pytest.approx(1.03)
    expect = cv2.warpAffine(img.astype(np.float32), m[:2], (80, 60), flags=cv2.INTER_CUBIC,
                            borderMode=cv2.BORDER_REFLECT) * 1.1
    np.testing.assert_allclose(st.frames[-1].astype(np.float32), np.clip(np.rint(expect), 0, 255), atol=1)
    np.testing.assert_array_equal(st.frames[0], img)     # frame 0: the truth's geometry and gain
    np.testing.assert_allclose(st.gains[-1], 1.1)
    cov = st.covered(margin=0)
    assert not cov[0].any() and cov[30, 40]              # the zoomed-in last frame misses the border
    noisy = S.render_stack(img, depth, 2, max_blur=0, noise=3.0, seed=5)
    assert np.std(noisy.frames[1].astype(float) - img) == pytest.approx(3.0, rel=0.1)


def test_deterministic_with_a_seed():
    kw = dict(breathing=0.02, shift=1.0, exposure_drift=0.05, color_drift=0.01, noise=2.0)
    a = S.make_stack("coffee", 4, (48, 64), seed=7, **kw)
    b = S.make_stack("coffee", 4, (48, 64), seed=7, **kw)
    c = S.make_stack("coffee", 4, (48, 64), seed=8, **kw)
    for fa, fb in zip(a.frames, b.frames):
        np.testing.assert_array_equal(fa, fb)
    assert any(not np.array_equal(fa, fc) for fa, fc in zip(a.frames, c.frames))


@pytest.mark.parametrize("name", S.SCENES)
def test_scenes_small_and_fast(name):
    t = time.perf_counter()
    st = S.make_stack(name, 5, (48, 64), noise=1.0)
    elapsed = time.perf_counter() - t
    assert len(st.frames) == 5 and st.truth.shape == (48, 64, 3) and st.depth.shape == (48, 64)
    assert 0 <= st.depth.min() and st.depth.max() <= 1 and np.ptp(st.depth) > 0.5
    assert elapsed < 2.0, elapsed               # < 1 s unloaded; slack for a shared machine


def test_bad_arguments():
    img = texture(20, 20)
    with pytest.raises(ValueError, match="does not match"):
        S.render_stack(img, np.zeros((20, 21), np.float32))
    with pytest.raises(ValueError, match="at least 2 frames"):
        S.render_stack(img, np.zeros((20, 20), np.float32), 1)
    with pytest.raises(ValueError, match="unknown scene"):
        S.scene("nope")
