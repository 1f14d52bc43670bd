"""The prototype stack strategies: the streaming focus-weights accumulator against its batch
formula, and the pairwise tree's order, weights and index map (with a stub fuser)."""
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from engine import preprocess
from engine import stack_strategies_proto as P
from engine import synthetic as S


def test_focus_weights_streaming_equals_batch():
    st = S.make_stack("coffee", 5, (48, 64), noise=1.0, seed=1)
    valid = [np.ones((48, 64), bool) for _ in st.frames]
    valid[3][:, :20] = False                      # frame 3 uncovered on the left
    out, index = P.focus_weights(None, zip(st.frames, valid))
    acc = P.FocusWeights()
    e = np.stack([acc.measure(f) for f in st.frames]).astype(np.float64)
    w = (e + P.FocusWeights.FLOOR) ** acc.power * np.stack(valid)
    w /= w.sum(0)
    expect = (w[..., None] * np.stack(st.frames).astype(np.float64)).sum(0)
    assert np.abs(out.astype(np.float64) - expect).max() <= 0.51
    masked = np.where(np.stack(valid), e, -1)
    np.testing.assert_array_equal(index, masked.argmax(0))
    assert not (index[:, :20] == 3).any()
    # the sharpest frame wins where the scene's depth puts it
    assert np.mean(np.abs(index - st.best_frame()) <= 1) > 0.8


class StubFuser:
    """fuse(a, b) -> mask m (take a); records which frames were compared (frames are constants)."""

    def __init__(self, m):
        self.m, self.calls = m, []

    def fuse(self, a, b, maps=False):
        self.calls.append((int(a[0, 0]), int(b[0, 0])))
        return SimpleNamespace(mask=np.full(a.shape[:2], self.m, np.float32))


def flat_frames(n):
    return [(np.full((12, 12), 40 * i, np.uint8), np.ones((12, 12), bool)) for i in range(n)]


def test_tree_neighbours_first_and_its_weights():
    fuser = StubFuser(0.5)
    out, index = P.tree(fuser, flat_frames(5))
    # (0,1) (2,3) then their results, then frame 4 last: N - 1 = 4 fusions, depth 3
    assert fuser.calls == [(0, 40), (80, 120), (20, 100), (60, 160)]
    # each frame's weight is 0.5 per level above it: frames 0-3 get 1/8, frame 4 gets 1/2
    assert out[0, 0] == round((0 + 40 + 80 + 120) / 8 + 160 / 2)
    np.testing.assert_array_equal(index, 4)      # the largest weight
    _, index = P.tree(StubFuser(0.5), flat_frames(2))
    np.testing.assert_array_equal(index, 0)      # equal weights: the earlier frame
    fuser = StubFuser(1.0)
    out, index = P.tree(fuser, flat_frames(4))
    assert out[0, 0] == 0 and (index == 0).all()


def test_pairwise_merge_takes_the_valid_side():
    frames = flat_frames(2)
    frames[1][1][:, :6] = False                   # frame 1 uncovered on the left
    out, index = P.tree(StubFuser(0.0), frames)   # the network would take frame 1 everywhere
    assert (out[:, :6] == 0).all() and (index[:, :6] == 0).all()
    assert (out[:, 6:] == 40).all() and (index[:, 6:] == 1).all()
