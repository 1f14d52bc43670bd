"""What tiled execution costs: time per megapixel against size, and where a tiled pair's time goes.

    python benchmarks/tiling_cost.py [--backend auto] [--sizes 600x800,1200x1600,4000x6000]

One process, default settings (the memory budget picks whole frames or tiles): each size is
warmed up once and timed over --runs pairs (median), textured camera-like pairs
(benchmarks/memory.py). For every tiled size the executor's calls are timed by phase: the four
CSE sums passes (which recompute the feature blocks) against the tile network, and the rest
(luma, blend, copies). Prints a markdown table; ratios are against the first size.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

DATA = Path(os.environ.get("GACN_TEST_DATA", ROOT.parent / "shared" / "gacn"))


class PhaseTimer:
    """Wraps an executor's network and block_sums calls to add up their wall time."""

    def __init__(self, ex):
        self.ex, self.t = ex, {"sums passes": 0.0, "tile network": 0.0}
        ex.network, ex.block_sums = self._timed(ex.network, "tile network"), self._timed(ex.block_sums, "sums passes")

    def _timed(self, call, phase: str):
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return call(*a, **k)
            finally:
                self.t[phase] += time.perf_counter() - t
        return timed

    def reset(self):
        for k in self.t:
            self.t[k] = 0.0


def main(argv=None) -> int:
    from engine.testing.pairs import camera_pair
    from engine import Fuser
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="auto", help="default: what gacn-fuse picks (OpenVINO on the CPU)")
    p.add_argument("--weights", default=str(DATA / "GACN.pkl"))
    p.add_argument("--sizes", default="600x800,1200x1600,4000x6000", help="HxW, comma separated")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--max-memory")
    p.add_argument("--precision", default="fp32", help="fp32, or bf16 (OpenVINO's bfloat16 decision path)")
    args = p.parse_args(argv)
    rows = []
    with Fuser(args.backend, weights=args.weights, max_memory=args.max_memory, precision=args.precision) as fuser:
        backend = fuser.backend
        timer = PhaseTimer(fuser.pipeline.ex)
        plans, plan_of = [], fuser.pipeline.plan     # the plans the fusions made (their resident planes included)
        fuser.pipeline.plan = lambda *a: plans.append(plan_of(*a)) or plans[-1]
        for size in args.sizes.split(","):
            h, w = (int(v) for v in size.split("x"))
            a, b = camera_pair(h, w)
            runs = 1 if h * w > 4e6 else args.runs
            fuser.fuse(a, b)                      # warm-up: sessions for this shape
            plan = plans[-1]
            times, phases = [], []
            for _ in range(runs):
                timer.reset()
                t = time.perf_counter()
                fuser.fuse(a, b)
                times.append(time.perf_counter() - t)
                phases.append(dict(timer.t))
            sec = statistics.median(times)
            ph = phases[times.index(sec)]
            mp = h * w / 1e6
            rows.append({"size": f"{w}x{h}", "mp": mp, "tile": plan.side or "whole", "tiles": len(plan.tiles or [1]),
                         "s": sec, "s_per_mp": sec / mp, "sums": ph["sums passes"], "net": ph["tile network"],
                         "other": sec - ph["sums passes"] - ph["tile network"]})
            print(rows[-1], flush=True)
    base = rows[0]["s_per_mp"]
    print(f"\n{backend}, default settings{' --max-memory ' + args.max_memory if args.max_memory else ''}, "
          f"median of up to {args.runs} runs after a warm-up, one process\n")
    print("| pair | MP | tile side | windows | s | s/MP | vs first | sums passes | network | rest |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['size']} | {r['mp']:.2f} | {r['tile']} | {r['tiles']} | {r['s']:.2f} | {r['s_per_mp']:.2f} | "
              f"{r['s_per_mp'] / base:.2f}x | {r['sums']:.2f} s ({r['sums'] / r['s']:.0%}) | "
              f"{r['net']:.2f} s ({r['net'] / r['s']:.0%}) | {r['other']:.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
