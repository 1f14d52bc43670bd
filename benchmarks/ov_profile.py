"""Where OpenVINO's time goes: per-node performance counters (PERF_COUNT) of the static model of
one pair, summed by the graph step each node belongs to; each precision (and variant) in one
process, in interleaved rounds, so that ratios between steps and precisions hold on a shared
machine better than wall times.

    python benchmarks/ov_profile.py --size 520x520 --precisions fp32,bf16 --runs 5
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DATA = Path(os.environ.get("GACN_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "gacn"))

def step_of(hint: str, node: str) -> str:
    if node.startswith("decision/"):
        return "decision path (ConvBlocks 5-8 and their gates)"
    return {"reorder": "layout/precision reorders"}.get(hint, hint)


def onnx_hints(params) -> dict[str, str]:
    """ONNX node name -> the hint of its first output (e.g. Conv_12 -> boxh)."""
    from engine.onnx_graph import build_model
    model = build_model(params, variant="whole", target="openvino", frames=2)
    return {n.name: re.sub(r"_\d+$", "", n.output[0]) for n in model.graph.node}


def profile(runner, luma, runs: int) -> collections.Counter:
    runner.infer(luma)
    (compiled, req), = runner._static.values()
    total = collections.Counter()
    for _ in range(runs):
        req.infer({"luma": luma}, share_inputs=True)
        for p in req.get_profiling_info():
            if p.status == p.Status.EXECUTED:
                total[(p.node_name, p.node_type, p.exec_type)] += p.real_time.total_seconds() * 1000 / runs
    return total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="520x520")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--weights", default=str(DATA / "GACN.pkl"))
    p.add_argument("--top", type=int, default=0, help="also list the N slowest nodes of each precision")
    args = p.parse_args(argv)
    from engine import preprocess
    from engine.backends.model_cache import ModelCache
    from engine.backends.openvino import OpenVinoRunner
    from engine.checkpoint import load_gacn
    from engine.imageio import read_image
    import cv2
    h, w = (int(v) for v in args.size.split("x"))
    a, b = (cv2.resize(read_image(DATA / "pairs" / f"color_lytro_01_{i}.png"), (w, h)) for i in (1, 2))
    luma = np.ascontiguousarray(np.stack([preprocess.luma(a), preprocess.luma(b)])[:, None])
    params = load_gacn(args.weights)
    hints = onnx_hints(params)
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        runners = {}
        for prec in args.precisions.split(","):
            r = OpenVinoRunner(params=params, cache=ModelCache(Path(tmp)), static="always", precision=prec)
            r.config["PERF_COUNT"] = "YES"
            runners[prec] = r
        totals = {prec: collections.Counter() for prec in runners}
        for _ in range(args.runs):   # interleaved rounds
            for prec, r in runners.items():
                totals[prec].update(profile(r, luma, 1))
    steps = {}
    for prec, tot in totals.items():
        by = collections.Counter()
        for (name, ntype, exec_type), ms in tot.items():
            hint = hints.get(name.split("/WithoutBiases")[0], "reorder" if ntype == "Reorder" else ntype.lower())
            by[step_of(hint, name)] += ms / args.runs
        steps[prec] = by
        if args.top:
            print(f"\n{prec}: slowest nodes (ms per run)")
            for (name, ntype, exec_type), ms in tot.most_common(args.top):
                print(f"  {ms / args.runs:7.2f}  {ntype:12s} {exec_type:28s} {name} ({hints.get(name, '?')})")
    names = sorted({k for by in steps.values() for k in by}, key=lambda k: -max(by[k] for by in steps.values()))
    precs = list(steps)
    print(f"\nOpenVINO per-node counters, {args.size} pair, ms per run (mean of {args.runs}, interleaved)\n")
    print("| step | " + " | ".join(precs) + " |\n|---|" + "---|" * len(precs))
    for k in names:
        print(f"| {k} | " + " | ".join(f"{steps[pr][k]:.1f}" for pr in precs) + " |")
    print("| **sum of nodes** | " + " | ".join(f"**{sum(steps[pr].values()):.1f}**" for pr in precs) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
