"""Peak memory of one host runner variant at one shape, each in a fresh process: what the
runners' cost models (engine/backends/*.py ``memory``) are calibrated against
(benchmarks/memory_model.py) and checked against (tests/test_memory_model.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """VmHWM, the high-water mark of this process image. (Not ru_maxrss: Linux carries the
    pre-exec image's high-water mark into it, so a child of a large process, such as a test
    run, would report its parent's size.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure_one(weights, backend: str, variant: str, frames: int, side: int, threads: int | None,
                options=None) -> dict:
    """In this process: inputs are made first, then the RSS is read (the baseline: the
    interpreter, numpy and the inputs, which the pipeline counts as resident planes), then the
    runtime is imported, the runner made and the variant run three times at one shape
    (OpenVINO: the dynamic model, then the shape's static model, as the runner does for a
    repeated shape). Working bytes = peak RSS - baseline."""
    rng = np.random.default_rng(0)
    luma = rng.random((frames, 1, side, side), dtype=np.float32)
    cse = rng.random((frames, 64, 1, 1), dtype=np.float32)
    colmask = np.ones(side, np.float32)
    base = rss_bytes()
    from engine.backends.base import create_runner
    from engine.checkpoint import load_gacn
    from engine.variants import sums_block
    params = load_gacn(weights)
    options = {**({"threads": threads} if threads else {}), **(options or {})}
    runner = create_runner(backend, params=params, **options)
    runner.activate()
    after_load = rss_bytes()
    block = sums_block(variant)
    for _ in range(3):
        if block is None:
            runner.infer(luma, None if variant == "whole" else cse)
        else:
            runner.block_sums(block, luma, cse[:, :16 * block], colmask)
    peak = peak_rss_bytes()
    return {"backend": backend, "variant": variant, "frames": frames, "side": side, "pixels": side * side,
            "load_bytes": after_load - base, "work_bytes": peak - base}


def measure(weights, backend, variant, frames, side, threads=None, options=None) -> dict:
    """measure_one in a fresh interpreter (the peak is per process), without the model cache."""
    code = (f"import json; from engine.testing.memory_model import measure_one; print(json.dumps(measure_one("
            f"{str(Path(weights))!r}, {backend!r}, {variant!r}, {frames}, {side}, {threads!r}, {options!r})))")
    env = {**os.environ, "GACN_NO_MODEL_CACHE": "1"}
    root = str(Path(__file__).resolve().parent.parent.parent)   # this engine, wherever the child starts
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"measuring {backend} {variant} K={frames} {side}px failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
