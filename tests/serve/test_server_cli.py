"""gacn-serve as a user runs it, and the generated configs parsed by Triton's own protobuf schema."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from engine.serve.repository import PLAN, ModelOptions, write_repository
from engine.serve.server import free_port


def test_configs_parse_as_triton_model_configs(tmp_path, weights):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc
    plan = tmp_path / "fake.plan"
    plan.write_bytes(b"not a real plan: the TensorRT backend cannot run here")
    write_repository(tmp_path / "r", ModelOptions(weights=str(weights), max_batch=3, kind="gpu", instances=2).check(),
                     tensorrt_plan=str(plan))
    configs = {p.parent.name: text_format.Parse(p.read_text(), mc.ModelConfig())
               for p in (tmp_path / "r").glob("*/config.pbtxt")}
    assert configs["gacn"].max_batch_size == 3 and configs["gacn"].dynamic_batching is not None
    assert configs["gacn"].instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert configs["gacn_16"].input[0].data_type == mc.TYPE_UINT16
    assert configs["gacn_stack"].max_batch_size == 0 and [o.name for o in configs["gacn_stack"].output] == ["FUSED", "INDEX"]
    assert configs[PLAN].platform == "tensorrt_plan" and configs[PLAN].input[0].name == "luma"
    assert (tmp_path / "r" / PLAN / "1" / "model.plan").read_bytes() == plan.read_bytes()


def serve(*args, env, log=subprocess.PIPE):
    return subprocess.Popen([sys.executable, "-m", "engine.serve.server", *args], stdout=subprocess.PIPE,
                            stderr=log, text=True, env=env)


def test_port_in_use_is_one_message(weights, env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        p = serve("--weights", str(weights), "--http-port", str(s.getsockname()[1]), "--grpc-port", str(free_port()),
                  "--metrics-port", str(free_port()), env=env)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "cannot listen on 127.0.0.1" in err and "Traceback" not in err, err


def test_sigterm_stops_gacn_serve_within_10_s(weights, env, tmp_path):
    ports = [free_port() for _ in range(3)]
    log = tmp_path / "serve.log"
    p = serve("--weights", str(weights), "--backend", "openvino", "--threads", "1", "--repo", str(tmp_path / "repo"),
              "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]), env=env, log=log.open("w"))
    try:
        deadline = time.monotonic() + 180
        ready = []
        while not ready and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.2)
            ready = [ln for ln in log.read_text().splitlines() if ln.startswith("gacn-serve: ready")]
        assert ready and f"http://127.0.0.1:{ports[0]}" in ready[0], log.read_text()[-3000:]
        tree = [c.pid for c in psutil.Process(p.pid).children(recursive=True)]
        assert tree
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        p.wait(15)
        assert time.monotonic() - t0 < 10 and p.returncode == 0
        from test_faults import gone
        assert gone(tree)
    finally:
        if p.poll() is None:
            p.terminate()
            p.wait(30)
            pytest.fail("gacn-serve did not stop")
