"""Batches (engine.batch, gacn-fuse --stacks-dir/--pairs-dir/--dask): a Dask run gives the
one-process outputs bit for bit, a bad job is named with a single run's message, a killed worker's
job is retried, reruns skip, Ctrl-C leaves no process and no partial output, bad input writes nothing."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import cv2
import numpy as np
import psutil
import pytest

from conftest import REPO
from engine import batch
from engine.cli import main
from engine.errors import InputError
from engine.imageio import read_image, write_image

pytest.importorskip("distributed", reason="Dask is not installed (pip install '.[dask]')")

GOOD = ["p1", "p2", "p3", "p4", "p5", "p6", "s0", "s1", "s2", "s3"]


@pytest.fixture(scope="module")
def data(tmp_path_factory, data_dir):
    """stacks/s0..s3 (3 frames of stack9 at 200x150), stacks/bad (frame f1 truncated), pairs/p1..p6
    (160x128 crops of the golden pairs), big/big_1,2 (a whole 520x520 pair: a job that lasts)."""
    root = tmp_path_factory.mktemp("batch")
    frames = [cv2.resize(read_image(f), (200, 150), interpolation=cv2.INTER_AREA)
              for f in sorted((data_dir / "stack9").glob("*.jpg"))]
    for s in range(4):
        (root / "stacks" / f"s{s}").mkdir(parents=True)
        for k in range(3):
            write_image(root / "stacks" / f"s{s}" / f"f{k}.png", frames[(s + 3 * k) % 9])
    bad = root / "stacks" / "bad"
    bad.mkdir()
    for k in range(3):
        write_image(bad / f"f{k}.png", frames[k])
    (bad / "f1.png").write_bytes((bad / "f1.png").read_bytes()[:300])
    (root / "pairs").mkdir()
    (root / "big").mkdir()
    for i in (1, 2):
        for n in range(1, 7):
            write_image(root / "pairs" / f"p{n}_{i}.png",
                        read_image(data_dir / "pairs" / f"color_lytro_0{n}_{i}.png")[:128, :160])
        shutil.copy(data_dir / "pairs" / f"color_lytro_07_{i}.png", root / "big" / f"big_{i}.png")
    return root


@pytest.fixture()
def run(weights, capsys):
    def _run(*args):
        rc = main([*map(str, args), "--weights", str(weights), "-q"])
        out = capsys.readouterr()
        return rc, out.err
    return _run


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory, weights):
    """The one-process run (no --dask) of the stacks and pairs."""
    out = tmp_path_factory.mktemp("reference")
    rc = main(["--stacks-dir", str(data / "stacks"), "--pairs-dir", str(data / "pairs"), "-o", str(out),
               "--weights", str(weights), "-q"])
    assert rc == 2
    return out


@pytest.fixture(scope="module")
def client():
    with batch.cluster("local:2") as c:
        yield c


def descendants():
    """This process's children but multiprocessing's resource tracker (one per interpreter, it
    ends with it)."""
    return {p.pid for p in psutil.Process().children(recursive=True)
            if "resource_tracker" not in " ".join(p.cmdline())}


def test_dask_outputs_are_the_one_process_outputs_and_the_bad_stack_is_named(run, data, reference, tmp_path):
    before = descendants()
    out = tmp_path / "out"
    rc, err = run("--stacks-dir", data / "stacks", "--pairs-dir", data / "pairs", "-o", out, "--dask", "local:2")
    assert rc == 2
    assert descendants() <= before, "the local cluster left processes"
    for name in GOOD:
        assert (out / f"{name}.png").read_bytes() == (reference / f"{name}.png").read_bytes(), name
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.png" for n in GOOD] + ["report.json"])
    report = json.loads((out / "report.json").read_text())
    jobs = {j["name"]: j for j in report["jobs"]}
    assert {n for n, j in jobs.items() if j["status"] == "fused"} == set(GOOD)
    assert len(report["workers"]) == 2 and all(j["worker"] in report["workers"] for j in jobs.values())
    assert all(j["tries"] == 1 for j in jobs.values())
    # the bad stack's message is the one `gacn-fuse --stack` gives for the same frames
    frames = sorted((data / "stacks" / "bad").iterdir())
    rc1, single = run("--stack", *frames, "-o", tmp_path / "single.png")
    assert rc1 == 2 and single.startswith("gacn-fuse: error: ")
    message = single.strip().removeprefix("gacn-fuse: error: ")
    assert jobs["bad"]["status"] == "failed" and jobs["bad"]["error"] == message
    assert f"gacn-fuse: error: bad: {message}" in err
    assert "f1.png: not a readable image" in message


def _executing(dask_worker):
    return [ts.key for ts in dask_worker.state.executing]


def test_a_worker_killed_while_it_fuses_its_job_is_retried(client, data, tmp_path, weights):
    jobs = batch.pair_jobs(data / "big", tmp_path / "dask") + batch.pair_jobs(data / "pairs", tmp_path / "dask")
    ref = batch.run(batch.pair_jobs(data / "big", tmp_path / "ref"), weights=weights)
    assert ref.jobs[0]["status"] == "fused"
    import threading
    killed = {}

    def kill_the_big_job():   # SIGKILL the worker that runs the big job, once it runs
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for address, keys in client.run(_executing).items():
                if any(k[1] == 0 for k in keys):   # the task key: (batch, job index); jobs[0] is the big job
                    time.sleep(0.3)
                    killed[address] = client.run(os.getpid, workers=[address])[address]
                    os.kill(killed[address], signal.SIGKILL)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_big_job)
    killer.start()
    report = batch.run(jobs, client, weights=weights)
    killer.join()
    assert killed, "the big job was never seen running"
    assert not psutil.pid_exists(next(iter(killed.values()))) or \
        psutil.Process(next(iter(killed.values()))).status() == psutil.STATUS_ZOMBIE
    records = {r["name"]: r for r in report.jobs}
    assert all(r["status"] == "fused" for r in records.values()), records
    assert records["big"]["tries"] == 2, records["big"]
    assert all(r["tries"] == 1 for n, r in records.items() if n != "big"), {n: r["tries"] for n, r in records.items()}
    assert (tmp_path / "dask" / "big.png").read_bytes() == (tmp_path / "ref" / "big.png").read_bytes()


def test_a_rerun_skips_every_job_and_overwrite_redoes_them(client, data, tmp_path, weights):
    jobs = batch.pair_jobs(data / "pairs", tmp_path) + batch.stack_jobs(data / "stacks", tmp_path)
    good = [j for j in jobs if j.name != "bad"]
    first = batch.run(good, client, weights=weights)
    assert first.count("fused") == len(good)
    stamps = {j.name: os.stat(j.output).st_mtime_ns for j in good}
    again = batch.run(good, client, weights=weights, report=tmp_path / "report.json")
    assert again.count("skipped") == len(good) and not again.workers
    assert {j.name: os.stat(j.output).st_mtime_ns for j in good} == stamps
    assert json.loads((tmp_path / "report.json").read_text())["summary"].startswith(f"{len(good)} jobs: 0 fused, {len(good)} skipped")
    os.unlink(good[0].output)   # control: a missing output is what makes a job run again
    partly = batch.run(good, client, weights=weights)
    assert [r["name"] for r in partly.jobs if r["status"] == "fused"] == [good[0].name]
    redone = batch.run(good, client, weights=weights, overwrite=True)
    assert redone.count("fused") == len(good)
    assert all(os.stat(j.output).st_mtime_ns != stamps[j.name] for j in good[1:])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["nobody-listens", "local-0", "no-stack", "one-frame", "not-an-address"])
def test_bad_input_one_message_exit_2_nothing_written(run, data, tmp_path, monkeypatch, case):
    monkeypatch.setattr(batch, "CONNECT_TIMEOUT", 2.0)
    stacks, extra, expect = data / "stacks", [], ""
    if case == "nobody-listens":
        extra, expect = ["--dask", f"tcp://127.0.0.1:{_free_port()}"], "no Dask scheduler answers"
    elif case == "local-0":
        extra, expect = ["--dask", "local:0"], "at least 1 worker, got 0"
    elif case == "not-an-address":
        extra, expect = ["--dask", "127.0.0.1"], "give local:N"
    elif case == "no-stack":
        stacks, expect = tmp_path / "empty", "no stack"
        stacks.mkdir()
        shutil.copy(data / "pairs" / "p1_1.png", stacks)   # a file is not a stack
    else:
        stacks, expect = tmp_path / "stacks", "a focus stack needs at least 2 frames, got 1"
        shutil.copytree(data / "stacks" / "s0", stacks / "s0")
        (stacks / "lonely").mkdir()
        shutil.copy(data / "pairs" / "p1_1.png", stacks / "lonely")
    before = descendants()
    rc, err = run("--stacks-dir", stacks, "-o", tmp_path / "out", *extra)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gacn-fuse: error: ") and expect in lines[0], err
    assert not (tmp_path / "out").exists()
    assert descendants() <= before


def test_python_api_refuses_bad_options_and_jobs_before_writing(data, tmp_path):
    with pytest.raises(InputError, match="unknown Fuser option"):
        batch.run(batch.pair_jobs(data / "pairs", tmp_path / "out"), treads=2)
    one = batch.Job("one", "stack", (str(data / "pairs" / "p1_1.png"),), str(tmp_path / "out" / "one.png"))
    with pytest.raises(InputError, match="a stack of 1 files"):
        batch.run([one])
    twice = batch.pair_jobs(data / "pairs", tmp_path / "out")[:1] * 2
    with pytest.raises(InputError, match="written by both"):
        batch.run(twice)
    # an option the backend cannot use is refused as the Fuser refuses it, not once per job
    for bad, message in (({"threads": 0}, "threads"), ({"backend": "onnxruntime", "precision": "bf16"}, "bf16")):
        with pytest.raises(InputError, match=message):
            batch.run(batch.pair_jobs(data / "pairs", tmp_path / "out"), **bad)
    assert not (tmp_path / "out").exists()


def test_cluster_options_with_backend_auto_are_checked_for_every_backend():
    """On a cluster with backend auto the workers pick the backend: what holds for every backend
    (the size, the tile) is refused here, what depends on the backend is left to them."""
    for bad, message in (({"max_memory": "lots"}, "lots"), ({"tile": 1}, "tile")):
        with pytest.raises(InputError, match=message):
            batch.check_fuser_options(bad, local=False)
        with pytest.raises(InputError, match=message):
            batch.check_fuser_options(bad, local=True)
    batch.check_fuser_options({"precision": "bf16"}, local=False)   # a worker's backend may run it


def test_ctrl_c_stops_cleanly_no_process_left_no_partial_output(data, tmp_path, weights):
    src = tmp_path / "in"
    src.mkdir()
    for n in range(8):   # jobs that last, so that the interrupt comes mid-batch
        for i in (1, 2):
            shutil.copy(data / "big" / f"big_{i}.png", src / f"j{n}_{i}.png")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--pairs-dir", str(src), "-o", str(out), "--dask",
                             "local:2", "--weights", str(weights), "-q"], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(out.glob("*.png")) and proc.poll() is None:
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()
        family = psutil.Process(proc.pid).children(recursive=True)
        assert len(family) >= 2, "no worker processes"
        os.killpg(proc.pid, signal.SIGINT)   # as Ctrl-C in a terminal: the whole process group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    _, alive = psutil.wait_procs(family, timeout=10)
    assert not alive, f"left running: {alive}"
    names = sorted(p.name for p in out.iterdir())
    assert all(n.endswith(".png") and not n.startswith(".") for n in names if n != "report.json"), names
    fused = [n for n in names if n.endswith(".png")]
    assert 0 < len(fused) < 8
    for n in fused:
        assert read_image(out / n).shape == (520, 520, 3)
    report = json.loads((out / "report.json").read_text())
    assert {j["status"] for j in report["jobs"]} <= {"fused", "interrupted"}
    assert sum(j["status"] == "fused" for j in report["jobs"]) == len(fused)


def _png_bomb(path, width=16000, height=16000):
    """A small PNG (250 kB) that decodes to width x height 8-bit gray (256 MB): zero rows, compressed as they stream."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    z, row, body = zlib.compressobj(6), bytes(width + 1), []
    for _ in range(height):
        body.append(z.compress(row))
    body.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(body)) + chunk(b"IEND", b""))


