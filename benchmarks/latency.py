"""Latency of GACN per backend and frame size, with the eager FP32 PyTorch model of the same
network (engine/export/model.py) measured in the same run as the baseline; on the CPU also the
start-up, the CLI over a directory of pairs, and the users' alternatives on the same pairs.

    python benchmarks/latency.py                        # CPU: every installed CPU backend at 520x520
    python benchmarks/latency.py --sizes 520x520,1200x1600 --no-cli --no-tools
    python benchmarks/latency.py --backends openvino,openvino:bf16     # CPU: float32 and the bfloat16 decision path
    python benchmarks/latency.py --backends torch-cuda --precision fp16 --sizes 520x520,1080x1920,2160x3840
    python benchmarks/latency.py --backends tensorrt --engine gacn_fp16.plan --json out.json --plot out.png

API latency is end to end for one RGB pair: uint8 frames in host memory in, the fused uint8
frame out. On the CPU the backends and the baseline are timed in interleaved rounds (each
round times every one of them once), so that the other work on a shared machine disturbs
them alike; medians are reported. GPU backends also report the H2D, compute and D2H parts
(CUDA events) and the streamed rate with 3 frames in flight.

CPU extras (each a subprocess of ``python -m engine.cli``, so start-up is included):
- start-up: one pair with an empty model cache (cold), then again (the second start); the
  start-up is the wall time less the warm API latency of that pair (compute excluded).
- CLI: ``--pairs-dir`` over the golden pairs (10 by default), per pair with start-up.
- tools: focus-stack (a binary under /work/tools or on PATH) and enfuse (enblend-enfuse), each
  run once per pair, start-up included, if installed.
- ``--authors DIR``: a checkout of the authors' code (Keep-Passion/GACN), timed warm through
  its ``GACN_Fuse().fuse`` in the same rounds (on a machine without CUDA with its device set to
  the CPU: benchmarks/authors.py); the CPU rows then also give each case's ratio to it.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

log = logging.getLogger("latency")
REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("GACN_TEST_DATA", REPO.parent / "shared" / "gacn"))
HOST = ("openvino", "onnxruntime")
BASELINE_MAX_MP = 1.0      # the eager model needs several KB per pixel: larger sizes skip it (5 GB RSS cap)
TOOL_DIRS = (Path("/work/tools"),)


def host_spec(spec: str) -> tuple[str, str]:
    """A CPU case "backend[:precision]" (e.g. openvino:bf16) -> (backend, precision)."""
    name, _, precision = spec.partition(":")
    return name, precision or "fp32"


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


def rounds(fns: dict, warmup: int, runs: int) -> dict[str, list[float]]:
    """Interleaved timing: every round times each function once (ms)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[k].append((time.perf_counter() - t) * 1000)
    return out


class Baseline:
    """The eager float32 PyTorch model (engine/export/model.py) with the same host pre/post-processing.

    On the CPU its time follows the allocator's state: each intermediate of a 520x520 pair is a
    fresh mmap'd block under glibc's defaults (about 1M page faults per run, 2.1 s on 2 cores),
    and far less once another runtime in the process has raised the mmap threshold (0.84-1.8 s);
    the authors' code (``--authors``) is the steadier reference (benchmarks/RESULTS.md, issue 17)."""

    def __init__(self, weights, device: str):
        import torch
        from engine.export.model import GACN
        self.torch, self.device = torch, device
        if device == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = False
        else:
            torch.set_num_threads(len(os.sched_getaffinity(0)))
        self.model = GACN.from_checkpoint(weights).to(device)

    def fuse(self, a, b):
        from engine import preprocess
        t = self.torch
        luma = t.from_numpy(np.stack([preprocess.luma(a), preprocess.luma(b)])[:, None]).to(self.device)
        with t.no_grad():
            _, m = self.model(luma)
        return preprocess.blend(a, b, m[0, 0].cpu().numpy())


