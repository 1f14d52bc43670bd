"""What gacn-fuse writes: permissions, bit depth, frame order, clashes, video timing; and the
refusals that must come before any compute (checked by making the compute itself fail)."""
import logging
import os
import stat

import cv2
import numpy as np
import pytest

import engine.cli as cli
from engine.cli import main
from engine.atomic import write_bytes_atomic
from engine.imageio import read_image, to_8_bit, write_image


@pytest.fixture()
def small(data_dir, tmp_path):
    """A 64x64 crop of a golden pair (8-bit RGB) as two PNG files."""
    paths = []
    for i in (1, 2):
        p = tmp_path / f"src_{i}.png"
        write_image(p, read_image(data_dir / "pairs" / f"color_tid_t5_{i}.png")[100:164, 200:264])
        paths.append(p)
    return paths


@pytest.fixture()
def run(weights, capsys):
    def _run(*args, quiet=True):
        rc = main([*map(str, args), "--weights", str(weights), *(["-q"] if quiet else [])])
        out = capsys.readouterr()
        return rc, out.out, out.err
    return _run


@pytest.fixture()
def no_compute(monkeypatch):
    """Any attempt to load a model fails the test: what is refused must be refused before."""
    def refuse(args, **kw):
        raise AssertionError("the model was loaded before the refusal")
    monkeypatch.setattr(cli, "_make_fuser", refuse)


@pytest.fixture()
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


# -- permissions ------------------------------------------------------------------------------------
def test_outputs_respect_the_umask(run, small, tmp_path, umask):
    for mask, want in ((0o022, 0o644), (0o027, 0o640), (0o077, 0o600)):
        umask(mask)
        out, maps = tmp_path / f"f{mask:o}.png", tmp_path / f"m{mask:o}.npz"
        rc, _, err = run(*small, "-o", out, "--save-maps", maps)
        assert rc == 0, err
        assert (_mode(out), _mode(maps)) == (want, want), (oct(mask), oct(_mode(out)), oct(_mode(maps)))
        write_bytes_atomic(tmp_path / "x.bin", b"x")
        assert _mode(tmp_path / "x.bin") == want


# -- bit depth -------------------------------------------------------------------------------------
@pytest.fixture()
def small16(small, tmp_path):
    paths = []
    for i, p in enumerate(small, 1):
        q = tmp_path / f"src16_{i}.png"
        write_image(q, read_image(p).astype(np.uint16) * 257)
        paths.append(q)
    return paths


def test_16_bit_to_jpeg_is_scaled_with_a_warning_before_the_compute(run, small16, tmp_path, monkeypatch):
    rc, _, err = run(*small16, "-o", tmp_path / "ref.png")
    assert rc == 0, err
    ref = read_image(tmp_path / "ref.png")
    assert ref.dtype == np.uint16
    order = []

    class Record(logging.Handler):
        def emit(self, record):
            order.append(record.getMessage())

    real = cli._make_fuser
    monkeypatch.setattr(cli, "_make_fuser", lambda args, **kw: (order.append("compute"), real(args, **kw))[1])
    handler = Record(logging.WARNING)
    logging.getLogger().addHandler(handler)
    try:
        rc, _, err = run(*small16, "-o", tmp_path / "f.jpg")
    finally:
        logging.getLogger().removeHandler(handler)
    assert rc == 0, err
    warned = [i for i, m in enumerate(order) if "scaled to 8 bits" in m]
    assert warned and warned[0] < order.index("compute"), order
    jpg = read_image(tmp_path / "f.jpg")
    assert jpg.dtype == np.uint8
    assert np.abs(jpg.astype(int) - to_8_bit(ref)).mean() < 2.0  # JPEG error only, not a white image


def test_to_8_bit_maps_the_full_range():
    x = np.array([0, 128, 257, 32767, 65535], np.uint16)
    assert to_8_bit(x).tolist() == [0, 0, 1, 127, 255]


@pytest.fixture()
def stack3(small, tmp_path):
    paths = [*small, tmp_path / "src_3.png"]
    write_image(paths[2], read_image(small[0])[:, ::-1])
    return paths


@pytest.mark.parametrize("name, words", [("idx.jpg", "lossy format"), ("idx.webp", "lossy format"),
                                         ("idx", "lossy format")])
def test_index_map_that_cannot_hold_indices_is_refused_before_the_compute(run, stack3, tmp_path, no_compute,
                                                                         name, words):
    before = sorted(os.listdir(tmp_path))
    rc, _, err = run("--stack", *stack3, "-o", tmp_path / "f.png", "--index-map", tmp_path / name)
    assert rc == 2 and "index map needs .npy or a lossless 16-bit image" in err and words in err, err
    assert sorted(os.listdir(tmp_path)) == before


