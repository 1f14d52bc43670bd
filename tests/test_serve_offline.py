"""Serving without a server (main suite, no [serve] extra): the repository writer, the option
refusals of gacn-export --triton-repo and gacn-fuse --server, and the missing-extra messages."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from conftest import REPO
from engine.errors import InputError
from engine.serve.repository import PAIR, STACK, ModelOptions, write_repository

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tritonclient") is not None,
                                reason="the [serve] extra is installed here: tests/serve covers it")


def run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_repository_models_and_parameters_round_trip(tmp_path, weights):
    o = ModelOptions(backend="onnxruntime", weights=str(weights), threads=2, max_memory="1G", max_batch=4).check()
    write_repository(tmp_path, o)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([PAIR, PAIR + "_16", STACK, STACK + "_16"])
    config = (tmp_path / PAIR / "config.pbtxt").read_text()
    assert "dynamic_batching" in config and "max_batch_size: 4" in config and "TYPE_UINT8" in config
    assert "TYPE_UINT16" in (tmp_path / (STACK + "_16") / "config.pbtxt").read_text()
    assert ModelOptions.from_parameters(o.to_parameters()) == o
    assert "engine.serve.models" in (tmp_path / PAIR / "1" / "model.py").read_text()


@pytest.mark.parametrize("bad, message", [({"kind": "tpu"}, "instance kind"), ({"instances": 0}, "--instances"),
                                          ({"max_batch": -1}, "--max-batch"), ({"weights": "/nope.pkl"}, "no such file"),
                                          ({"max_memory": "lots"}, "lots")])
def test_bad_model_options_refused_before_writing(tmp_path, bad, message):
    with pytest.raises(InputError, match=message):
        ModelOptions(**bad).check()


def test_export_triton_repo_refuses_graph_options(tmp_path, weights):
    r = run("export/export_onnx.py", "--weights", str(weights), "--triton-repo", str(tmp_path / "r"), "--fp16")
    assert r.returncode == 2 and "--fp16 do(es) not apply with --triton-repo" in r.stderr
    r = run("export/export_onnx.py", "--weights", str(weights), "--triton-repo", str(tmp_path / "r"), "--triton-max-batch", "2")
    assert r.returncode == 0, r.stderr
    assert "max_batch_size: 2" in (tmp_path / "r" / PAIR / "config.pbtxt").read_text()


def test_fuse_server_refuses_local_options_and_reports_missing_client(tmp_path, data_dir):
    r = run("-m", "engine.cli", "--server", "http://127.0.0.1:9", "--threads", "2", "a.png", "b.png", "-o", "x.png")
    assert r.returncode == 2 and "--threads do(es) not apply with --server" in r.stderr
    r = run("-m", "engine.cli", "--retries", "3", "a.png", "b.png", "-o", "x.png")
    assert r.returncode == 2 and "--retries apply with --server only" in r.stderr
    a = data_dir / "pairs" / "color_lytro_01_1.png"
    r = run("-m", "engine.cli", "--server", "http://127.0.0.1:9", str(a), str(a), "-o", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "needs tritonclient" in r.stderr and "Traceback" not in r.stderr


def test_serve_without_the_extra_is_one_message():
    r = run("-m", "engine.serve.server", "--weights", "x")
    assert r.returncode == 2 and "[serve] extra" in r.stderr and "Traceback" not in r.stderr
