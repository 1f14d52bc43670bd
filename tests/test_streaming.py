"""Streaming on the CPU backend: order, no drops, flat host memory, a bad frame reported by index."""
import numpy as np
import psutil
import pytest

from engine.cli import main
from engine.errors import InputError
from engine.imageio import read_image, write_image


def frames(n, h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    for i in range(n):
        a = np.roll(base, i, axis=1)
        b = a.copy()
        b[:, : w // 2] = 0           # B is blank on the left: the fusion must keep A's texture there
        yield a, b


def test_thousand_frames_in_order_no_drops_flat_memory(ort_fuser):
    proc = psutil.Process()
    seen, rss = [], []
    expected = frames(1000)
    for res in ort_fuser.stream(frames(1000), slots=3):
        assert res.ok, res.error
        seen.append(res.index)
        a, b = next(expected)  # every frame differs: a reordered or swapped result cannot match
        np.testing.assert_array_equal(res.fused, ort_fuser.fuse(a, b).fused)
        if res.index % 100 == 99:
            rss.append(proc.memory_info().rss)
    assert seen == list(range(1000))
    growth = rss[-1] - rss[1]
    assert growth < 20 * 2**20, f"host memory grew by {growth / 2**20:.1f} MiB over 800 frames"


def test_bad_frame_reported_by_index_and_the_rest_complete(ort_fuser):
    items = list(frames(6))
    items[2] = (items[2][0], np.zeros((5, 5, 3), np.uint8))    # too small
    items[4] = InputError("frame 4: corrupt JPEG")              # as a decoder reports it
    results = list(ort_fuser.stream(iter(items), slots=2))
    assert [r.index for r in results] == list(range(6))
    assert [r.ok for r in results] == [True, True, False, True, False, True]
    assert "too small" in str(results[2].error) and "corrupt" in str(results[4].error)


def test_back_pressure_reads_at_most_slots_ahead(ort_fuser):
    pulled = []

    def source():
        for i, pair in enumerate(frames(10)):
            pulled.append(i)
            yield pair

    it = ort_fuser.stream(source(), slots=3)
    first = next(it)
    assert first.index == 0 and len(pulled) <= 4
    assert len(list(it)) == 9


@pytest.mark.parametrize("kind", ["dir", "video"])
def test_stream_cli(kind, weights, tmp_path, capsys):
    cv2 = pytest.importorskip("cv2")
    n = 5
    srcs = []
    for s in "ab":
        d = tmp_path / s
        d.mkdir()
        srcs.append(d)
    for i, (a, b) in enumerate(frames(n, 32, 48)):
        write_image(srcs[0] / f"{i:03d}.png", a)
        write_image(srcs[1] / f"{i:03d}.png", b)
    if kind == "video":
        vids = []
        for d in srcs:
            v = tmp_path / f"{d.name}.avi"
            wr = cv2.VideoWriter(str(v), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
            for f in sorted(d.iterdir()):
                wr.write(cv2.imread(str(f)))
            wr.release()
            vids.append(v)
        srcs = vids
    out = tmp_path / ("out" if kind == "dir" else "out.avi")
    rc = main(["--stream", str(srcs[0]), str(srcs[1]), "-o", str(out), "--weights", str(weights), "-q"])
    assert rc == 0, capsys.readouterr().err
    if kind == "dir":
        assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.png" for i in range(n)]
        assert read_image(out / "000000.png").shape == (32, 48, 3)
    else:
        cap = cv2.VideoCapture(str(out))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_stream_cli_reports_corrupt_frame(weights, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for i, (fa, fb) in enumerate(frames(4, 32, 48)):
        write_image(a / f"{i}.png", fa)
        write_image(b / f"{i}.png", fb)
    (b / "2.png").write_bytes(b"garbage")
    out = tmp_path / "out"
    rc = main(["--stream", str(a), str(b), "-o", str(out), "--weights", str(weights), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "frame 2" in err and "2.png" in err
    assert sorted(p.name for p in out.iterdir()) == ["000000.png", "000001.png", "000003.png"]
