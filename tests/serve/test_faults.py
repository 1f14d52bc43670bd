"""Faults: the server killed mid-request (client: one message naming the URL, exit 2, within its
timeout; a restarted server answers), SIGTERM while requests run (they finish or are refused
cleanly, and the server is gone within 10 s); a frame too large for --max-memory is refused."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest

from engine.client import RemoteFuser, ServerError
from engine.errors import InputError
from engine.imageio import read_image, write_image

TIMEOUT = 60


@pytest.fixture(scope="module")
def frames(data_dir):
    return [read_image(p)[::4, ::4].copy() for p in sorted((data_dir / "stack9").glob("*.jpg"))]


def gone(pids, within: float = 3.0) -> bool:
    """No process of ``pids`` left (zombies awaiting their reaper count as gone) within ``within`` s."""
    def alive(p):
        try:
            return psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
    deadline = time.monotonic() + within
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def tree(server) -> list[int]:
    p = psutil.Process(server.proc.pid)
    return [p.pid] + [c.pid for c in p.children(recursive=True)]


def stack_stub(server) -> psutil.Process:
    return next(psutil.Process(p) for p in tree(server)[1:] if "gacn_stack/1/model.py" in " ".join(psutil.Process(p).cmdline()))


def cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def test_sigkill_mid_request_then_restart(start, frames, tmp_path, env):
    server = start()
    paths = []
    for i, f in enumerate(frames):
        paths.append(str(tmp_path / f"f{i}.png"))
        write_image(paths[-1], f, announce=False)
    cmd = [sys.executable, "-m", "engine.cli", "--server", server.url, "--timeout", str(TIMEOUT), "--retries", "0",
           "-q", "--stack", *paths, "--strategy", "calibration", "-o", str(tmp_path / "out.png")]
    stub = stack_stub(server)
    idle = cpu(stub)
    t0 = time.monotonic()
    client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60   # wait until the stack is in the server (a stub is computing)
    while time.monotonic() < deadline and cpu(stub) - idle < 0.3 and client.poll() is None:
        time.sleep(0.02)
    pids = tree(server)
    server.kill()
    out, err = client.communicate(timeout=TIMEOUT + 30)
    assert client.returncode == 2, f"the stack finished before the kill: {err}"
    assert server.url in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert time.monotonic() - t0 < TIMEOUT + 20
    assert not (tmp_path / "out.png").exists()
    assert gone(pids)

    again = start(ports={"http_port": server.ports["http"], "grpc_port": server.ports["grpc"],
                         "metrics_port": server.ports["metrics"]})
    with RemoteFuser(again.url) as f:
        assert f.fuse_stack(frames[:2], strategy="focus-weights").fused.shape == frames[0].shape


def test_sigterm_while_requests_run(start, frames):
    server = start()
    results = []

    def client(k):
        try:
            with RemoteFuser(server.url if k % 2 else server.grpc_url, timeout=TIMEOUT, retries=0) as f:
                results.append(f.fuse(frames[k], frames[k + 1]).fused.shape)
        except (ServerError, InputError) as e:   # a clean refusal
            results.append(str(e))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    pids = tree(server)
    t0 = time.monotonic()
    server.stop()
    assert time.monotonic() - t0 < 10.5
    assert gone(pids)
    for t in threads:
        t.join(TIMEOUT + 10)
    assert not any(t.is_alive() for t in threads)
    assert len(results) == 4, results   # every request answered or refused, none hung


def test_too_large_for_max_memory_refused(start, frames):
    server = start()
    big = np.zeros((1200, 1600, 3), np.uint8)
    with RemoteFuser(server.url) as f:
        with pytest.raises(InputError, match="memory budget"):
            f.fuse(big, big)
        f.fuse(frames[0], frames[1])
