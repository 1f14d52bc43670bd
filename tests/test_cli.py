"""gacn-fuse end to end: outputs, and every bad input refused with exit 2 and no output file."""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.imageio import read_image, write_image


@pytest.fixture()
def run(weights, capsys):
    def _run(*args):
        rc = main([*map(str, args), "--weights", str(weights), "-q"])
        out = capsys.readouterr()
        return rc, out.out, out.err
    return _run


@pytest.fixture()
def pair(data_dir):
    return data_dir / "pairs" / "color_tid_t5_1.png", data_dir / "pairs" / "color_tid_t5_2.png"


def only_inputs(folder, allowed):
    return sorted(p.name for p in folder.iterdir() if p.name not in allowed)


def test_pair_with_maps(run, pair, tmp_path, data_dir):
    """The written image and maps are the authors' outputs (FP32 tolerances), not just their shapes."""
    from engine.testing import metrics
    out, maps = tmp_path / "f.png", tmp_path / "m.npz"
    rc, _, err = run(*pair, "-o", out, "--save-maps", maps)
    assert rc == 0, err
    golden = read_image(data_dir / "golden" / "color_tid_t5_fused.png")
    z = np.load(maps)
    g = np.load(data_dir / "golden" / "color_tid_t5_maps.npz")
    assert set(z.files) == {"decision", "mask"}
    for k in z.files:
        assert z[k].dtype == np.float32 and z[k].shape == g[k].shape
    fused = read_image(out)
    assert fused.dtype == golden.dtype and fused.shape == golden.shape
    report = metrics.golden_report(fused, z["decision"], z["mask"], golden, g["decision"], g["mask"])
    assert metrics.within(report, metrics.FP32), report


