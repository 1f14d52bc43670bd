"""A GACN Triton server for the serving tests (loopback, free ports, always stopped) and the local
Fuser its answers must equal (same backend and threads)."""
from __future__ import annotations

import os

import pytest

pytest.importorskip("tritonclient", reason="the serving tests need the [serve] extra (.ci/serve-tests)")

BACKEND, THREADS = "openvino", 2


def start_server(tmp_path, weights, *, log_name="tritonserver.log", ports=None, **options):
    from engine.serve.repository import ModelOptions, write_repository
    from engine.serve.server import TritonServer, free_port
    repo = tmp_path / "repo"
    if not repo.is_dir():
        write_repository(repo, ModelOptions(backend=BACKEND, weights=str(weights), threads=THREADS, **options).check())
    ports = ports or {k: free_port() for k in ("http_port", "grpc_port", "metrics_port")}
    server = TritonServer(repo, log_file=tmp_path / log_name, **ports).start()
    try:
        return server.wait_ready(180)
    except BaseException:
        server.stop()
        raise


@pytest.fixture(scope="session")
def server(tmp_path_factory, weights):
    s = start_server(tmp_path_factory.mktemp("triton"), weights, max_batch=4)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def local(weights):
    from engine import Fuser
    with Fuser(BACKEND, weights=weights, threads=THREADS) as f:
        yield f


@pytest.fixture(params=["http", "grpc"])
def url(request, server):
    return server.url if request.param == "http" else server.grpc_url


@pytest.fixture(scope="session")
def env():
    """For gacn-fuse in a subprocess: this checkout's engine."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), e.get("PYTHONPATH")]))
    return e


@pytest.fixture
def start(tmp_path, weights):
    """Start servers of one repository (512 MiB budget, no tiles); all stopped at the end."""
    started = []

    def go(ports=None):
        s = start_server(tmp_path, weights, ports=ports, log_name=f"tritonserver{len(started)}.log",
                         max_memory="512M", tile=0)
        started.append(s)
        return s
    yield go
    for s in started:
        s.stop()
