"""A/B of the fused activity operation (kernels/openvino, GacnActivityParts) against the graph's
activity step, inside OpenVINO: the maps' difference, the whole run's time in interleaved rounds
and the per-node counters of both (the operation, the layout conversions OpenVINO puts around it).

    cmake -S . -B build && cmake --build build -j --target gacn_openvino
    python benchmarks/ov_fused_activity.py [--pair color_lytro_01] [--runs 8]
"""
from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("GACN_TEST_DATA", ROOT.parent / "shared" / "gacn"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pair", default="color_lytro_01")
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--library", default=str(ROOT / "build" / "lib" / "libgacn_openvino.so"))
    args = p.parse_args(argv)
    import openvino as ov
    from engine import preprocess
    from engine.backends.openvino import F32
    from engine.checkpoint import load_gacn
    from engine.imageio import read_image
    from engine.onnx_graph import TARGET_REWRITES, build_model
    a, b = (read_image(DATA / "pairs" / f"{args.pair}_{i}.png") for i in (1, 2))
    luma = np.ascontiguousarray(np.stack([preprocess.luma(a), preprocess.luma(b)])[:, None])
    params, core = load_gacn(DATA / "GACN.pkl"), ov.Core()
    core.add_extension(args.library)
    config = {**F32, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": str(args.threads),
              "PERF_COUNT": "YES"}
    cases = {"graph": TARGET_REWRITES["openvino"], "fused": TARGET_REWRITES["openvino"] | {"fused_activity"}}
    reqs = {}
    for name, rewrites in cases.items():
        model = core.read_model(build_model(params, variant="whole", target="openvino", frames=2,
                                            rewrites=rewrites).SerializeToString(), b"")
        model.reshape({"luma": list(luma.shape)})
        reqs[name] = core.compile_model(model, "CPU", config).create_infer_request()
    maps = {}
    for name, req in reqs.items():
        req.infer({"luma": luma})
        maps[name] = {k: req.get_tensor(k).data.copy() for k in ("decision", "mask")}
    for k in ("decision", "mask"):
        d = np.abs(maps["graph"][k] - maps["fused"][k])
        print(f"{k}: max |fused - graph| {d.max():.2e}, p99.9 {np.quantile(d, 0.999):.2e}")
    wall = {n: [] for n in reqs}
    nodes = {n: collections.Counter() for n in reqs}
    for _ in range(args.runs):
        for name, req in reqs.items():
            t = time.perf_counter()
            req.infer({"luma": luma})
            wall[name].append(time.perf_counter() - t)
            for info in req.get_profiling_info():
                if info.status == info.Status.EXECUTED:
                    nodes[name][(info.node_type, info.node_name)] += info.real_time.total_seconds() * 1000 / args.runs
    for name in reqs:
        by_type = collections.Counter()
        for (node_type, _), ms in nodes[name].items():
            by_type[node_type] += ms
        print(f"\n{name}: median {1000 * statistics.median(wall[name]):.1f} ms, sum of nodes "
              f"{sum(by_type.values()):.1f} ms; by type: " + ", ".join(f"{t} {ms:.1f}" for t, ms in by_type.most_common(8)))
        for (node_type, node), ms in nodes[name].most_common():
            if node_type in ("Reorder", "Reference", "Transpose"):
                print(f"  {ms:6.2f} ms  {node_type:10s} {node}")
    print(f"\nfused / graph (median wall): {statistics.median(wall['fused']) / statistics.median(wall['graph']):.3f} "
          f"(load {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