# -- API latency --------------------------------------------------------------------------------------
def device_case(fuser, backend, size, args) -> dict:
    """A GPU backend: latency, the device phases and the streamed rate (one backend at a time)."""
    a, b = test_pair(*size)
    row = {"backend": backend, "precision": args.precision, "size": f"{size[0]}x{size[1]}",
           "megapixels": size[0] * size[1] / 1e6}
    lat = timed(lambda: fuser.fuse(a, b), args.warmup, args.runs)
    row.update({f"latency_{k}" if k != "throughput" else k: v for k, v in summarise(lat).items()})
    phases = [fuser.fuse(a, b).timings for _ in range(max(3, args.runs // 2))]
    for k in ("h2d", "compute", "d2h"):
        row[f"{k}_ms"] = statistics.median(p[k] for p in phases)
    row["compute_only_pairs_per_s"] = 1000.0 / row["compute_ms"]
    n = args.stream_frames
    if n:
        for _ in fuser.stream(((a, b) for _ in range(3)), slots=3):  # warm-up: the pinned slots are made once
            pass
        t = time.perf_counter()
        done = sum(r.ok for r in fuser.stream(((a, b) for _ in range(n)), slots=3))
        row["streamed_pairs_per_s"] = done / (time.perf_counter() - t)
        row["stream_efficiency"] = row["streamed_pairs_per_s"] / row["compute_only_pairs_per_s"]
    return row


def host_cases(fusers: dict, size, args, baseline=None, authors=None) -> list[dict]:
    """Host backends, the eager baseline and the authors' code in interleaved rounds at one size."""
    a, b = test_pair(*size)
    mp = size[0] * size[1] / 1e6
    fns = {bk: (lambda f=f: f.fuse(a, b)) for bk, f in fusers.items()}
    if baseline is not None and mp <= args.baseline_max_mp:
        fns["eager PyTorch (baseline)"] = lambda: baseline.fuse(a, b)
    if authors is not None and mp <= args.baseline_max_mp:
        fns["authors' code"] = lambda: authors.fuse(a, b)
    runs = args.runs if mp < 4 else max(3, args.runs // 3)
    times = rounds(fns, 1 if mp >= 4 else args.warmup, runs)
    base = times.get("eager PyTorch (baseline)")
    theirs = times.get("authors' code")
    rows = []
    for name, ms in times.items():
        row = {"backend": name, "precision": host_spec(name)[1] if name in fusers else "fp32", "size": f"{size[0]}x{size[1]}", "megapixels": mp}
        row.update({f"latency_{k}" if k != "throughput" else k: v for k, v in summarise(ms).items()})
        row["s_per_mp"] = row["latency_median"] / 1000 / mp
        if base is not None:
            row["baseline_median"] = statistics.median(base)
            row["speedup"] = row["baseline_median"] / row["latency_median"]
        if theirs is not None:
            row["vs_authors"] = statistics.median(theirs) / row["latency_median"]
        rows.append(row)
    return rows


# -- CPU extras: start-up, CLI, tools ------------------------------------------------------------------
def cli(args_list, cache: Path, backend: str | None = None, watch: Path | None = None):
    """Wall seconds of one ``python -m engine.cli`` run (start-up included); with ``watch``, also
    the seconds until that output file appeared (it is renamed into place when complete), i.e.
    before the interpreter's teardown."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "GACN_MODEL_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "engine.cli", *args_list, "-q"]
    if backend:
        name, precision = host_spec(backend)
        cmd += ["--backend", name, "--precision", precision]
    if watch is not None and watch.exists():
        watch.unlink()
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = None
    while watch is not None and first is None and proc.poll() is None:
        if watch.exists():
            first = time.perf_counter() - t
        else:
            time.sleep(0.002)
    _, err = proc.communicate()
    wall = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-1500:]}")
    if watch is None:
        return wall
    return wall, (first if first is not None else wall)


def golden_pairs(n: int) -> list[tuple[Path, Path]]:
    pairs = [(p, p.with_name(p.name.replace("_1.", "_2."))) for p in sorted((DATA / "pairs").glob("color_lytro_*_1.png"))]
    return pairs[:n]


def startup_rows(backends, weights, warm_ms: dict, repeats: int) -> list[dict]:
    """Cold and second start of one 520x520 pair per backend (CLI, one process each): the time
    until the fused file is written, less the warm API latency of the pair (compute excluded);
    the whole process's wall time (with the interpreter's teardown) is reported too."""
    pair = golden_pairs(1)[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="gacn-lat-") as tmp:
        out = Path(tmp) / "fused.png"
        args = [str(pair[0]), str(pair[1]), "-o", str(out), "--weights", str(weights)]
        for bk in backends:
            cache = Path(tmp) / f"cache-{bk}"
            cold_wall, cold = cli(args, cache, bk, watch=out)
            runs = [cli(args, cache, bk, watch=out) for _ in range(repeats)]
            second_wall, second = (statistics.median(r[i] for r in runs) for i in (0, 1))
            compute = warm_ms.get(bk, 0.0) / 1000
            rows.append({"backend": bk, "cold_s": cold, "second_s": second, "second_wall_s": second_wall,
                         "warm_compute_s": compute, "cold_startup_s": cold - compute,
                         "second_startup_s": second - compute,
                         "cache_bytes": sum(p.stat().st_size for p in cache.glob("*.bin"))})
    return rows


def cli_rows(backends, weights, n: int, eager_ms: float | None) -> list[dict]:
    """``--pairs-dir`` over n golden pairs per backend (model cache warm), per pair with start-up."""
    pairs = golden_pairs(n)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gacn-cli-") as tmp:
        src = Path(tmp) / "pairs"
        src.mkdir()
        for a, b in pairs:
            shutil.copy(a, src / a.name)
            shutil.copy(b, src / b.name)
        for bk in backends:
            cache = Path(tmp) / f"cache-{bk}"
            args = ["--pairs-dir", str(src), "-o", str(Path(tmp) / f"out-{bk}"), "--weights", str(weights),
                    "--overwrite"]   # the same folder each run: existing outputs would be skipped
            cli(args, cache, bk)  # fills the model cache (its time is the cold case of startup_rows)
            wall = statistics.median(cli(args, cache, bk) for _ in range(2))
            row = {"backend": bk, "pairs": len(pairs), "total_s": wall, "per_pair_s": wall / len(pairs)}
            if eager_ms:
                row["speedup_vs_eager_warm"] = eager_ms / 1000 / row["per_pair_s"]
            rows.append(row)
    return rows


def find_tool(name: str) -> str | None:
    for d in TOOL_DIRS:
        for p in sorted(d.glob(f"**/{name}")):
            if p.is_file() and os.access(p, os.X_OK):
                return str(p)
    return shutil.which(name)


TOOL_COMMANDS = {
    # focus-stack's defaults (it also aligns the sources: part of what its users run)
    "focus-stack": lambda exe, a, b, out: [exe, f"--output={out}", str(a), str(b)],
    # enfuse's focus-stacking recipe: contrast weights only, hard mask
    "enfuse": lambda exe, a, b, out: [exe, "--exposure-weight=0", "--saturation-weight=0", "--contrast-weight=1",
                                      "--hard-mask", f"--output={out}", str(a), str(b)],
}


def tool_rows(n: int) -> list[dict]:
    pairs = golden_pairs(n)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gacn-tools-") as tmp:
        for name, command in TOOL_COMMANDS.items():
            exe = find_tool(name)
            if exe is None:
                log.warning("%s not installed; skipped", name)
                continue
            walls = []
            for a, b in pairs:
                t = time.perf_counter()
                out = subprocess.run(command(exe, a, b, Path(tmp) / f"{name}.png"), capture_output=True, text=True)
                walls.append(time.perf_counter() - t)
                if out.returncode:
                    log.warning("%s failed on %s: %s", name, a.name, out.stderr[-500:])
                    break
            else:
                rows.append({"tool": name, "path": exe, "pairs": len(pairs), "per_pair_s": statistics.median(walls)})
    return rows


# -- output --------------------------------------------------------------------------------------------
def table(rows: list[dict], cols) -> str:
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f.format(r[k]) if r.get(k) is not None else "-" for k, _, f in cols) + " |")
    return "\n".join(lines)


LATENCY_COLS = [("backend", "backend", "{}"), ("precision", "prec", "{}"), ("size", "size", "{}"),
                ("latency_median", "median ms", "{:.1f}"), ("latency_p90", "p90", "{:.1f}"),
                ("latency_min", "min", "{:.1f}"), ("s_per_mp", "s/MP", "{:.2f}"), ("throughput", "pairs/s", "{:.2f}"),
                ("h2d_ms", "H2D ms", "{:.2f}"), ("compute_ms", "compute ms", "{:.2f}"), ("d2h_ms", "D2H ms", "{:.2f}"),
                ("streamed_pairs_per_s", "streamed/s", "{:.1f}"), ("stream_efficiency", "stream/compute", "{:.0%}"),
                ("baseline_median", "baseline ms", "{:.1f}"), ("speedup", "speed-up", "{:.2f}x"),
                ("vs_authors", "vs authors' code", "{:.2f}x")]
STARTUP_COLS = [("backend", "backend", "{}"), ("cold_s", "cold start to fused file (s)", "{:.2f}"),
                ("second_s", "second start to fused file (s)", "{:.2f}"), ("second_wall_s", "second, process wall (s)", "{:.2f}"),
                ("warm_compute_s", "warm compute (s)", "{:.2f}"),
                ("cold_startup_s", "cold start-up (s)", "{:.2f}"), ("second_startup_s", "second start-up (s)", "{:.2f}"),
                ("cache_bytes", "cache bytes", "{:,}")]
CLI_COLS = [("backend", "backend", "{}"), ("pairs", "pairs", "{}"), ("total_s", "total s", "{:.2f}"),
            ("per_pair_s", "s per pair (with start-up)", "{:.3f}"), ("speedup_vs_eager_warm", "x eager warm", "{:.2f}x")]
TOOL_COLS = [("tool", "tool", "{}"), ("pairs", "pairs", "{}"), ("per_pair_s", "s per pair (with start-up)", "{:.3f}")]


def markdown(report: dict) -> str:
    parts = ["### API latency (warm, one RGB pair)", table(report["latency"], LATENCY_COLS)]
    if report.get("startup"):
        parts += ["### Start-up (CLI, one 520x520 pair)", table(report["startup"], STARTUP_COLS)]
    if report.get("cli"):
        parts += ["### CLI over a directory of 520x520 pairs (model cache warm)", table(report["cli"], CLI_COLS)]
    if report.get("tools"):
        parts += ["### Other tools on the same pairs", table(report["tools"], TOOL_COLS)]
    return "\n\n".join(parts)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    series = {}
    for r in rows:
        series.setdefault(f"{r['backend']} {r['precision']}", []).append((r["megapixels"], r["latency_median"]))
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
    from engine.options import applicable
    summary, _, details = __doc__.partition("\n\n")  # the whole first paragraph, then the rest as written
    import textwrap
    p = argparse.ArgumentParser(description=textwrap.fill(" ".join(summary.split()), 88), epilog=details,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="auto",
                   help="comma list of openvino, onnxruntime, torch-cuda, tensorrt; a CPU backend may name its "
                        "precision, e.g. openvino:bf16 (auto: the best GPU backend, else every installed CPU backend)")
    p.add_argument("--sizes", type=parse_sizes, help="HxW list (default 520x520 on CPU; 520x520,1080x1920,2160x3840 on GPU)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp16", help="GPU backends (default fp16)")
    p.add_argument("--engine", help="TensorRT plan for --backends tensorrt")
    p.add_argument("--weights", default=str(DATA / "GACN.pkl") if (DATA / "GACN.pkl").is_file() else None)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--stream-frames", type=int, default=20, help="GPU: pairs in the streamed-rate measurement")
    p.add_argument("--no-baseline", action="store_true", help="skip the eager PyTorch baseline")
    p.add_argument("--baseline-max-mp", type=float, default=BASELINE_MAX_MP)
    p.add_argument("--authors", type=Path, help="a checkout of Keep-Passion/GACN to time the authors' code")
    p.add_argument("--no-startup", action="store_true", help="CPU: skip the start-up measurement")
    p.add_argument("--no-cli", action="store_true", help="CPU: skip the CLI --pairs-dir measurement")
    p.add_argument("--no-tools", action="store_true", help="CPU: skip focus-stack and enfuse")
    p.add_argument("--cli-pairs", type=int, default=10)
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path)
    p.add_argument("--plot", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    found = available_backends()
    if args.backends == "auto":
        gpu = [b for b in found if b not in HOST]
        backends = gpu[:1] or [b for b in found if b in HOST]
    else:
        backends = args.backends.split(",")
    host = [b for b in backends if host_spec(b)[0] in HOST]
    device = [b for b in backends if host_spec(b)[0] not in HOST]
    sizes = args.sizes or ([(520, 520), (1080, 1920), (2160, 3840)] if device else [(520, 520)])
    report = {"latency": [], "startup": [], "cli": [], "tools": [],
              "machine": {"cpus": len(os.sched_getaffinity(0)), "load_before": os.getloadavg()}}
    with tqdm(total=len(sizes) * (len(device) + (1 if host else 0)), desc="latency", unit="case", file=sys.stderr) as bar:
        for bk in device:
            with Fuser(bk, **applicable(bk, weights=args.weights, engine=args.engine, precision=args.precision)) as fuser:
                for size in sizes:
                    report["latency"].append(device_case(fuser, bk, size, args))
                    bar.update()
        if device and not args.no_baseline:
            base = Baseline(args.weights, "cuda")
            for size in sizes:
                a, b = test_pair(*size)
                ms = statistics.median(timed(lambda: base.fuse(a, b), 2, max(5, args.runs // 2)))
                for r in report["latency"]:
                    if r["size"] == f"{size[0]}x{size[1]}":
                        r["baseline_median"], r["speedup"] = ms, ms / r["latency_median"]
        if host:
            fusers = {bk: Fuser(host_spec(bk)[0], weights=args.weights, precision=host_spec(bk)[1]) for bk in host}
            baseline = None if args.no_baseline else Baseline(args.weights, "cpu")
            authors = None
            if args.authors:
                from benchmarks.authors import Authors
                authors = Authors(args.authors)
            try:
                for size in sizes:
                    report["latency"].extend(host_cases(fusers, size, args, baseline, authors))
                    bar.update()
            finally:
                for f in fusers.values():
                    f.close()
    if host:
        at520 = {r["backend"]: r["latency_median"] for r in report["latency"] if r["size"] == "520x520"}
        eager = at520.get("eager PyTorch (baseline)")
        if not args.no_startup and args.weights:
            report["startup"] = startup_rows(host, args.weights, at520, repeats=3)
        if not args.no_cli and args.weights and golden_pairs(1):
            report["cli"] = cli_rows(host, args.weights, args.cli_pairs, eager)
        if not args.no_tools and golden_pairs(1):
            report["tools"] = tool_rows(args.cli_pairs)
    report["machine"]["load_after"] = os.getloadavg()
    text = markdown(report)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.plot:
        plot(report["latency"], args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