def test_pairs_dir(run, data_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for n in ("gray_mwg_clock", "color_tid_t5"):
        for i in (1, 2):
            shutil.copy(data_dir / "pairs" / f"{n}_{i}.png", src)
    rc, _, err = run("--pairs-dir", src, "-o", tmp_path / "out")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["color_tid_t5.png", "gray_mwg_clock.png", "report.json"]


def test_pairs_dir_reports_the_bad_pair_and_keeps_the_rest(run, data_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in (1, 2):
        shutil.copy(data_dir / "pairs" / f"color_tid_t5_{i}.png", src)
    shutil.copy(data_dir / "pairs" / "gray_mwg_clock_1.png", src / "mixed_1.png")
    shutil.copy(data_dir / "pairs" / "color_tid_t5_1.png", src / "mixed_2.png")
    (src / "lonely_1.png").write_bytes((data_dir / "pairs" / "color_tid_t5_1.png").read_bytes())
    rc, _, err = run("--pairs-dir", src, "-o", tmp_path / "out")
    assert rc == 2
    assert "mixed" in err and "lonely" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["color_tid_t5.png", "report.json"]


def test_stack_small_with_index_map(run, data_dir, tmp_path):
    frames = sorted((data_dir / "stack9").glob("*.jpg"))[:3]
    small = []
    for i, f in enumerate(frames):  # 1/4 size keeps the test fast
        img = read_image(f)[::4, ::4]
        p = tmp_path / f"f{i}.png"
        write_image(p, img)
        small.append(p)
    for strategy in ("calibration", "sequential"):
        out, idx = tmp_path / f"{strategy}.png", tmp_path / f"{strategy}.npy"
        rc, _, err = run("--stack", *small, "-o", out, "--index-map", idx, "--strategy", strategy)
        assert rc == 0, err
        index = np.load(idx)
        assert index.shape == read_image(out).shape[:2] and index.dtype == np.int32
        assert set(np.unique(index)) <= {0, 1, 2} and len(np.unique(index)) >= 2


def test_demo(run, tmp_path):
    rc, out, err = run("--demo", "-o", tmp_path / "demo.png", "--save-maps", tmp_path / "demo.npz")
    assert rc == 0, err
    pct = float(out.split("matches the known sharp region on ")[1].split("%")[0])
    assert pct > 95.0, out
    assert (tmp_path / "demo.png").is_file() and (tmp_path / "demo.npz").is_file()


# -- bad input: message, exit code 2, no output file ------------------------------------------
def _bad(run, tmp_path, *args, expect):
    out = tmp_path / "out.png"
    before = set(os.listdir(tmp_path))
    rc, _, err = run(*args, "-o", out)
    assert rc == 2, err
    assert expect in err, err
    assert set(os.listdir(tmp_path)) == before, "an output (or partial) file was left behind"


def test_size_mismatch(run, data_dir, tmp_path):
    _bad(run, tmp_path, data_dir / "pairs" / "color_lytro_01_1.png", data_dir / "pairs" / "color_tid_t5_2.png",
         expect="size mismatch")


def test_gray_and_colour(run, data_dir, tmp_path):
    a = read_image(data_dir / "pairs" / "color_lytro_01_1.png")
    write_image(tmp_path / "g.png", a[:, :, 1])
    _bad(run, tmp_path, tmp_path / "g.png", data_dir / "pairs" / "color_lytro_01_2.png", expect="mode mismatch")


def test_too_small(run, tmp_path):
    write_image(tmp_path / "a.png", np.zeros((7, 20), np.uint8))
    write_image(tmp_path / "b.png", np.zeros((7, 20), np.uint8))
    _bad(run, tmp_path, tmp_path / "a.png", tmp_path / "b.png", expect="too small")


def test_corrupt_file(run, pair, tmp_path):
    (tmp_path / "bad.png").write_bytes(pair[0].read_bytes()[:200])
    _bad(run, tmp_path, tmp_path / "bad.png", pair[1], expect="not a readable image")


def test_missing_file(run, pair, tmp_path):
    _bad(run, tmp_path, tmp_path / "nope.png", pair[1], expect="no such file")


def test_stack_of_one(run, pair, tmp_path):
    _bad(run, tmp_path, "--stack", pair[0], expect="at least 2 frames")


def test_not_gacn_checkpoint(pair, tmp_path, capsys):
    (tmp_path / "w.pkl").write_bytes(b"\x80\x04K\x01.")
    rc = main([str(pair[0]), str(pair[1]), "-o", str(tmp_path / "o.png"), "--weights", str(tmp_path / "w.pkl"), "-q"])
    assert rc == 2 and "checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def _unwritable_targets(tmp_path):
    """Folders this process cannot create files in: a read-only folder (not for root, whom
    permission bits do not stop), and /proc and /sys, which refuse even root."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    targets = [locked] if not os.access(locked, os.W_OK) else []
    targets += [Path(p) for p in ("/proc", "/sys", "/proc/self") if os.path.isdir(p)]
    return locked, targets


def test_unwritable_output_is_refused_before_the_compute(run, pair, tmp_path, monkeypatch):
    import engine.cli as cli

    def no_compute(args):
        raise AssertionError("the model was loaded before the unwritable output was found")
    monkeypatch.setattr(cli, "_make_fuser", no_compute)
    locked, targets = _unwritable_targets(tmp_path)
    try:
        assert targets
        for target in targets:
            for option in ("-o", "--save-maps"):
                args = ["-o", target / "o.png"] if option == "-o" else ["-o", tmp_path / "o.png", "--save-maps",
                                                                        target / "m.npz"]
                rc, _, err = run(*pair, *args)
                assert rc == 2 and "not writable" in err and str(target) in err, (target, option, err)
                assert err.count("\n") == 1, err
                assert not (target / "o.png").exists() and not (target / "m.npz").exists()
        assert list(locked.iterdir()) == [] and not (tmp_path / "o.png").exists()
    finally:
        locked.chmod(0o700)


def test_output_is_a_directory(run, pair, tmp_path):
    rc, _, err = run(*pair, "-o", tmp_path)
    assert rc == 2 and "is a directory" in err


def test_output_dir_missing(run, pair, tmp_path):
    rc, _, err = run(*pair, "-o", tmp_path / "no" / "such" / "dir" / "o.png")
    assert rc == 2 and "does not exist" in err


def test_console_script_exit_code(pair, tmp_path, weights):
    """The installed entry point (the gacn-fuse script pip made, not ``python -m``) behaves like
    main() on bad input: one message, exit 2, no output. (Here the script runs the installed
    engine, which may be another checkout's; in CI it is this one.)"""
    import sysconfig
    script = Path(sysconfig.get_path("scripts")) / "gacn-fuse"
    if not script.is_file():
        pytest.skip(f"gacn-fuse is not installed in {script.parent}")
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"this is text")
    r = subprocess.run([str(script), str(bad), str(pair[1]), "-o", str(tmp_path / "o.png"), "--weights", str(weights)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"gacn-fuse: error: {bad}: not a readable image (corrupt or unsupported format)", r.stderr
    assert not (tmp_path / "o.png").exists()
