"""The reference frame of an aligned stack (issue 19): the output is in that frame's geometry,
the neighbour steps are chained outwards from it in both directions, the index map keeps the
input frame numbers, and a reference that does not apply or does not exist is refused."""
import cv2
import numpy as np
import pytest

from engine import align as A
from engine.testing import registration as R
from engine import synthetic as S
from engine.errors import InputError
from engine.fusion import fuse_stack
from engine.imageio import ImageFiles, write_image

SIZE = (120, 160)
N = 7


@pytest.fixture(scope="module")
def stack():
    """6 % breathing end to end (3 % each side of the middle frame), exposure drift."""
    return S.make_stack("motorcycle", N, SIZE, breathing=0.06, noise=1.0, seed=4, exposure_drift=0.03)


def in_frame_geometry(img, matrix, interpolation=cv2.INTER_CUBIC):
    """The truth (or a truth-geometry map) as frame k sees it (``matrix``: truth px -> frame px)."""
    return cv2.warpAffine(img, matrix[:2], SIZE[::-1], flags=interpolation, borderMode=cv2.BORDER_REFLECT)


def psnr(a, b, mask):
    d = (a.astype(float) - b.astype(float))[mask]
    return 10 * np.log10(255 ** 2 / np.mean(d ** 2))


def inner(rect, margin=3):
    x0, y0, x1, y1 = rect
    m = np.zeros(SIZE, bool)
    m[y0 + margin:y1 - margin, x0 + margin:x1 - margin] = True
    return m