def test_index_map_image_holds_the_indices(run, stack3, tmp_path):
    for name in ("idx.npy", "idx.png", "idx.tif", "idx.bmp"):
        rc, _, err = run("--stack", *stack3, "-o", tmp_path / "f.png", "--index-map", tmp_path / name)
        assert rc == 0, err
    ref = np.load(tmp_path / "idx.npy")
    assert len(np.unique(ref)) == 3
    for name in ("idx.png", "idx.tif", "idx.bmp"):
        np.testing.assert_array_equal(read_image(tmp_path / name), ref, err_msg=name)


# -- clashes and bad options -------------------------------------------------------------------------
def test_output_and_maps_on_one_file_is_refused(run, small, tmp_path, no_compute):
    for maps in (tmp_path / "f.png", tmp_path / "." / "f.png"):
        rc, _, err = run(*small, "-o", tmp_path / "f.png", "--save-maps", maps)
        assert rc == 2 and "both name" in err, err
    assert not (tmp_path / "f.png").exists()


def test_slots_zero_is_a_clear_error_and_leaves_nothing(run, small, tmp_path, no_compute):
    src = tmp_path / "frames"
    src.mkdir()
    write_image(src / "0.png", read_image(small[0]))
    rc, _, err = run("--stream", src, src, "-o", tmp_path / "out", "--slots", "0")
    assert rc == 2 and "--slots must be at least 1" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_stream_directory_output_that_cannot_be_written_leaves_no_directory(run, small, tmp_path, no_compute):
    src = tmp_path / "frames"
    src.mkdir()
    write_image(src / "0.png", read_image(small[0]))
    for out in ("/proc/gacn-out", "/sys/gacn-out"):
        rc, _, err = run("--stream", src, src, "-o", out)
        assert rc == 2 and ("not writable" in err or "cannot create the output directory" in err), err
        assert not os.path.exists(out)


# -- stream order and video timing -----------------------------------------------------------------
def _numbered_frames(folder, count, fmt="f{}.png", size=32):
    """Frame i is a flat image of value 10 + 10 i: fusing a frame with itself gives it back."""
    folder.mkdir()
    for i in range(count):
        write_image(folder / fmt.format(i), np.full((size, size, 3), 10 + 10 * i, np.uint8))
    return folder


def test_stream_directories_in_natural_order(run, tmp_path, caplog):
    src = _numbered_frames(tmp_path / "a", 12)  # f0 ... f11: a string sort gives f0, f1, f10, f11, f2, ...
    caplog.set_level("INFO")
    rc, _, err = run("--stream", src, src, "-o", tmp_path / "out", quiet=False)
    assert rc == 0, err
    got = [int(read_image(tmp_path / "out" / f"{i:06d}.png").mean()) for i in range(12)]
    assert got == [10 + 10 * i for i in range(12)], got
    assert any("natural order" in r.getMessage() and "f0.png, f1.png, f2.png" in r.getMessage() for r in caplog.records)


def _video_values(path):
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return out
        out.append(int(round(frame.mean())))


@pytest.mark.parametrize("bad, expect", [(2, "repeat of the previous frame"), (0, "black frame")])
def test_video_keeps_its_timing_when_a_frame_fails(run, tmp_path, bad, expect):
    src = _numbered_frames(tmp_path / "a", 5)
    other = _numbered_frames(tmp_path / "b", 5)
    (src / f"f{bad}.png").write_bytes(b"not an image")
    rc, _, err = run("--stream", src, other, "-o", tmp_path / "out.avi")
    assert rc == 2 and f"frame {bad}:" in err and expect in err, err
    values = _video_values(tmp_path / "out.avi")
    want = [10 + 10 * i for i in range(5)]
    want[bad] = want[bad - 1] if bad else 0
    assert len(values) == 5 and np.allclose(values, want, atol=3), values


def test_video_without_an_encoder_is_one_error_not_a_silent_empty_file(run, tmp_path, monkeypatch):
    import cv2

    class NoEncoder:             # what cv2.VideoWriter is where the codec is missing
        def __init__(self, *args):
            pass

        def isOpened(self):
            return False

        def write(self, frame):
            pass

        def release(self):
            pass
    monkeypatch.setattr(cv2, "VideoWriter", NoEncoder)
    src, other = _numbered_frames(tmp_path / "a", 3), _numbered_frames(tmp_path / "b", 3)
    rc, _, err = run("--stream", src, other, "-o", tmp_path / "out.avi")
    assert rc == 2 and "cannot write '.avi' video" in err and err.count("error:") == 1, err
    assert not (tmp_path / "out.avi").exists() and not list(tmp_path.glob("*.avi*"))
