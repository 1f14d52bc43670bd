"""The GPU check, in one command on a CUDA machine:

    python benchmarks/gpu_check.py [--data ../shared/gacn] [--out gpu_check_out] [--features default,tc32]

1. builds the kernel library (CMake) for this GPU's architecture unless one loads already (it is
   not checked for the architecture: a library built for another GPU fails in the checks);
2. checks the three custom operations (and the pixel kernels) against float64 references on
   fresh random and real inputs, outputs poisoned first, FP16 and FP32 (benchmarks/gpu_ops.py),
   including the ABI 3 kernels (gacn_feature_conv FFMA and 3xTF32, gacn_cse_scale,
   gacn_activity_scaled) under their derived bounds;
3. runs those ABI 3 checks again under compute-sanitizer memcheck (section "memcheck");
4. checks the whole PyTorch-CUDA path against every golden pair (FP32 and FP16 tolerances of
   engine/testing/metrics.py) and the 9-frame stack, for each feature path of --features
   (engine/backends/torch_cuda_features.py: "default" = today's, "tc32" = no elementwise passes
   + tensor-core convolutions, "fold" = no elementwise passes + FMA convolutions);
5. times each operation against the PyTorch ops it replaces and the ABI 3 kernels against
   today's (same buffers, same run), the feature paths against each other, the whole pair path
   per feature path against the eager FP32 model of the same network (CUDA events, median after
   warm-up) at 520x520, 1920x1080 and 3840x2160 with peak GPU memory, streaming against
   compute-only, and a 65-frame 1600x1200 stack fused from files;
6. tiles (issue 7): golden pairs in 128 px tiles in both precisions, a 45 MP pair under
   --max-memory 2G (device memory, time per megapixel against the whole 4K pair).
Prints the tables last; writes gpu_check.json and gpu_check.md under --out.

Where one command may run at most ~10 minutes, split it with --skip, e.g. first
``--skip memcheck,stack`` (build, checks, golden, timings, A/B, profile), then
``--skip ops,golden,whole,timing,features,profile,stack,tiles`` (memcheck alone, the slowest part
under the sanitizer); the build is reused when the library is already there.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

log = logging.getLogger("gpu_check")
SIZES = ((520, 520), (1080, 1920), (2160, 3840))


def section(name, results, fn):
    """Run one part; a failure is recorded and the check goes on with the next part."""
    print(f"\n=== {name}", flush=True)
    t = time.perf_counter()
    try:
        fn()
        results["sections"][name] = f"ok ({time.perf_counter() - t:.1f} s)"
    except Exception as e:  # the report must survive any one failure
        traceback.print_exc()
        results["sections"][name] = f"FAILED: {type(e).__name__}: {e}"


def cuda_ms(torch, fn, warmup=3, runs=10):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(runs):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        out.append(s.elapsed_time(e))
    return statistics.median(out)


class feature_env:
    """``with feature_env(name):`` runs Fusers created inside on feature path ``name``
    (GACN_FEATURES, read by TorchCudaRunner), restoring the variable afterwards."""

    def __init__(self, name: str):
        self.name, self.saved = name, None

    def __enter__(self):
        self.saved = os.environ.get("GACN_FEATURES")
        os.environ["GACN_FEATURES"] = self.name
        return self

    def __exit__(self, *exc):
        if self.saved is None:
            os.environ.pop("GACN_FEATURES", None)
        else:
            os.environ["GACN_FEATURES"] = self.saved


def golden_path(results, data, weights, features=("default",)):
    for feat in features:
        with feature_env(feat):
            _golden_path(results, data, weights, feat)


def _golden_path(results, data, weights, feat):
    from engine import Fuser
    from engine.testing import metrics
    from engine.imageio import read_image
    names = sorted(p.name[:-9] for p in (data / "golden").glob("*_maps.npz"))
    rows = results["golden"]
    start = len(rows)
    for precision, tol in (("fp32", metrics.FP32), ("fp16", metrics.FP16)):
        with Fuser("torch-cuda", weights=weights, precision=precision) as f:
            for n in names:
                a, b = (read_image(data / "pairs" / f"{n}_{i}.png") for i in (1, 2))
                g = np.load(data / "golden" / f"{n}_maps.npz")
                res = f.fuse(a, b, maps=True)
                rep = metrics.golden_report(res.fused, res.decision, res.mask, read_image(data / "golden" / f"{n}_fused.png"),
                                            g["decision"], g["mask"])
                # issue 10's target for fp16 with FP32-exact features: the FP32 tolerances too
                rows.append({"precision": precision, "pair": n, **rep, "ok": metrics.within(rep, tol),
                             "meets_fp32_tol": metrics.within(rep, metrics.FP32)})
            import torch  # device arrays in (CUDA array interface), no host round trip: same result
            dev = f.fuse(torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()).fused
            rows.append({"precision": precision, "pair": f"{n} from torch CUDA tensors", "identical": float(np.mean(dev == res.fused)),
                         "ok": bool(np.array_equal(dev, res.fused))})
            frames = sorted((data / "stack9").glob("*.jpg"))
            st = f.fuse_stack(read_image(p) for p in frames)
            same = float(np.mean(np.all(st.fused == read_image(data / "golden" / "stack9_calibration_fused.png"), -1)))
            rows.append({"precision": precision, "pair": "stack9", "identical": same, "ok": same >= metrics.STACK_MIN_IDENTICAL})
    for r in rows[start:]:
        r["features"] = feat
    bad = [r for r in rows[start:] if not r["ok"]]
    print(f"golden ({feat} features): {len(rows) - start - len(bad)}/{len(rows) - start} within tolerance", flush=True)
    for r in bad:
        print("  OUT OF TOLERANCE:", r)


def whole_path(results, data, weights, features=("default",)):
    for feat in features:
        with feature_env(feat):
            _whole_path(results, data, weights, feat)
    _baseline(results, weights)


def _whole_path(results, data, weights, feat):
    import torch
    from engine import Fuser
    from latency import test_pair
    for precision in ("fp16", "fp32"):
        with Fuser("torch-cuda", weights=weights, precision=precision) as f:
            runner = f.pipeline.ex.runner
            for h, w in SIZES:
                a, b = test_pair(h, w)
                torch.cuda.synchronize()
                before = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                calls = []  # warm-up, timed: eager (cuDNN plans), capture + replay, replay (lever 4)
                for _ in range(3):
                    t0 = time.perf_counter()
                    f.fuse(a, b)
                    calls.append((time.perf_counter() - t0) * 1e3)
                peak = (torch.cuda.max_memory_allocated() - before) / 2**30
                e2e = [f.fuse(a, b).timings for _ in range(10)]
                runner.bind("whole", 2, h, w)  # luma still holds this pair: time the network alone on its stream
                stream = f.pipeline.ex.compute
                with torch.cuda.stream(torch.cuda.ExternalStream(int(stream))):
                    net_ms = cuda_ms(torch, lambda: runner.enqueue(stream), 3, 10)
                row = {"features": feat, "precision": precision, "size": f"{w}x{h}", "network_ms": net_ms,
                       "pair_compute_ms": statistics.median(t["compute"] for t in e2e),
                       "h2d_ms": statistics.median(t["h2d"] for t in e2e), "d2h_ms": statistics.median(t["d2h"] for t in e2e),
                       "end_to_end_ms": statistics.median(t["total"] for t in e2e), "peak_gib": peak,
                       "call1_eager_ms": calls[0], "call2_capture_ms": calls[1], "call3_replay_ms": calls[2]}
                n = 40 if h < 2000 else 30
                for _ in f.stream(((a, b) for _ in range(3)), slots=3):  # warm-up: pinned slots are allocated once
                    pass
                t = time.perf_counter()
                ok = sum(r.ok for r in f.stream(((a, b) for _ in range(n)), slots=3))
                row["streamed_pairs_per_s"] = ok / (time.perf_counter() - t)
                row["compute_only_pairs_per_s"] = 1000 / row["pair_compute_ms"]
                row["stream_efficiency"] = row["streamed_pairs_per_s"] / row["compute_only_pairs_per_s"]
                results["whole"].append(row)
                print(row, flush=True)


def _baseline(results, weights):
    import torch
    from engine import preprocess
    from latency import Baseline, test_pair
    base = Baseline(weights, "cuda")
    for h, w in SIZES:
        a, b = test_pair(h, w)
        y = torch.from_numpy(np.stack([preprocess.luma(a), preprocess.luma(b)])[:, None]).cuda()
        torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            ms = cuda_ms(torch, functools.partial(base.model, y), 2, 5)
        results["baseline"].append({"size": f"{w}x{h}", "eager_fp32_network_ms": ms,
                                    "peak_gib": torch.cuda.max_memory_allocated() / 2**30})
        print(results["baseline"][-1], flush=True)
        torch.cuda.empty_cache()


def profile(results, weights, features=("default",)):
    """Where the time goes: one eager 3840x2160 pair through the network, kernels by CUDA time,
    per feature path."""
    import torch
    from torch.profiler import ProfilerActivity, profile as prof
    from engine import Fuser
    from latency import test_pair
    from engine import preprocess
    a, b = test_pair(2160, 3840)
    y = torch.from_numpy(np.stack([preprocess.luma(a), preprocess.luma(b)])[:, None]).cuda()
    results["profile"] = []
    for feat in features:
        with feature_env(feat), Fuser("torch-cuda", weights=weights, precision="fp16") as f:
            net = f.pipeline.ex.runner.net
            for _ in range(2):
                net(y)
            torch.cuda.synchronize()
            with prof(activities=[ProfilerActivity.CUDA]) as p:
                net(y)
                torch.cuda.synchronize()
        rows = []
        for e in p.key_averages():
            t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
            if t > 0:
                rows.append({"features": feat, "kernel": e.key[:90], "calls": e.count, "total_ms": t / 1000})
        rows.sort(key=lambda r: -r["total_ms"])
        results["profile"].extend(rows[:30])
        print(table(rows[:30], ["features", "kernel", "calls", "total_ms"]), flush=True)


def feature_ab(results, weights, features):
    """Features + activity of one pair per feature path (same run, same inputs), both precisions."""
    import torch
    from engine import kernels as K
    from engine.backends.torch_cuda import CudaGacn
    from engine.checkpoint import load_gacn
    import gpu_ops
    params = load_gacn(weights)
    lib = K.KernelLibrary.load("cuda")
    torch.backends.cudnn.allow_tf32 = False
    for dtype in (torch.float16, torch.float32):
        nets = {feat: CudaGacn(params, lib, dtype, torch, features=feat) for feat in features}
        for r in gpu_ops.time_feature_paths(torch, nets, SIZES):
            r["precision"] = "fp16" if dtype == torch.float16 else "fp32"
            results["feature_ab"].append(r)
            print(r, flush=True)


def memcheck(results):
    """The ABI 3 checks (quick sizes) under compute-sanitizer memcheck."""
    import subprocess
    import gpu_ops
    sanitizer = shutil.which("compute-sanitizer") or next(
        (str(p) for p in (Path("/usr/local/cuda/bin/compute-sanitizer"),) if p.is_file()), None)
    if sanitizer is None:
        raise RuntimeError("compute-sanitizer not found (PATH, /usr/local/cuda/bin)")
    cmd = gpu_ops.memcheck_command(sanitizer, sys.executable, REPO)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1200)
    res = gpu_ops.parse_memcheck(proc.returncode, proc.stdout)
    results["memcheck"] = {**res, "tail": proc.stdout[-3000:]}
    print(proc.stdout[-3000:], "\n", res, flush=True)
    if not res["ok"]:
        raise RuntimeError(f"memcheck of the ABI 3 kernels failed: {res}")


def stack65(results, data, weights):
    """65 frames of 1600x1200 from JPEG files (the 9 shared frames cycled), decoding included."""
    import cv2
    from engine import Fuser
    from engine.imageio import read_image
    from engine.prefetch import prefetch
    src = sorted((data / "stack9").glob("*.jpg"))
    tmp = Path(tempfile.mkdtemp())
    files = []
    for i in range(65):
        p = tmp / f"V{i + 1:03d}.jpg"
        shutil.copy(src[i % len(src)], p)
        files.append(p)
    for precision in ("fp16",):
        with Fuser("torch-cuda", weights=weights, precision=precision) as f:
            f.fuse_stack(read_image(p) for p in files[:3])  # warm-up: graphs, cuDNN plans
            t = time.perf_counter()
            res = f.fuse_stack(prefetch(read_image, files, workers=8, depth=16))
            secs = time.perf_counter() - t
        t = time.perf_counter()
        for _ in prefetch(read_image, files, workers=8, depth=16):
            pass
        decode = time.perf_counter() - t
        results["stack"].append({"precision": precision, "frames": res.frames, "seconds": secs, "decode_only_seconds": decode})
        print(results["stack"][-1], flush=True)
    shutil.rmtree(tmp)
    del cv2


def tiles(results, data, weights):
    """Issue 7 on the device: golden pairs in 128 px tiles (both precisions, golden tolerances);
    a 8192x5464 (45 MP) pair with --max-memory 2G (device memory: the torch allocator's peak plus
    the executor's buffers) and its time per megapixel against the whole-frame 4K pair's."""
    import torch
    from latency import test_pair
    from engine import Fuser
    from engine.testing import metrics
    from engine.imageio import read_image
    names = sorted(p.name[:-len("_maps.npz")] for p in (data / "golden").glob("*_maps.npz"))
    for precision in ("fp32", "fp16"):
        tol = metrics.FP32 if precision == "fp32" else metrics.FP16
        with Fuser("torch-cuda", weights=weights, precision=precision, tile=128) as f:
            for n in names:
                g = np.load(data / "golden" / f"{n}_maps.npz")
                a, b = (read_image(data / "pairs" / f"{n}_{i}.png") for i in (1, 2))
                res = f.fuse(a, b, maps=True)
                rep = metrics.golden_report(res.fused, res.decision, res.mask, read_image(data / "golden" / f"{n}_fused.png"),
                                            g["decision"], g["mask"])
                results["tiles"].append({"precision": precision, "case": f"{n} 128 px tiles", **rep,
                                         "ok": metrics.within(rep, tol)})
        per_mp = {}
        for (h, w), budget in (((2160, 3840), None), ((5464, 8192), "2G")):
            a, b = test_pair(h, w)
            with Fuser("torch-cuda", weights=weights, precision=precision, max_memory=budget) as f:
                f.fuse(a, b)                                   # warm-up: shapes, graphs
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                t = time.perf_counter()
                f.fuse(a, b)
                torch.cuda.synchronize()
                secs = time.perf_counter() - t
                side = f.pipeline.plan(2, h, w, 0).side
                device = (torch.cuda.max_memory_allocated() + f.pipeline.ex._held()) / 2**30
            per_mp[(h, w)] = secs / (h * w / 1e6)
            results["tiles"].append({"precision": precision, "case": f"{w}x{h} max_memory={budget}", "tile": side or "whole",
                                     "seconds": secs, "s_per_mp": per_mp[(h, w)], "device_gib": device,
                                     "ok": budget is None or device <= 2.2})
        ratio = per_mp[(5464, 8192)] / per_mp[(2160, 3840)]
        results["tiles"].append({"precision": precision, "case": "45 MP tiled / 4K whole, per MP", "ratio": ratio,
                                 "ok": ratio <= 1.3})
        print(results["tiles"][-3:], flush=True)


def table(rows, cols):
    if not rows:
        return "(none)"
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join((f"{r[c]:.3g}" if isinstance(r.get(c), float) else str(r.get(c, "-"))) for c in cols) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="GACN GPU check")
    p.add_argument("--data", type=Path, default=Path(os.environ.get("GACN_TEST_DATA", REPO.parent / "shared" / "gacn")))
    p.add_argument("--out", type=Path, default=Path("gpu_check_out"))
    p.add_argument("--skip", default="",
                   help="comma list of sections to skip: ops,memcheck,golden,whole,timing,features,profile,stack,tiles")
    p.add_argument("--features", default="default,tc32",
                   help="feature paths for golden, whole path and profile, of default, fold, tc32 (default: "
                        "default,tc32); the feature A/B always times all three")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch
    from engine import kernels as K
    from engine.testing import kernels as TK
    skip = set(filter(None, args.skip.split(",")))
    results = {"sections": {}, "ops": [], "op_timing": [], "golden": [], "whole": [], "baseline": [], "stack": [],
               "feature_ab": [], "memcheck": {}, "tiles": []}
    features = tuple(filter(None, args.features.split(",")))
    results["device"] = torch.cuda.get_device_name(0)
    results["date"] = time.strftime("%Y-%m-%d")
    weights = args.data / "GACN.pkl"

    def build():
        try:
            K.KernelLibrary.load("cuda")
            print("kernel library found:", K.find_library("cuda"))
        except Exception:
            cap = "".join(map(str, torch.cuda.get_device_capability(0)))
            print("building the kernel library for sm_" + cap, flush=True)
            TK.build(cuda_architectures=cap)

    section("build", results, build)
    lib = K.KernelLibrary.load("cuda")
    import gpu_ops
    if "ops" not in skip:
        section("ops", results, lambda: results["ops"].extend(gpu_ops.check_ops(lib, torch, data=args.data)))
    if "memcheck" not in skip:
        section("memcheck", results, lambda: memcheck(results))
    if "golden" not in skip:
        section("golden", results, lambda: golden_path(results, args.data, weights, features))
    if "whole" not in skip:
        section("whole path", results, lambda: whole_path(results, args.data, weights, features))
    if "timing" not in skip:
        section("op timing", results, lambda: results["op_timing"].extend(
            gpu_ops.time_ops(lib, torch) + gpu_ops.time_abi3_ops(lib, torch)))
    if "features" not in skip:
        section("feature A/B", results, lambda: feature_ab(results, weights, ("default", "fold", "tc32")))
    if "profile" not in skip:
        section("profile", results, lambda: profile(results, weights, features))
    if "stack" not in skip:
        section("stack65", results, lambda: stack65(results, args.data, weights))
    if "tiles" not in skip:
        section("tiles", results, lambda: tiles(results, args.data, weights))

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(results, indent=1, default=float))
    md = [f"device: {results['device']}, {results['date']}",
          "## sections", table([{"section": k, "result": v} for k, v in results["sections"].items()], ["section", "result"]),
          "## ops (max error vs float64)", table(results["ops"], list(results["ops"][0]) if results["ops"] else []),
          "## op timing", table([r for r in results["op_timing"] if "torch_ms" in r],
                                  ["op", "variant", "size", "kernel_ms", "torch_ms", "speedup", "kernel_GBps",
                                   "target_ms", "meets_target", "kernel_TFLOPs"]),
          "## ABI 3 kernels vs today's (same run)", table([r for r in results["op_timing"] if "baseline_ms" in r],
                                                          ["op", "variant", "size", "kernel_ms", "baseline_ms",
                                                           "speedup", "kernel_TFLOPs", "kernel_GBps", "algo_run"]),
          "## feature paths: features + activity of one pair (same run)",
          table(results["feature_ab"], ["precision", "variant", "size", "kernel_ms", "baseline_ms", "speedup"]),
          "## memcheck (ABI 3 kernels)", table([{k: v for k, v in results["memcheck"].items() if k != "tail"}],
                                               ["returncode", "sanitizer_errors", "checks", "checks_failed", "ok"])
          if results["memcheck"] else "(not run)",
          "## golden (torch-cuda)", table([r for r in results["golden"] if "agreement" in r],
                                          ["features", "precision", "pair", "agreement", "psnr_db", "mask_p999", "ok",
                                           "meets_fp32_tol"]),
          table([r for r in results["golden"] if "identical" in r], ["features", "precision", "pair", "identical", "ok"]),
          "## whole pair path", table(results["whole"], ["features", "precision", "size", "network_ms", "pair_compute_ms",
                                                       "h2d_ms", "d2h_ms", "end_to_end_ms", "peak_gib",
                                                       "streamed_pairs_per_s", "stream_efficiency", "call1_eager_ms",
                                                       "call2_capture_ms", "call3_replay_ms"]),
          "## tiles (issue 7)", table(results["tiles"], ["precision", "case", "tile", "agreement", "psnr_db", "mask_p999",
                                                          "seconds", "s_per_mp", "device_gib", "ratio", "ok"]),
          "## baseline (eager FP32 PyTorch, same network)", table(results["baseline"], ["size", "eager_fp32_network_ms", "peak_gib"]),
          "## profile: one eager 3840x2160 FP16 pair, CUDA kernels by total time",
          table(results.get("profile", []), ["features", "kernel", "calls", "total_ms"]),
          "## 65-frame 1600x1200 stack from JPEG files", table(results["stack"], ["precision", "frames", "seconds", "decode_only_seconds"])]
    text = "\n\n".join(md)
    (args.out / "gpu_check.md").write_text(text + "\n")
    print("\n" + text)
    failed = [k for k, v in results["sections"].items() if v.startswith("FAILED")]
    bad_ops = [r for r in results["ops"] if not r.get("ok", True)]
    bad_golden = [r for r in results["golden"] if not r["ok"]]
    return 1 if failed or bad_ops or bad_golden else 0


if __name__ == "__main__":
    sys.exit(main())