@pytest.mark.parametrize("reference, k", [("first", 0), ("middle", N // 2), ("last", N - 1), (2, 2), ("5", 5)])
def test_output_in_the_reference_frames_geometry(stack, reference, k):
    res = fuse_stack(stack.frames, pipeline=None, reference=reference)
    assert res.reference == k and res.transforms[k].identity
    # every transform is the true one re-expressed relative to frame k (both directions of the chain)
    for i, t in enumerate(res.transforms):
        expect = stack.matrices[i] @ np.linalg.inv(stack.matrices[k])
        assert A.corner_displacement(np.linalg.inv(expect) @ t.matrix, SIZE) < 0.5, (i, t.describe())
    # the fused image is the truth as frame k sees it, and not as its neighbours see it
    mask = inner(res.valid_rect)
    scores = [psnr(res.fused, in_frame_geometry(stack.truth, m), mask) for m in stack.matrices]
    assert scores[k] > 30, scores
    assert all(scores[k] > s + 5 for j, s in enumerate(scores) if j != k), scores


def test_index_map_keeps_the_input_frame_numbers(stack):
    k = N // 2
    res = fuse_stack(stack.frames, pipeline=None, reference="middle")
    best = in_frame_geometry(stack.best_frame().astype(np.float32), stack.matrices[k], cv2.INTER_NEAREST).astype(int)
    mask = inner(res.valid_rect)
    assert res.index.min() == 0 and res.index.max() == N - 1
    assert np.mean(res.index[mask] == best[mask]) > 0.35                 # 52 % measured
    assert np.mean(res.index[mask] == N - 1 - best[mask]) < 0.15         # numbered from the other end: 4 %


def test_valid_rect_and_crop_follow_the_reference(stack):
    first = fuse_stack(stack.frames, pipeline=None, reference="first")
    middle = fuse_stack(stack.frames, pipeline=None, reference="middle", crop=True)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    assert area(middle.valid_rect) > area(first.valid_rect)            # less warping, less border
    # the rectangle every frame covers, from the true transforms relative to the middle frame
    k = N // 2
    truth = [A.Transform(m @ np.linalg.inv(stack.matrices[k])) for m in stack.matrices]
    assert np.allclose(middle.valid_rect, A.common_rect(truth, SIZE), atol=1)
    x0, y0, x1, y1 = middle.valid_rect
    assert middle.fused.shape[:2] == middle.index.shape == (y1 - y0, x1 - x0)


def test_iterator_sequence_and_files_agree(stack, tmp_path):
    """A generator's frames are held between the two passes; a list, or files, are read again."""
    listed = fuse_stack(stack.frames, pipeline=None)
    generated = fuse_stack((f for f in stack.frames), pipeline=None)
    paths = []
    for i, f in enumerate(stack.frames):
        paths.append(tmp_path / f"f{i}.png")
        write_image(paths[-1], f)
    reads = []
    files = fuse_stack(ImageFiles(paths, on_read=lambda: reads.append(1)), pipeline=None, names=[str(p) for p in paths])
    assert len(reads) == 2 * N                                           # two passes over the files
    part = ImageFiles(paths)[1:3]
    assert len(part) == 2 and np.array_equal(part[0], stack.frames[1])
    for res in (generated, files):
        np.testing.assert_array_equal(res.fused, listed.fused)
        np.testing.assert_array_equal(res.index, listed.index)
        assert res.reference == listed.reference == N // 2


def test_registered_stack_is_untouched_whatever_the_reference():
    st = S.make_stack("coffee", 5, SIZE, noise=1.0, seed=3)
    a = fuse_stack(st.frames, pipeline=None, reference="first")
    b = fuse_stack(st.frames, pipeline=None, reference="last")
    assert all(t.identity for t in b.transforms) and b.valid_rect is None
    np.testing.assert_array_equal(a.fused, b.fused)


def test_chain_checked_against_the_reference(stack):
    """A chain implausible from frame 0 (scale limit lowered below the stack's 6 %) is plausible
    from the middle frame (3 % each way): the check is made against the reference."""
    old = A.MAX_TOTAL_LOG_SCALE
    A.MAX_TOTAL_LOG_SCALE = np.log(1.045)
    try:
        with pytest.raises(A.AlignmentError, match=r"frame 5 cannot be registered to frame 4: scale 1\.05.*chained to the reference"):
            R.register_stack(stack.frames, "affine", reference="first")
        with pytest.raises(A.AlignmentError, match=r"frame 1 cannot be registered to frame 6: scale 0\.95.*chained"):
            R.register_stack(stack.frames, "affine", reference="last")
        ts = R.register_stack(stack.frames, "affine", reference="middle")
        assert all(t.ok for t in ts)
    finally:
        A.MAX_TOTAL_LOG_SCALE = old


@pytest.mark.parametrize("reference, message", [
    (12, r"reference frame 12 is outside the stack's 7 frames \(0\.\.6\)"),
    ("centre", "unknown reference frame 'centre'"),
    (-1, "unknown reference frame -1"),
    (True, "unknown reference frame True"),
])
def test_bad_reference_refused(stack, reference, message):
    with pytest.raises(InputError, match=message):
        fuse_stack(stack.frames, pipeline=None, reference=reference)


def test_out_of_range_reference_found_when_the_count_is_known(stack):
    """A generator's length is known only once it is read: the error comes then."""
    with pytest.raises(InputError, match="reference frame 7 is outside the stack's 7 frames"):
        fuse_stack((f for f in stack.frames), pipeline=None, reference=7)


def test_reference_that_does_not_apply_refused(stack):
    with pytest.raises(InputError, match="'calibration' strategy .* first frame, not middle"):
        fuse_stack(stack.frames, pipeline=None, strategy="calibration", reference="middle")
    with pytest.raises(InputError, match="needs a Fuser"):               # first: accepted (then no network here)
        fuse_stack(stack.frames, pipeline=None, strategy="calibration", reference="first")
    with pytest.raises(InputError, match="aligned stacks only"):
        fuse_stack(stack.frames, pipeline=None, align="none", reference="middle")


@pytest.fixture(scope="module")
def stack_files(stack, tmp_path_factory):
    d = tmp_path_factory.mktemp("ref_stack")
    paths = []
    for i, f in enumerate(stack.frames):
        paths.append(str(d / f"f{i}.png"))
        write_image(paths[-1], f)
    return paths


@pytest.mark.parametrize("args, message", [
    (["--reference", "12"], "reference frame 12 is outside the stack's 7 frames"),
    (["--reference", "mid"], "unknown reference frame 'mid'"),
    (["--reference", "last", "--strategy", "calibration"], "'calibration' strategy"),
    (["--reference", "first", "--align", "none"], "aligned stacks only"),
])
def test_cli_bad_reference_exit_2(stack_files, tmp_path, capsys, args, message):
    from engine.cli import main
    out = tmp_path / "out.png"
    rc = main(["--stack", *stack_files, "-o", str(out), "-q", *args])
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert message in err and err.count("\n") == 1, err


def test_cli_reference_with_a_pair_exit_2(stack_files, tmp_path, capsys):
    from engine.cli import main
    out = tmp_path / "out.png"
    with pytest.raises(SystemExit) as e:
        main([*stack_files[:2], "-o", str(out), "--reference", "first"])
    assert e.value.code == 2 and not out.exists()
    assert "--reference applies to --stack/--stacks-dir only" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--align", "none"], ["--strategy", "calibration", "--align", "none", "--tile", "0"],
                                  ["--strategy", "calibration", "--reference", "0"]])
def test_cli_defaults_where_the_reference_is_fixed(stack_files, tmp_path, capsys, weights, args):
    """No --reference: alignment none, and calibration (frame 0), run; an explicit first is accepted."""
    from engine.cli import main
    out = tmp_path / "out.png"
    rc = main(["--stack", *stack_files[:3], "-o", str(out), "-q", "--weights", str(weights), *args])
    assert rc == 0 and out.exists(), capsys.readouterr().err


def test_cli_reference_and_index_map(stack, stack_files, tmp_path):
    from engine.cli import main
    out, idx = tmp_path / "out.png", tmp_path / "idx.npy"
    assert main(["--stack", *stack_files, "-o", str(out), "--index-map", str(idx), "-q", "--reference", "2"]) == 0
    res = fuse_stack(stack.frames, pipeline=None, reference=2)
    from engine.imageio import read_image
    np.testing.assert_array_equal(read_image(out), res.fused)
    np.testing.assert_array_equal(np.load(idx), res.index)
