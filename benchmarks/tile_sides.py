"""Which tile side is fastest per megapixel, per host backend and frame size.

    python benchmarks/tile_sides.py [--backends openvino,onnxruntime] [--sides 384,512,768,1024,1536]
                                    [--frames 6000x4000,1600x1200] [--k 2,3] [--json out.json]

A tiled frame (engine.tiling) costs four ``sums`` passes over windows overlapping by
SUMS_HALO and one ``tile`` pass over windows overlapping by HALO. Each variant runs on one
window shape, so its time per window is measured once per side (median of a few runs on the
runner's static model, after a warm-up) and the frame's time is predicted from the pipeline's
own tile plans: sum over passes of (windows in the plan x time per window). Printed: seconds
per megapixel of the frame for each side, and the memory each side needs by the runner's
cost model (so the fastest side that fits a budget can be read off).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DATA = Path(os.environ.get("GACN_TEST_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "gacn"))


def window_times(runner, side: int, k: int, runs: int) -> dict[str, float]:
    """Seconds per window of each variant at side x side (wall, median)."""
    rng = np.random.default_rng(0)
    luma = rng.random((k, 1, side, side), dtype=np.float32)
    cse = rng.random((k, 64, 1, 1), dtype=np.float32)
    colmask = np.ones(side, np.float32)
    calls = {"tile": lambda: runner.infer(luma, cse)}
    for block in range(4):
        calls[f"sums{block}"] = lambda block=block: runner.block_sums(block, luma, cse[:, :16 * block], colmask)
    out = {}
    for name, fn in calls.items():
        fn()  # compiles the static model and allocates
        ts = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        out[name] = statistics.median(ts)
    return out


def predict(times: dict[str, float], height: int, width: int, side: int) -> float:
    """Seconds for one K-frame network call over a height x width frame in side-px tiles."""
    from engine.tiling import SUMS_HALO, plan
    n_sums = len(plan(height, width, side, SUMS_HALO))
    n_tile = len(plan(height, width, side))
    return n_sums * sum(times[f"sums{b}"] for b in range(4)) + n_tile * times["tile"]


def main(argv=None) -> int:
    from engine.backends.base import create_runner
    from engine.checkpoint import load_gacn
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", default="openvino,onnxruntime")
    p.add_argument("--sides", default="384,512,768,1024,1536")
    p.add_argument("--frames", default="6000x4000,1600x1200", help="WxH frames to predict")
    p.add_argument("--k", default="2", help="frames per network call (2: a pair, 3: a stack batch)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    params = load_gacn(DATA / "GACN.pkl")
    frames = [tuple(int(v) for v in f.split("x")) for f in args.frames.split(",")]
    rows = []
    for backend in args.backends.split(","):
        runner = create_runner(backend, params=params, **({"threads": args.threads} if args.threads else {}))
        runner.activate()
        for k in (int(v) for v in args.k.split(",")):
            for side in (int(s) for s in args.sides.split(",")):
                times = window_times(runner, side, k, args.runs)
                need = max(runner.memory(v, k, side, side) for v in ("tile", "sums3"))
                for w, h in frames:
                    s = predict(times, h, w, min(side, max(h, w)))
                    rows.append({"backend": backend, "k": k, "side": side, "frame": f"{w}x{h}",
                                 "s_per_mp": s / (w * h / 1e6), "seconds": s, "network_bytes": need,
                                 "window_s": times})
                    print(f"{backend:12s} K={k} side {side:5d}  {w}x{h}: {s / (w * h / 1e6):6.2f} s/MP "
                          f"({s:7.1f} s; network needs {need / 2**30:.2f} GiB)", flush=True)
        runner.deactivate()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
