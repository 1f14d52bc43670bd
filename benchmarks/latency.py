"""Latency and throughput of GACN per backend and frame size, trtexec style, with the eager
FP32 PyTorch model of the same network measured in the same run as the baseline.

    python benchmarks/latency.py                                  # CPU: onnxruntime at 520x520
    python benchmarks/latency.py --backends torch-cuda --precision fp16 --sizes 520x520,1080x1920,2160x3840
    python benchmarks/latency.py --backends tensorrt --engine gacn_fp16.plan --json out.json --plot out.png

Every number is end to end for one RGB pair: uint8 frames in host memory in, the fused uint8
frame in host memory out. GPU backends also report the H2D, compute and D2H parts (CUDA
events) and the streamed rate with 3 frames in flight.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

log = logging.getLogger("latency")
DATA = Path(os.environ.get("GACN_TEST_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "gacn"))


def parse_sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",") if s]


def test_pair(h: int, w: int):
    """A real multi-focus pair resized to h x w (content affects nothing but must be realistic)."""
    import cv2
    from engine.imageio import read_image
    src = DATA / "pairs"
    if (src / "color_lytro_01_1.png").is_file():
        a, b = (read_image(src / f"color_lytro_01_{i}.png") for i in (1, 2))
    else:
        from engine.demo import demo_pair
        a, b, _ = demo_pair()
    return tuple(np.ascontiguousarray(cv2.resize(x, (w, h), interpolation=cv2.INTER_LINEAR)) for x in (a, b))


def summarise(ms: list[float]) -> dict:
    q = np.percentile(ms, [90, 95, 99])
    mean = statistics.fmean(ms)
    return {"min": min(ms), "mean": mean, "median": statistics.median(ms), "p90": q[0], "p95": q[1], "p99": q[2],
            "throughput": 1000.0 / mean}


def timed(fn, warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


class Baseline:
    """The eager float32 PyTorch model (export/model.py) with the same host pre/post-processing."""

    def __init__(self, weights, device: str):
        import torch
        from export.model import GACN
        self.torch, self.device = torch, device
        if device == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = False
        self.model = GACN.from_checkpoint(weights).to(device)

    def fuse(self, a, b):
        from engine import preprocess
        t = self.torch
        luma = t.from_numpy(np.stack([preprocess.luma(a), preprocess.luma(b)])[:, None]).to(self.device)
        with t.no_grad():
            _, m = self.model(luma)
        return preprocess.blend(a, b, m[0, 0].cpu().numpy())


def run_case(fuser, backend, size, args) -> dict:
    a, b = test_pair(*size)
    row = {"backend": backend, "precision": args.precision if backend != "onnxruntime" else "fp32",
           "size": f"{size[0]}x{size[1]}", "megapixels": size[0] * size[1] / 1e6}
    lat = timed(lambda: fuser.fuse(a, b), args.warmup, args.runs)
    row.update({f"latency_{k}" if k != "throughput" else k: v for k, v in summarise(lat).items()})
    if fuser.pipeline.ex.on_device:
        phases = [fuser.fuse(a, b).timings for _ in range(max(3, args.runs // 2))]
        for k in ("h2d", "compute", "d2h"):
            row[f"{k}_ms"] = statistics.median(p[k] for p in phases)
        row["compute_only_pairs_per_s"] = 1000.0 / row["compute_ms"]
    n = args.stream_frames
    for _ in fuser.stream(((a, b) for _ in range(3)), slots=3):  # warm-up: the pinned slots are made once
        pass
    t = time.perf_counter()
    done = sum(r.ok for r in fuser.stream(((a, b) for _ in range(n)), slots=3))
    row["streamed_pairs_per_s"] = done / (time.perf_counter() - t)
    if "compute_only_pairs_per_s" in row:
        row["stream_efficiency"] = row["streamed_pairs_per_s"] / row["compute_only_pairs_per_s"]
    return row


def markdown(rows: list[dict]) -> str:
    cols = [("backend", "backend", "{}"), ("precision", "prec", "{}"), ("size", "size", "{}"),
            ("latency_median", "median ms", "{:.2f}"), ("latency_p90", "p90", "{:.2f}"), ("latency_p99", "p99", "{:.2f}"),
            ("latency_min", "min", "{:.2f}"), ("latency_mean", "mean", "{:.2f}"), ("throughput", "pairs/s", "{:.1f}"),
            ("h2d_ms", "H2D ms", "{:.2f}"), ("compute_ms", "compute ms", "{:.2f}"), ("d2h_ms", "D2H ms", "{:.2f}"),
            ("streamed_pairs_per_s", "streamed/s", "{:.1f}"), ("stream_efficiency", "stream/compute", "{:.0%}"),
            ("baseline_median", "baseline ms", "{:.1f}"), ("speedup", "speed-up", "{:.2f}x")]
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f.format(r[k]) if r.get(k) is not None else "-" for k, _, f in cols) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    series = {}
    for r in rows:
        series.setdefault(f"{r['backend']} {r['precision']}", []).append((r["megapixels"], r["latency_median"]))
        if r.get("baseline_median"):
            series.setdefault("eager PyTorch fp32 (baseline)", []).append((r["megapixels"], r["baseline_median"]))
    for name, pts in series.items():
        pts = sorted(set(pts))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    sizes = sorted({(r["megapixels"], r["size"]) for r in rows})
    ax.set_xticks([m for m, _ in sizes], [f"{sz}\n{m:.2f} MP" for m, sz in sizes])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("megapixels per source")
    ax.set_ylabel("median latency per pair (ms)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    from tqdm import tqdm
    from engine import Fuser
    from engine.backends.base import available_backends
    summary, _, details = __doc__.partition("\n\n")  # the whole first paragraph, then the rest as written
    import textwrap
    p = argparse.ArgumentParser(description=textwrap.fill(" ".join(summary.split()), 88), epilog=details,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="auto", help="comma list of onnxruntime, torch-cuda, tensorrt (auto: the best available)")
    p.add_argument("--sizes", type=parse_sizes, help="HxW list (default 520x520 on CPU; 520x520,1080x1920,2160x3840 on GPU)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp16", help="GPU backends (default fp16)")
    p.add_argument("--engine", help="TensorRT plan for --backends tensorrt")
    p.add_argument("--weights", default=str(DATA / "GACN.pkl") if (DATA / "GACN.pkl").is_file() else None)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--stream-frames", type=int, default=20)
    p.add_argument("--no-baseline", action="store_true", help="skip the eager PyTorch baseline")
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path)
    p.add_argument("--plot", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    backends = available_backends()[:1] if args.backends == "auto" else args.backends.split(",")
    on_gpu = any(bk != "onnxruntime" for bk in backends)
    sizes = args.sizes or ([(520, 520), (1080, 1920), (2160, 3840)] if on_gpu else [(520, 520)])
    cases = [(bk, s) for bk in backends for s in sizes]
    rows, baseline_ms = [], {}
    with tqdm(total=len(cases), desc="latency", unit="case", file=sys.stderr) as bar:
        for bk in backends:
            with Fuser(bk, weights=args.weights, engine=args.engine, precision=args.precision) as fuser:
                for size in sizes:
                    rows.append(run_case(fuser, bk, size, args))
                    bar.update()
        if not args.no_baseline:
            device = "cuda" if on_gpu else "cpu"
            base = Baseline(args.weights, device)
            for size in sizes:
                a, b = test_pair(*size)
                baseline_ms[size] = statistics.median(timed(lambda: base.fuse(a, b), 2, max(5, args.runs // 2)))
    for r in rows:
        size = tuple(int(v) for v in r["size"].split("x"))
        if size in baseline_ms:
            r["baseline_median"] = baseline_ms[size]
            r["speedup"] = baseline_ms[size] / r["latency_median"]
    table = markdown(rows)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
