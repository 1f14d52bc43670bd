"""Peak memory against pixels: whole frames and tiles, pairs and stacks, and the cost model.

    python benchmarks/memory.py [--sizes 0.25,0.5,1,2,4,8,12,24] [--markdown out.md --plot out.png]
    python benchmarks/memory.py --gpu 2160x3840,5464x8192 --backend torch-cuda --max-memory 2G

(The runners' cost models are fitted by benchmarks/memory_model.py --calibrate.)

Every measurement runs in a fresh process (peak RSS from getrusage, peak GPU memory from
torch.cuda.max_memory_allocated on a GPU backend), so one cannot inherit another's high-water
mark. The table runs `gacn-fuse` itself with default settings on synthetic camera-like pairs
(textured, two focus regions) and on 3 and 9 frames of the golden stack (the default strategy and
the network-bound calibration), whole frames (--tile 0) beside the default where they fit the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("GACN_TEST_DATA", REPO.parent / "shared" / "gacn"))
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

CLI_PROBE = r"""
import resource, subprocess, sys, json, time
t = time.perf_counter()
r = subprocess.run({cmd!r}, capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({{"rc": r.returncode, "peak": peak, "seconds": time.perf_counter() - t, "stderr": r.stderr[-500:]}}))
"""


GPU_PROBE = r"""
import json, sys
sys.path.insert(0, {repo!r})
import torch
from engine.testing.pairs import camera_pair
from engine import Fuser
a, b = camera_pair({h}, {w})
with Fuser({backend!r}, **{options!r}, max_memory={budget!r}, tile={tile!r}) as f:
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    free0 = f.pipeline.ex.cuda.mem_info()[0]
    f.fuse(a, b)
    torch.cuda.synchronize()
    held = f.pipeline.ex._held()
    side = f.pipeline.plan(2, {h}, {w}, 0).side
print(json.dumps({{"torch_peak": torch.cuda.max_memory_allocated(), "executor_buffers": held, "side": side}}))
"""


def _probe(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; its last stdout line is the JSON result."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def gpu_table(sizes_hw, weights: Path, backend: str, engine, precision: str, budget, tile) -> list[dict]:
    """Device memory per size (needs a GPU): the torch allocator's peak plus the executor's own
    buffers (frames, planes, pinned copies are host memory); a TensorRT engine's activations are
    in neither and are reported by its runner's cost model instead."""
    from engine.options import applicable
    rows = []
    for h, w in sizes_hw:
        options = applicable(backend, weights=str(weights), engine=engine, precision=precision)
        code = GPU_PROBE.format(repo=str(REPO), h=h, w=w, backend=backend,
                                options=options, budget=budget, tile=tile)
        res = _probe(code)
        rows.append({"case": f"pair {w}x{h}", "megapixels": w * h / 1e6, "tile": res["side"] or "whole",
                     "device_gib": (res["torch_peak"] + res["executor_buffers"]) / 2**30})
        print(rows[-1], flush=True)
    return rows


def cli_peak(args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "engine.cli", *args, "-q"]
    return _probe(CLI_PROBE.format(cmd=cmd))


def table(sizes_mp, weights: Path, backend: str, extra: list[str]) -> list[dict]:
    import cv2
    from engine.testing.pairs import camera_pair
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for mp in sizes_mp:
            width = int(round((mp * 1e6 * 3 / 2) ** 0.5 / 8)) * 8
            height = int(round(width * 2 / 3 / 8)) * 8
            a, b = camera_pair(height, width)
            cv2.imwrite(str(tmp / "a.png"), a[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
            cv2.imwrite(str(tmp / "b.png"), b[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
            del a, b
            for mode, flags in (("default", []), ("whole (--tile 0)", ["--tile", "0", "--max-memory", "64G"])):
                if mode != "default" and mp > 2.5:
                    continue   # whole frames beyond ~2.5 MP exceed this machine
                res = cli_peak([str(tmp / "a.png"), str(tmp / "b.png"), "-o", str(tmp / "f.png"), "--weights", str(weights),
                                "--backend", backend, *flags, *extra])
                rows.append({"case": f"pair {width}x{height}", "megapixels": width * height / 1e6, "mode": mode,
                             "peak_gib": res["peak"] / 2**30, "seconds": res["seconds"],
                             "s_per_mp": res["seconds"] / (width * height / 1e6), "rc": res["rc"]})
                print(rows[-1], res["stderr"] if res["rc"] else "", flush=True)
    stack = sorted((DATA / "stack9").glob("*.jpg"))
    if stack:
        with tempfile.TemporaryDirectory() as tmp:
            for mode, flags in (("default", []), ("--strategy calibration", ["--strategy", "calibration"])):
                for n in (3, 9):   # the default runs no network; calibration runs GACN on every frame
                    res = cli_peak(["--stack", *map(str, stack[:n]), "-o", str(Path(tmp) / "s.png"), "--weights",
                                    str(weights), "--backend", backend, *flags, *extra])
                    rows.append({"case": f"stack {n} x 1600x1200", "megapixels": 1.92, "mode": mode,
                                 "peak_gib": res["peak"] / 2**30, "seconds": res["seconds"], "s_per_mp": None,
                                 "rc": res["rc"]})
                    print(rows[-1], flush=True)
    return rows


def markdown(rows) -> str:
    out = ["| case | MP | mode | peak RSS GiB | seconds | s/MP |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        spm = f"{r['s_per_mp']:.2f}" if r.get("s_per_mp") else ""
        status = "" if r["rc"] == 0 else f" (exit {r['rc']})"
        out.append(f"| {r['case']} | {r['megapixels']:.2f} | {r['mode']}{status} | {r['peak_gib']:.2f} | {r['seconds']:.1f} | {spm} |")
    return "\n".join(out)


def plot(rows, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for mode in sorted({r["mode"] for r in rows if r["case"].startswith("pair")}):
        pts = [(r["megapixels"], r["peak_gib"]) for r in rows if r["mode"] == mode and r["case"].startswith("pair")]
        ax.plot(*zip(*pts), "o-", label=mode)
    ax.set_xlabel("megapixels (RGB pair)")
    ax.set_ylabel("peak RSS (GiB)")
    ax.set_title("gacn-fuse peak memory, 2-core CPU")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Peak memory of gacn-fuse against pixels, and the runners' cost models.")
    p.add_argument("--weights", type=Path, default=DATA / "GACN.pkl")
    p.add_argument("--backend", default="auto")
    p.add_argument("--gpu", metavar="HxW,...", help="device memory of pairs of these sizes on a GPU backend "
                   "(--backend torch-cuda or tensorrt), e.g. 2160x3840,5464x8192")
    p.add_argument("--engine", help="tensorrt: the plan")
    p.add_argument("--precision", default="fp16")
    p.add_argument("--max-memory")
    p.add_argument("--tile", type=int)
    p.add_argument("--sizes", default="0.25,0.5,1,2,4,8,12,24", help="pair sizes in megapixels")
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path)
    p.add_argument("--plot", type=Path)
    p.add_argument("extra", nargs="*", help="more gacn-fuse options (after --)")
    args = p.parse_args(argv)
    t = time.perf_counter()
    if args.gpu:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.gpu.split(",")]
        result = gpu_table(sizes, args.weights, args.backend, args.engine, args.precision, args.max_memory, args.tile)
    else:
        result = table([float(s) for s in args.sizes.split(",")], args.weights, args.backend, args.extra)
        print(markdown(result))
        if args.markdown:
            args.markdown.write_text(markdown(result) + "\n")
        if args.plot:
            plot(result, args.plot)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float))
    print(f"done in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
