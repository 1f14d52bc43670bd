"""Stack registration (engine.align): breathing recovered, registered input untouched, bad
frames refused by name, uncovered borders reported."""
import logging

import cv2
import numpy as np
import pytest

from engine import align as A
from engine.testing import registration as R
from engine import synthetic as S
from engine.errors import InputError

SIZE = (192, 256)


@pytest.fixture(scope="module")
def breathing():
    return S.make_stack("motorcycle", 6, SIZE, breathing=0.03, shift=1.5, exposure_drift=0.05,
                        color_drift=0.01, noise=1.5, seed=2)


def corner_error(t, truth_matrix):
    return A.corner_displacement(np.linalg.inv(truth_matrix) @ t.matrix, SIZE)


@pytest.mark.parametrize("model", ["auto", "affine", "homography"])
def test_breathing_stack_recovered(breathing, model):
    ts = R.register_stack(iter(breathing.frames), model)      # a generator: read once
    for t, m, g in zip(ts, breathing.matrices, breathing.gains):
        assert t.ok
        assert corner_error(t, m) < 0.6, (t.describe(), m)
        np.testing.assert_allclose(t.gain * g, 1, atol=0.015)
    assert ts[-1].scale == pytest.approx(1.03, abs=0.002)


def test_rebase_to_another_reference(breathing):
    ts = R.register_stack(breathing.frames, "affine", reference=2)
    assert ts[2].identity
    for t, m in zip(ts, breathing.matrices):
        expect = m @ np.linalg.inv(breathing.matrices[2])
        assert A.corner_displacement(np.linalg.inv(expect) @ t.matrix, SIZE) < 0.6


def test_warp_undoes_breathing_and_reports_the_border(breathing):
    ts = R.register_stack(breathing.frames, "affine")
    warped, valid = A.warp(breathing.frames[-1], ts[-1])
    x0, y0, x1, y1 = A.common_rect(ts, SIZE)
    assert 0 < x0 < 10 and 0 < y0 < 10 and SIZE[1] - 10 < x1 < SIZE[1] and SIZE[0] - 10 < y1 < SIZE[0]
    assert valid[y0:y1, x0:x1].all() and not valid[0].all() and not valid[:, 0].all()
    cov = breathing.covered(margin=3)
    # frame 5 is the sharpest on the near motorcycle; the background differs only by focus
    before = np.abs(breathing.frames[-1].astype(float) - breathing.frames[-2]).mean(-1)[cov].mean()
    after = np.abs(warped.astype(float) - A.warp(breathing.frames[-2], ts[-2])[0]).mean(-1)[cov].mean()
    assert after < 0.5 * before


def test_registered_stack_left_untouched():
    st = S.make_stack("coffee", 6, SIZE, noise=1.5, seed=3)
    ts = R.register_stack(st.frames, "auto")
    assert all(t.identity for t in ts), [t.describe() for t in ts]
    for f, t in zip(st.frames, ts):
        w, v = A.warp(f, t)
        assert w is f and v.all()
    assert A.common_rect(ts, SIZE) == (0, 0, SIZE[1], SIZE[0])


def test_explicit_model_keeps_small_motion():
    """Only ``auto`` snaps (a step under IDENTITY_STEP of the diagonal, 0.13 px here): asked for
    explicitly, a 0.05 px shift is applied."""
    st = S.make_stack("chelsea", 2, SIZE, noise=0.5, seed=1)
    moved = cv2.warpAffine(st.frames[0], np.float32([[1, 0, 0.05], [0, 1, 0]]), SIZE[::-1],
                           flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    auto = R.register_stack([st.frames[0], moved], "auto")[1]
    affine = R.register_stack([st.frames[0], moved], "affine")[1]
    assert np.array_equal(auto.matrix, np.eye(3))
    assert 0.02 < affine.shift[0] < 0.1


def test_unrelated_frame_refused_by_name(breathing, caplog):
    other = S.make_stack("coffee", 2, SIZE, seed=0).frames[0]
    frames = [*breathing.frames[:3], other, *breathing.frames[3:]]
    names = [f"f{i}.png" for i in range(len(frames))]
    with pytest.raises(A.AlignmentError, match="f3.png cannot be registered to f2.png") as e:
        R.register_stack(frames, "affine", names=names)
    assert e.value.frame == 3
    with caplog.at_level(logging.WARNING, logger="engine.align"):
        ts = R.register_stack(frames, "auto", names=names, strict=False)
    assert "f3.png" in caplog.text
    assert [t.ok for t in ts] == [True, True, True, False, True, True, True]
    # the chain continues from the last good frame: frame 4 is frame 3 of the breathing stack
    assert corner_error(ts[4], breathing.matrices[3]) < 0.6


def test_implausible_registration_refused(breathing):
    """A frame that registers, but 25 % larger than its neighbour: not focus breathing."""
    f = breathing.frames[1]
    zoom = cv2.warpAffine(f, np.float32([[1.25, 0, -0.125 * 255], [0, 1.25, -0.125 * 191]]), SIZE[::-1],
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    with pytest.raises(A.AlignmentError, match=r"frame 1 cannot be registered to frame 0: scale 1\.2"):
        R.register_stack([f, zoom], "affine")


def test_other_size_frame_refused_by_name(breathing):
    frames = [breathing.frames[0], breathing.frames[1][:, :-1]]
    with pytest.raises(InputError, match="size mismatch: a.png is 256x192, b.png is 255x192"):
        R.register_stack(frames, names=["a.png", "b.png"])


def test_unknown_model():
    with pytest.raises(InputError, match="unknown alignment model"):
        A.StackAligner("rigid")


def test_constant_memory_per_frame(breathing):
    """The aligner keeps thumbnails of one previous frame, never a full-size frame."""
    big = [cv2.resize(f, (1024, 768)) for f in breathing.frames[:3]]
    aligner = A.StackAligner("affine", max_side=256)
    for f in big:
        aligner.add(f)
    def arrays(obj, depth=0):   # every array the aligner holds, through its attributes and lists
        if isinstance(obj, np.ndarray):
            yield obj
        elif depth < 8 and isinstance(obj, (list, tuple, dict)):
            for v in (obj.values() if isinstance(obj, dict) else obj):
                yield from arrays(v, depth + 1)
        elif depth < 8 and hasattr(obj, "__dict__"):
            yield from arrays(vars(obj), depth + 1)
    held = list(arrays(aligner))
    assert any(a.ndim == 2 and a.shape[1] == 256 for a in held)     # the previous thumbnail is found
    assert max(a.size for a in held) <= 256 * 192 * 3, [a.shape for a in held if a.size > 256 * 192 * 3]
