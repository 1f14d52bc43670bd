"""Peak memory of each host runner variant, and the fit of the runners' cost model.

    python benchmarks/memory_model.py --calibrate [--backends openvino,onnxruntime] [--sizes 320,640] [--json out.json]

Each measurement runs in a fresh process: inputs are made first, then the RSS is read (the
baseline: the interpreter, numpy and the inputs, which the pipeline counts as resident
planes), then the runtime is imported, the runner made and the variant run three times at
one shape (OpenVINO: the dynamic model, then the shape's static model, as the runner does for
a repeated shape). Working bytes = peak RSS - baseline. ``--calibrate`` fits
FIXED + pixels * (a + K * b) per variant by least squares over K = 2, 3 at each size and
prints the constants for engine/backends/<runner>.py (rounded up by 10 %).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from engine.variants import VARIANTS  # noqa: E402
DATA = Path(os.environ.get("GACN_TEST_DATA", REPO.parent / "shared" / "gacn"))


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


def measure_one(backend: str, variant: str, frames: int, side: int, threads: int | None, options=None) -> dict:
    """In this process: working bytes of one variant at one shape (see the module docstring)."""
    rng = np.random.default_rng(0)
    luma = rng.random((frames, 1, side, side), dtype=np.float32)
    cse = rng.random((frames, 64, 1, 1), dtype=np.float32)
    colmask = np.ones(side, np.float32)
    base = rss_bytes()
    from engine.checkpoint import load_gacn
    from engine.backends.base import create_runner
    from engine.variants import sums_block
    params = load_gacn(DATA / "GACN.pkl")
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


def measure(backend, variant, frames, side, threads, options=None) -> dict:
    """measure_one in a fresh interpreter (ru_maxrss is per process)."""
    code = (f"import json,sys; sys.path.insert(0, {str(REPO)!r}); from benchmarks.memory_model import measure_one; "
            f"print(json.dumps(measure_one({backend!r}, {variant!r}, {frames}, {side}, {threads!r}, {options!r})))")
    env = {**os.environ, "GACN_NO_MODEL_CACHE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"measuring {backend} {variant} K={frames} {side}px failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def fit(rows: list[dict]) -> tuple[float, float, float]:
    """(FIXED, a, b) of work = FIXED + px * (a + K * b), least squares."""
    x = np.array([[1.0, r["pixels"], r["pixels"] * r["frames"]] for r in rows])
    y = np.array([r["work_bytes"] for r in rows], np.float64)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return tuple(float(c) for c in coef)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", default="openvino,onnxruntime")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--sizes", default="320,640", help="square sides to measure (two or more)")
    p.add_argument("--frames", default="2,3")
    p.add_argument("--threads", type=int)
    p.add_argument("--options", type=json.loads, default={}, help="runner options as JSON, e.g. '{\"static\": \"always\"}'")
    p.add_argument("--calibrate", action="store_true", help="fit and print the cost-model constants")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    rows = []
    for backend in args.backends.split(","):
        for variant in args.variants.split(","):
            for side in (int(s) for s in args.sizes.split(",")):
                for k in (int(v) for v in args.frames.split(",")):
                    r = measure(backend, variant, k, side, args.threads, args.options if backend == "openvino" else None)
                    rows.append(r)
                    print(f"{backend:12s} {variant:6s} K={k} {side}x{side}: work {r['work_bytes'] / 2**20:8.1f} MiB "
                          f"({r['work_bytes'] / r['pixels']:7.0f} B/px; load {r['load_bytes'] / 2**20:.0f} MiB)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.calibrate:
        for backend in args.backends.split(","):
            fits = {v: fit([r for r in rows if r["backend"] == backend and r["variant"] == v])
                    for v in args.variants.split(",")}
            fixed = max(f[0] for f in fits.values())
            print(f"\n{backend}: fits (FIXED MiB, a B/px, b B/px/frame):")
            for v, (f0, a, b) in fits.items():
                worst = max(abs(f0 + r["pixels"] * (a + r["frames"] * b) - r["work_bytes"]) / r["work_bytes"]
                            for r in rows if r["backend"] == backend and r["variant"] == v)
                print(f"  {v:6s} {f0 / 2**20:7.1f} {a:8.0f} {b:8.0f}   (worst residual {worst:.1%})")
            # scaling both coefficients by 1.1 scales the fitted per-pixel term by 1.1 (a < 0 is
            # fine: K >= 2 always, and a + 2b > 0)
            per_px = {v: (int(round(a * 1.1, -1)), int(round(b * 1.1, -1))) for v, (_, a, b) in fits.items()}
            print(f"  FIXED = {int(np.ceil(fixed * 1.1 / 2**20))} << 20")
            print(f"  PER_PX = {per_px}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
