"""Stack strategies (engine.strategies): the streaming, banded focus-weights accumulator against
its batch formula, and the pairwise tree's order, weights and index map (with a stub pipeline)."""

import cv2
import numpy as np
import pytest

from engine import strategies as P
from engine import synthetic as S


def test_focus_weights_streaming_equals_batch():
    st = S.make_stack("coffee", 5, (48, 64), noise=1.0, seed=1)
    valid = [np.ones((48, 64), bool) for _ in st.frames]
    valid[3][:, :20] = False                      # frame 3 uncovered on the left
    out, index, n = P.focus_weights(None, zip(st.frames, valid))
    assert n == 5
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
    """pair_mask(a, b) -> mask m (take a); records which frames were compared (frames are constants)."""

    def __init__(self, m):
        self.m, self.calls = m, []

    def pair_mask(self, a, b):
        self.calls.append((int(a[0, 0]), int(b[0, 0])))
        return np.full(a.shape[:2], self.m, np.float32)


def flat_frames(n):
    return [(np.full((12, 12), 40 * i, np.uint8), np.ones((12, 12), bool)) for i in range(n)]


def test_tree_neighbours_first_and_its_weights():
    fuser = StubFuser(0.5)
    out, index, _ = P.tree(fuser, iter(flat_frames(5)))
    # (0,1) (2,3) then their results, then frame 4 last: N - 1 = 4 fusions, depth 3
    assert fuser.calls == [(0, 40), (80, 120), (20, 100), (60, 160)]
    # each frame's weight is 0.5 per level above it: frames 0-3 get 1/8, frame 4 gets 1/2
    assert out[0, 0] == round((0 + 40 + 80 + 120) / 8 + 160 / 2)
    np.testing.assert_array_equal(index, 4)      # the largest weight
    _, index, _ = P.tree(StubFuser(0.5), iter(flat_frames(2)))
    np.testing.assert_array_equal(index, 0)      # equal weights: the earlier frame
    fuser = StubFuser(1.0)
    out, index, _ = P.tree(fuser, iter(flat_frames(4)))
    assert out[0, 0] == 0 and (index == 0).all()


def test_pairwise_merge_takes_the_valid_side():
    frames = flat_frames(2)
    frames[1][1][:, :6] = False                   # frame 1 uncovered on the left
    out, index, _ = P.tree(StubFuser(0.0), iter(frames))   # the network would take frame 1 everywhere
    assert (out[:, :6] == 0).all() and (index[:, :6] == 0).all()
    assert (out[:, 6:] == 40).all() and (index[:, 6:] == 1).all()


def test_focus_measure_in_bands_equals_the_whole_frame():
    rng = np.random.default_rng(3)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (600, 90, 3), dtype=np.uint8), (0, 0), 1.2)
    acc = P.FocusWeights()
    whole = acc.measure(frame)
    banded = np.concatenate([acc.measure(frame, slice(y, min(y + acc.BAND, 600))) for y in range(0, 600, acc.BAND)])
    np.testing.assert_array_equal(banded, whole)
    acc.HALO = 2   # negative control: a halo under the kernels' reach changes the band edges
    short = np.concatenate([acc.measure(frame, slice(y, min(y + acc.BAND, 600))) for y in range(0, 600, acc.BAND)])
    assert not np.array_equal(short, whole)


def test_default_stack_runs_without_a_network_and_finds_the_sharp_frames():
    from engine.fusion import fuse_stack
    st = S.make_stack("coffee", 5, (96, 128), noise=1.0, seed=2)
    res = fuse_stack(st.frames, pipeline=None)
    assert res.frames == 5 and res.fused.shape == st.truth.shape
    err = lambda img: np.mean((img.astype(float) - st.truth) ** 2)  # noqa: E731
    assert err(res.fused) < min(err(f) for f in st.frames)          # better than any single frame
    assert np.mean(res.index == st.best_frame()) >= 0.75           # the index is the sharp frame (83 %; the middle frame everywhere: 26 %)
    with pytest.raises(Exception, match="needs a Fuser"):
        fuse_stack(st.frames, pipeline=None, strategy="tree")


def test_breathing_stack_is_aligned_and_reported():
    from engine.fusion import fuse_stack
    st = S.make_stack("coffee", 5, (120, 160), noise=1.0, seed=4, breathing=0.03)
    res = fuse_stack(st.frames, pipeline=None, crop=True)
    assert res.transforms and abs(res.transforms[-1].scale - 1) > 0.01      # breathing found
    x0, y0, x1, y1 = res.valid_rect
    assert res.fused.shape[:2] == (y1 - y0, x1 - x0) and 0 < x0 and x1 < 160 and 0 < y0 and y1 < 120


def test_cli_unregistrable_frame_is_an_error_when_alignment_was_asked_for(tmp_path, capsys):
    from engine.cli import main
    from engine.imageio import write_image
    st = S.make_stack("coffee", 3, (96, 128), noise=1.0, seed=5)
    rng = np.random.default_rng(0)
    paths = []
    for i, f in enumerate([*st.frames[:2], rng.integers(0, 256, st.frames[0].shape, dtype=np.uint8)]):
        paths.append(tmp_path / f"f{i}.png")
        write_image(paths[-1], f)
    out = tmp_path / "out.png"
    rc = main(["--stack", *map(str, paths), "-o", str(out), "--align", "affine", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert "f2.png" in err and "cannot be registered" in err and err.count("\n") == 1
    rc = main(["--stack", *map(str, paths), "-o", str(out), "-q"])        # auto: a warning, the stack is fused
    assert rc == 0 and out.exists() and "f2.png" in capsys.readouterr().err


def test_stack_progress_counts_fused_frames_of_read():
    from engine.fusion import fuse_stack
    st = S.make_stack("coffee", 4, (48, 64), noise=1.0, seed=6)
    events = []
    fuse_stack(iter(st.frames), pipeline=None, align="none", progress=lambda *e: events.append(e))
    assert events == [("frames", k, k) for k in range(1, 5)]     # each frame fused as soon as it is read


def test_cli_stack_bar_moves_when_a_frame_is_fused(tmp_path, monkeypatch):
    """The bar's count is the frames fused (it used to move when a frame was read, one ahead)."""
    from engine import cli
    from engine.imageio import write_image
    from engine.stack import FocusWeights
    st = S.make_stack("coffee", 3, (48, 64), noise=1.0, seed=7)
    paths = []
    for i, f in enumerate(st.frames):
        paths.append(tmp_path / f"f{i}.png")
        write_image(paths[-1], f)
    added, seen = [], []
    add = FocusWeights.add
    monkeypatch.setattr(FocusWeights, "add", lambda self, *a: (add(self, *a), added.append(1))[0])

    class Bar:
        n = 0

        def update(self, k):
            self.n += k
            seen.append((self.n, len(added)))

        def close(self):
            pass
    monkeypatch.setattr(cli, "_progress", lambda *a, **k: Bar())
    assert cli.main(["--stack", *map(str, paths), "-o", str(tmp_path / "out.png"), "--align", "none"]) == 0
    assert seen == [(1, 1), (2, 2), (3, 3)]