def test_a_job_that_keeps_killing_its_worker_fails_alone(data, tmp_path, weights, monkeypatch):
    """A stack of decompression bombs (256 MB each decoded) on a worker limited to 64M + a 256M base
    (less than the real base, for time): the nanny kills the worker each time; after Dask's allowed
    failures (1 here, for time) the job fails, named, and the good job beside it is fused."""
    import dask
    monkeypatch.setattr(batch, "WORKER_BASE", 256 << 20)
    stacks = tmp_path / "stacks"
    shutil.copytree(data / "stacks" / "s0", stacks / "s0")
    (stacks / "bomb").mkdir()
    _png_bomb(stacks / "bomb" / "f0.png")
    shutil.copy(stacks / "bomb" / "f0.png", stacks / "bomb" / "f1.png")
    environ = dict(os.environ)
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            batch.cluster("local:1", max_memory="64M") as c:
        assert os.environ.get("OMP_NUM_THREADS") == "1"   # what Dask sets for its workers (the control)
        report = batch.run(batch.stack_jobs(stacks, tmp_path / "out"), c, weights=weights)
    assert dict(os.environ) == environ   # the caller's environment is its own again
    jobs = {r["name"]: r for r in report.jobs}
    assert jobs["s0"]["status"] == "fused"
    assert jobs["bomb"]["status"] == "failed" and "worker died 2 times" in jobs["bomb"]["error"], jobs["bomb"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s0.png"]


def test_stacks_dir_index_maps_and_leftovers_of_a_killed_write(run, data, tmp_path):
    """--index-map names a format with --stacks-dir; a temporary file an earlier, killed run of a
    job left beside its output is removed when the job runs again (another name is kept)."""
    stacks = tmp_path / "stacks"
    shutil.copytree(data / "stacks" / "s0", stacks / "s0")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".s0.png.0123abcd.part").write_bytes(b"partial")
    (out / ".other.png.0123abcd.part").write_bytes(b"not ours")
    rc, err = run("--stacks-dir", stacks, "-o", out, "--index-map", ".npy")
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == [".other.png.0123abcd.part", "report.json", "s0.png", "s0_index.npy"]
    index = np.load(out / "s0_index.npy")
    assert index.shape == read_image(out / "s0.png").shape[:2] and set(np.unique(index)) <= {0, 1, 2}
    rc, err = run("--stacks-dir", stacks, "-o", tmp_path / "jpg", "--index-map", ".jpg")
    assert rc == 2 and "--index-map with --stacks-dir takes a format" in err and not (tmp_path / "jpg").exists()
