"""What a user reads on stderr: only our messages (no raw libpng/OpenCV lines), log lines above
the progress bars, bars that finish and stay, the right units, whole help texts, --version."""
import contextlib
import logging
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from conftest import REPO
from engine.cli import main
from engine.imageio import PNG_SIGNATURE, read_image, write_image


def _chunk(ctype: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(ctype + data) & 0xFFFFFFFF if crc is None else crc
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", crc)


def noisy_png(path, img):
    """A valid PNG that makes libpng warn: a bad iCCP profile and a gAMA chunk with a wrong CRC."""
    write_image(path, img)
    data = path.read_bytes()
    ihdr_end = len(PNG_SIGNATURE) + 25
    extra = _chunk(b"iCCP", b"bad\x00\x00" + zlib.compress(b"not an ICC profile")) + \
        _chunk(b"gAMA", struct.pack(">I", 45455), crc=0)
    path.write_bytes(data[:ihdr_end] + extra + data[ihdr_end:])


@pytest.fixture()
def small(data_dir):
    return [read_image(data_dir / "pairs" / f"color_tid_t5_{i}.png")[100:164, 200:264] for i in (1, 2)]


@contextlib.contextmanager
def fresh_process_logging():
    """The root logger as a fresh process has it (no handlers: main's basicConfig installs its
    console handler), restored afterwards. Used inside the test body, where pytest's own
    capture handlers are attached."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        yield
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


def screen(text: str) -> list[str]:
    """What a terminal shows after ``text``: '\\r' returns to the line start and overwrites."""
    lines, line, col = [], [], 0
    for ch in text:
        if ch == "\n":
            lines.append("".join(line).rstrip())
            line, col = [], 0
        elif ch == "\r":
            col = 0
        else:
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
    lines.append("".join(line).rstrip())
    return [ln for ln in lines if ln]


def test_libpng_warnings_never_reach_stderr(small, tmp_path, weights, capfd):
    for i, img in enumerate(small, 1):
        noisy_png(tmp_path / f"n_{i}.png", img)
    assert np.array_equal(read_image(tmp_path / "n_1.png"), small[0])  # same pixels as the clean file
    rc = main([str(tmp_path / "n_1.png"), str(tmp_path / "n_2.png"), "-o", str(tmp_path / "o.png"),
               "--weights", str(weights), "-q"])
    err = capfd.readouterr().err
    assert rc == 0, err
    assert "libpng" not in err and err == "", err
    # negative control: the same file handed to the decoder as it is does make libpng write to stderr
    import cv2
    assert cv2.imdecode(np.fromfile(tmp_path / "n_1.png", np.uint8), cv2.IMREAD_UNCHANGED) is not None
    assert "libpng" in capfd.readouterr().err


def test_a_corrupt_png_gives_our_message_only(small, tmp_path, weights, capfd):
    write_image(tmp_path / "a.png", small[0])
    write_image(tmp_path / "b.png", small[1])
    (tmp_path / "cut.png").write_bytes((tmp_path / "a.png").read_bytes()[:300])
    rc = main([str(tmp_path / "cut.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "o.png"),
               "--weights", str(weights), "-q"])
    err = capfd.readouterr().err
    assert rc == 2
    assert err.splitlines() == [f"gacn-fuse: error: {tmp_path / 'cut.png'}: not a readable image "
                                "(corrupt or unsupported format)"], err


def test_log_lines_print_above_the_progress_bar(small, tmp_path, weights, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for n in range(3):  # RGBA sources: the decode threads log a warning while the bar is shown
        for i, img in enumerate(small, 1):
            write_image(src / f"p{n}_{i}.png", np.dstack([img, np.full(img.shape[:2], 255, np.uint8)]))
    with fresh_process_logging():
        rc = main(["--pairs-dir", str(src), "-o", str(tmp_path / "out"), "--weights", str(weights)])
    err = capsys.readouterr().err
    assert rc == 0, err
    shown = screen(err)
    logged = [ln for ln in shown if "ignoring the alpha channel" in ln]
    assert len(logged) == 6, shown
    assert all(ln.startswith("WARNING engine.imageio: ") for ln in logged), shown  # not after bar text
    bars = [ln for ln in shown if ln.startswith("pairs:")]
    assert bars and "3/3" in bars[-1], shown  # the bar finished and stayed
    assert ("pair/s" in bars[-1] or "s/pair" in bars[-1]) and "frame" not in bars[-1], bars[-1]


def test_stream_bar_finishes_and_stays(tmp_path, weights, capsys):
    src = tmp_path / "frames"
    src.mkdir()
    for i in range(12):
        write_image(src / f"{i}.png", np.full((32, 32), 20 * i, np.uint8))
    with fresh_process_logging():
        rc = main(["--stream", str(src), str(src), "-o", str(tmp_path / "out"), "--weights", str(weights)])
    err = capsys.readouterr().err
    assert rc == 0, err
    bars = [ln for ln in screen(err) if ln.startswith("stream:")]
    assert len(bars) == 1 and "12/12" in bars[0] and "100%" in bars[0], screen(err)


def test_version_flags(capsys):
    """Each tool prints its own console-script name and the version, nothing else."""
    from engine import __version__
    from engine.export import build_engine, export_onnx
    for entry, name in ((main, "gacn-fuse"), (export_onnx.main, "gacn-export"), (build_engine.main, "gacn-build-engine")):
        with pytest.raises(SystemExit) as e:
            entry(["--version"])
        out = capsys.readouterr().out
        assert e.value.code == 0 and out.split() == [name, __version__], out


def test_latency_help_has_its_whole_description():
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "latency.py"), "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert ("Latency of GACN per backend and frame size, with the eager FP32 PyTorch model of the same network "
            "(engine/export/model.py) measured in the same run as the baseline; on the CPU also the start-up, the CLI over "
            "a directory of pairs, and the users' alternatives on the same pairs.") in text, r.stdout
