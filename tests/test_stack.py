"""Focus stacks: the golden 9-frame stack, and the constant-memory accumulators against the
spec's full decision volume."""
import numpy as np
import pytest

from engine.testing import metrics
from engine.fusion import fuse_stack
from engine.imageio import read_image
from engine.stack import Calibration, Sequential
from engine.strategies import NETWORK_FREE


def full_volume_calibration(masks, frames):
    """Spec section 8 as written: all frames, the whole volume, argmax (first on ties)."""
    v = [masks[0], 1 - masks[0]] + [masks[0] / (m + np.float32(1e-4)) * (1 - m) for m in masks[1:]]
    k = np.argmax(np.stack(v), axis=0)
    return np.take_along_axis(np.stack(frames), k[None, :, :, None], 0)[0], k


def test_calibration_accumulator_equals_full_volume():
    rng = np.random.default_rng(1)
    n, h, w = 7, 33, 29
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]
    masks = [rng.random((h, w), dtype=np.float32) for _ in range(n - 1)]
    masks[2][:5] = masks[1][:5]            # exact ties of frames 2 and 3: the first index must win
    masks[3][5:9] = 0.0
    masks[4][9:12] = 1.0
    acc = Calibration(masks[0], frames[0], frames[1])
    for i in range(2, n):
        acc.update(masks[i - 1], frames[i], i)
    out, k = full_volume_calibration(masks, frames)
    np.testing.assert_array_equal(acc.index, k)
    np.testing.assert_array_equal(acc.out, out)


def test_sequential_matches_one_after_another():
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (20, 24), dtype=np.uint8) for _ in range(4)]
    masks = [rng.random((20, 24), dtype=np.float32) for _ in range(3)]
    acc = Sequential(frames[0])
    fused = frames[0] / np.float32(255)
    for i, (m, f) in enumerate(zip(masks, frames[1:]), 1):
        np.testing.assert_allclose(acc.luma(), fused.astype(np.float32))
        acc.update(m, f, i)
        fused = m * fused + (1 - m) * (f / np.float32(255))
    np.testing.assert_allclose(acc.fused, fused, atol=1e-6)
    weights = [masks[0] * masks[1] * masks[2], (1 - masks[0]) * masks[1] * masks[2], (1 - masks[1]) * masks[2], 1 - masks[2]]
    np.testing.assert_array_equal(acc.index, np.argmax(np.stack(weights), 0))


@pytest.fixture(scope="module", params=["onnxruntime", "openvino", "openvino in 512 px tiles"])
def stack9(request, data_dir, weights):
    """The golden stack through each CPU backend, and in tiles (12 windows a frame; the CSE means
    of each run come from the sums passes over the whole frame)."""
    paths = sorted((data_dir / "stack9").glob("*.jpg"))
    assert len(paths) == 9

    def fuse(fuser):
        return fuser.fuse_stack((read_image(p) for p in paths), names=[str(p) for p in paths],
                                strategy="calibration", align="none")
    if request.param.endswith("tiles"):
        request.getfixturevalue("ov_fuser")   # skips where OpenVINO is missing
        from engine import Fuser
        with Fuser("openvino", weights=weights, tile=512) as fuser:
            return fuse(fuser)
    return fuse(request.getfixturevalue("ort_fuser" if request.param == "onnxruntime" else "ov_fuser"))


def test_stack9_calibration_matches_golden(stack9, data_dir):
    golden = read_image(data_dir / "golden" / "stack9_calibration_fused.png")
    identical = float(np.mean(np.all(stack9.fused == golden, axis=-1)))
    assert identical >= metrics.STACK_MIN_IDENTICAL, identical
    assert stack9.frames == 9 and stack9.index.max() == 8


@pytest.fixture(params=["focus-weights", "calibration"])
def stack_fuse(request):
    """fuse_stack as each kind of strategy is called: focus-weights with no network (pipeline
    None, no checkpoint), calibration through a network Fuser."""
    if request.param in NETWORK_FREE:
        return lambda frames, **kw: fuse_stack(frames, pipeline=None, **kw)
    fuser = request.getfixturevalue("ort_fuser")
    return lambda frames, **kw: fuser.fuse_stack(frames, strategy=request.param, **kw)


def test_stack_frame_mismatch_names_the_frame(stack_fuse):
    from engine.errors import InputError
    a = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(InputError, match="f2.png"):
        stack_fuse([a, a, np.zeros((16, 17, 3), np.uint8)], names=["f0.png", "f1.png", "f2.png"])


@pytest.mark.parametrize("n", [0, 1])
def test_stack_needs_two_frames(stack_fuse, n):
    from engine.errors import InputError
    with pytest.raises(InputError, match=f"at least 2 frames, got {n}"):
        stack_fuse([np.zeros((16, 16), np.uint8)] * n)
