"""Where OpenVINO's time goes: per-node performance counters (PERF_COUNT) of the static model of
one 520x520 pair (K = 2, the runner's graph and settings), summed by the step of the network
each node belongs to, for several cases compiled in one process and run in interleaved rounds,
so that ratios between steps and cases hold on a shared machine better than wall times. Also
the median process CPU time of a run (with ``--threads 1``, a load-robust cost measure).

    python benchmarks/ov_profile.py                              # fp32 before/after issue 17, bf16
    python benchmarks/ov_profile.py --threads 1 --runs 8 --cases fp32,bf16
Cases: ``fp32-issue11`` (the float32 graph with issue 11's rewrites only), ``fp32`` (today's),
``bf16`` (today's graph, bfloat16 decision path).
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DATA = Path(os.environ.get("GACN_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "gacn"))
ISSUE11_REWRITES = frozenset({"diff_first", "gate_rows"})

# ONNX output-name hint (engine/onnx_graph.py) -> step of the network
STEPS = {
    "feature convolutions (blocks 1-4, 3x3)": {"feature_extraction_conv0", "feature_extraction_conv1",
                                               "feature_extraction_conv2", "feature_extraction_conv3",
                                               "feature_extraction_conv1_out", "wscaled"},
    "CSE scales (means, fc, sigmoid)": {"reducemean", "fc1", "fc2", "relu", "reciprocal", "exp"},
    "activity (differences, squares, box sums, sigmoid, concat)": {"dx", "dy", "g", "sub", "mul", "boxh", "boxv",
                                                                   "bm", "concat"},
    "boundary refinement (blur, guided filter)": {"conv", "bl", "means", "mab", "d", "guide", "bd", "m", "add",
                                                  "cast", "greater", "less", "abs", "div", "reshape"},
}


def step_of(node: str, node_type: str, hint: str | None) -> str:
    if node.startswith("decision/"):
        gate = hint is not None and (hint.startswith("sse") or hint in ("conv", "sigmoid", "mul"))
        return "decision path: gates (7-tap passes, sigmoid, multiply)" if gate else "decision path: ConvBlocks 5-8"
    if node_type == "Reorder":
        return "layout/precision reorders"
    for step, hints in STEPS.items():
        if hint in hints:
            return step
    return f"other ({hint or node_type})"


def compile_case(core, params, case: str, shape, threads: int):
    from engine.backends.openvino import OpenVinoRunner
    from engine.onnx_graph import build_model, TARGET_REWRITES
    rewrites = ISSUE11_REWRITES if case == "fp32-issue11" else TARGET_REWRITES["openvino"]
    onnx_model = build_model(params, variant="whole", target="openvino", frames=2, rewrites=rewrites)
    hints = {n.name: re.sub(r"_\d+$", "", n.output[0]) for n in onnx_model.graph.node}
    model = core.read_model(onnx_model.SerializeToString(), b"")
    # the runner's own settings for the case's precision
    config = {**OpenVinoRunner(params, threads=threads, precision="bf16" if case == "bf16" else "fp32").config,
              "PERF_COUNT": "YES"}
    if case == "bf16":
        from engine.backends.openvino_bf16 import check_precisions, mark_float32
        model = mark_float32(core, model)
    model.reshape({"luma": list(shape)})
    compiled = core.compile_model(model, "CPU", config)
    if case == "bf16":
        check_precisions(compiled)
    return compiled.create_infer_request(), hints


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="520x520")
    p.add_argument("--cases", default="fp32-issue11,fp32,bf16")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--weights", default=str(DATA / "GACN.pkl"))
    p.add_argument("--top", type=int, default=0, help="also list the N slowest nodes of each case")
    args = p.parse_args(argv)
    import openvino as ov
    from benchmarks.latency import test_pair
    from engine import preprocess
    from engine.checkpoint import load_gacn
    h, w = (int(v) for v in args.size.split("x"))
    a, b = test_pair(h, w)
    luma = np.ascontiguousarray(np.stack([preprocess.luma(a), preprocess.luma(b)])[:, None])
    params, core = load_gacn(args.weights), ov.Core()
    cases = {c: compile_case(core, params, c, luma.shape, args.threads) for c in args.cases.split(",")}
    nodes = {c: collections.Counter() for c in cases}
    cpu = {c: [] for c in cases}
    for r in range(args.runs + 1):           # interleaved rounds; round 0 warms up
        for c, (req, _) in cases.items():
            t = time.process_time()
            req.infer({"luma": luma}, share_inputs=True)
            if r == 0:
                continue
            cpu[c].append((time.process_time() - t) * 1000)
            for info in req.get_profiling_info():
                if info.status == info.Status.EXECUTED:
                    nodes[c][(info.node_name, info.node_type, info.exec_type)] += info.real_time.total_seconds() * 1000
    steps = {}
    for c, (_, hints) in cases.items():
        by = collections.Counter()
        for (name, node_type, _), ms in nodes[c].items():
            by[step_of(name, node_type, hints.get(name.split("/WithoutBiases")[0]))] += ms / args.runs
        steps[c] = by
        if args.top:
            print(f"\n{c}: slowest nodes (ms per run)")
            for (name, node_type, exec_type), ms in nodes[c].most_common(args.top):
                print(f"  {ms / args.runs:7.2f}  {node_type:16s} {exec_type:28s} {name}")
    names = sorted({k for by in steps.values() for k in by}, key=lambda k: -max(by[k] for by in steps.values()))
    print(f"\nOpenVINO per-node counters, {args.size} pair, {args.threads} thread(s), ms per run "
          f"(mean of {args.runs} interleaved rounds; load {os.getloadavg()[0]:.1f})\n")
    print("| step | " + " | ".join(cases) + " |\n|---|" + "---|" * len(cases))
    for k in names:
        print(f"| {k} | " + " | ".join(f"{steps[c][k]:.1f}" for c in cases) + " |")
    print("| **sum of nodes** | " + " | ".join(f"**{sum(steps[c].values()):.1f}**" for c in cases) + " |")
    print("| process CPU time per run, median | " + " | ".join(f"{statistics.median(cpu[c]):.1f}" for c in cases) + " |")
    first = statistics.median(cpu[next(iter(cases))])
    print("| CPU time vs the first case | " + " | ".join(f"{statistics.median(cpu[c]) / first:.3f}" for c in cases) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
