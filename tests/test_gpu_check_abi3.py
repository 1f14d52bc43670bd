"""The GPU check's ABI 3 logic (benchmarks/gpu_ops.py, benchmarks/gpu_check.py) on the host
libraries: the checks pass on correct kernels and report broken ones, the A/B timings and the
feature-path timings produce their rows, and the compute-sanitizer command and verdict parsing
behave. (test_kernels_cpu.py runs check_ops, which includes check_abi3_ops, on the emulator.)"""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine import kernels as K  # noqa: E402


def _load(name):
    path = K.REPO_ROOT / "benchmarks" / f"{name}.py"
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_ops():
    return _load("gpu_ops")


def test_abi3_checks_pass_on_the_cpu_library(cpu, gpu_ops, data_dir):
    real = gpu_ops.real_inputs(torch, data_dir, "cpu", crop=(24, 70))
    rows = gpu_ops.check_abi3_ops(cpu, torch, device="cpu", quick=True, real=real)
    assert len(rows) >= 15 and all(r["ok"] for r in rows), [r for r in rows if not r["ok"]]
    assert {r.get("algo_run") for r in rows if r["name"].startswith("feature_conv")} >= {K.CONV_FFMA, K.CONV_3XTF32}
    assert any("f32 NCHW -> f16" in r["name"] and r["layout"] == "NHWC" for r in rows)


class Broken:
    """The CPU library with one ABI 3 mistake at a time."""

    def __init__(self, cpu, fault):
        self.cpu, self.fault = cpu, fault

    def __getattr__(self, name):
        return getattr(self.cpu, name)

    def feature_conv(self, x, cin, in_scale, stride, *rest):
        if self.fault == "scale ignored":
            in_scale = 0
        self.cpu.feature_conv(x, cin, in_scale, stride, *rest)

    def cse_scale(self, ps, n, blocks, count, fc1, fc2, s, stride, stream=0):
        self.cpu.cse_scale(ps, n, blocks, count * (2 if self.fault == "count" else 1), fc1, fc2, s, stride, stream)

    def activity_scaled(self, fa, fb, sa, sb, *rest):
        if self.fault == "scales swapped":
            sa, sb = sb, sa
        self.cpu.activity_scaled(fa, fb, sa, sb, *rest)


def test_abi3_checks_can_fail(cpu, gpu_ops):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 16, 9, 20, generator=gen)
    w = torch.randn(16, 16, 3, 3, generator=gen) / 12
    b = torch.randn(16, generator=gen) * 0.1
    s = torch.rand(1, 16, generator=gen) + 0.2
    args = (torch, x, 16, w, b, None, s, K.CONV_3XTF32, "random", "cpu")
    assert all(r["ok"] for r in gpu_ops.check_feature_conv(cpu, *args))
    assert not gpu_ops.check_feature_conv(Broken(cpu, "scale ignored"), *args)[0]["ok"]
    ps = torch.rand(2, 9, 16, generator=gen) * 10
    fc1, fc2 = torch.randn(2, 16, generator=gen).abs(), torch.randn(16, 2, generator=gen)  # hidden > 0
    assert gpu_ops.check_cse_scale(cpu, torch, ps, 500, fc1, fc2, "random", "cpu")["ok"]
    assert not gpu_ops.check_cse_scale(Broken(cpu, "count"), torch, ps, 500, fc1, fc2, "random", "cpu")["ok"]
    fa, fb = torch.randn(1, 4, 12, 13, generator=gen) * 0.1, torch.randn(1, 4, 12, 13, generator=gen) * 0.1
    sa, sb = torch.rand(1, 4, generator=gen) + 0.2, torch.rand(1, 4, generator=gen) + 0.2
    act = (torch, fa, fb, sa, sb, K.F32, K.NCHW, K.F16, K.NHWC, "random", "cpu")
    assert gpu_ops.check_activity_scaled(cpu, *act)["ok"]
    assert not gpu_ops.check_activity_scaled(Broken(cpu, "scales swapped"), *act)["ok"]


def test_abi3_timing_logic_on_host(cpu, gpu_ops):
    rows = gpu_ops.time_abi3_ops(cpu, torch, sizes=((16, 24),), device="cpu", reps=1, warmup=0)
    assert {r["op"] for r in rows} == {"feature_conv", "activity_scaled", "cse_scale"}
    assert len([r for r in rows if r["op"] == "feature_conv"]) == 6
    assert all(r["kernel_ms"] > 0 and r["baseline_ms"] > 0 and r["speedup"] > 0 for r in rows)
    assert {r["algo_run"] for r in rows if r["op"] == "feature_conv"} == {K.CONV_FFMA, K.CONV_3XTF32}


def test_feature_path_timing_logic_on_host(cpu, gpu_ops, params):
    from engine.backends.torch_cuda import CudaGacn
    nets = {f: CudaGacn(params, cpu, torch.float32, torch, device="cpu", features=f) for f in ("default", "tc32")}
    rows = gpu_ops.time_feature_paths(torch, nets, sizes=((12, 20),), device="cpu", reps=1, warmup=0)
    assert [r["variant"] for r in rows] == ["default", "tc32"]
    assert rows[0]["speedup"] == 1.0 and rows[1]["kernel_ms"] > 0


def test_memcheck_command_and_verdict(gpu_ops, tmp_path):
    cmd = gpu_ops.memcheck_command("/opt/cuda/bin/compute-sanitizer", sys.executable, K.REPO_ROOT)
    assert cmd[:4] == ["/opt/cuda/bin/compute-sanitizer", "--tool", "memcheck", "--error-exitcode"]
    assert cmd[-3:-1] == [sys.executable, "-c"] and "check_abi3_ops" in cmd[-1]
    compile(cmd[-1], "<memcheck>", "exec")  # the script is valid Python
    clean = "========= COMPUTE-SANITIZER\nMEMCHECK_ROWS 18 BAD 0\n========= ERROR SUMMARY: 0 errors\n"
    assert gpu_ops.parse_memcheck(0, clean)["ok"]
    dirty = "Invalid __global__ read of size 16 bytes\nMEMCHECK_ROWS 18 BAD 0\n========= ERROR SUMMARY: 2 errors\n"
    v = gpu_ops.parse_memcheck(3, dirty)
    assert not v["ok"] and v["sanitizer_errors"] == 2
    assert not gpu_ops.parse_memcheck(4, "MEMCHECK_ROWS 18 BAD 1\n========= ERROR SUMMARY: 0 errors\n")["ok"]
    assert not gpu_ops.parse_memcheck(1, "Traceback ...")["ok"]  # crashed before any check


def test_gpu_check_feature_env(monkeypatch):
    gpu_check = _load("gpu_check")
    monkeypatch.setenv("GACN_FEATURES", "fold")
    with gpu_check.feature_env("tc32"):
        import os
        assert os.environ["GACN_FEATURES"] == "tc32"
    assert os.environ["GACN_FEATURES"] == "fold"
    monkeypatch.delenv("GACN_FEATURES")
    with gpu_check.feature_env("default"):
        pass
    assert "GACN_FEATURES" not in os.environ
    assert np.isfinite(gpu_check.SIZES[0][0])
