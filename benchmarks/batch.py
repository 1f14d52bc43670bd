"""A batch of stacks and pairs in one process against `--dask local:N`: the overhead per job and
how the jobs divide over the workers.

    python benchmarks/batch.py [--stacks 8] [--pairs 12] [--workers 2] [--rounds 2] [--data DIR]

Jobs: the golden pairs (520x520 and the others, whole) and stacks of 3 frames of stack9 at
400x300 (the default strategy), written to a temporary folder. Each round runs `gacn-fuse
--stacks-dir --pairs-dir --overwrite` as a fresh process, in one process then on `--dask
local:N`, interleaved (A, B, A, B), then one rerun that skips every job. Reports the wall time of
each split into start-up/close and the batch, the scheduling overhead (the batch less the busiest
worker's jobs), the sum of the jobs' own seconds (report.json), the jobs and seconds per worker,
and the workers' peak RSS.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402

from engine.imageio import read_image, write_image  # noqa: E402


def make_jobs(data: Path, root: Path, stacks: int, pairs: int) -> None:
    frames = [cv2.resize(read_image(f), (400, 300), interpolation=cv2.INTER_AREA)
              for f in sorted((data / "stack9").glob("*.jpg"))]
    for s in range(stacks):
        d = root / "stacks" / f"stack{s:02d}"
        d.mkdir(parents=True)
        for k in range(3):
            write_image(d / f"f{k}.png", frames[(s + 3 * k) % len(frames)])
    (root / "pairs").mkdir()
    names = sorted(p.name[:-len("_1.png")] for p in (data / "pairs").glob("*_1.png"))
    for n in range(pairs):
        name = names[n % len(names)]
        for i in (1, 2):
            os.symlink(data / "pairs" / f"{name}_{i}.png", root / "pairs" / f"{n:02d}_{name}_{i}.png")


def run(root: Path, weights: Path, dask: str | None, overwrite: bool = True) -> dict:
    cmd = [sys.executable, "-m", "engine.cli", "--stacks-dir", str(root / "stacks"), "--pairs-dir", str(root / "pairs"),
           "-o", str(root / "out"), "--weights", str(weights), "-q"]
    cmd += ["--dask", dask] if dask else []
    cmd += ["--overwrite"] if overwrite else []
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    report = json.loads((root / "out" / "report.json").read_text())
    return {"wall": wall, **report}


def describe(label: str, r: dict) -> str:
    """Wall time; start-up and close (wall less the batch: the process, the cluster); scheduling
    (the batch less the busiest worker's jobs); the jobs' own seconds; jobs and seconds per worker."""
    busy = sum(j["seconds"] for j in r["jobs"] if j["status"] == "fused")
    slowest = max(v["seconds"] for v in r["workers"].values())
    split = "; ".join(f"pid {w.rsplit(':', 1)[-1]}: {v['jobs']} jobs {v['seconds']:.1f} s, peak RSS {v['peak_rss_mib']:.0f} MiB"
                      for w, v in r["workers"].items())
    return (f"{label:12s} wall {r['wall']:5.1f} s = start/close {r['wall'] - r['seconds']:4.1f} + batch {r['seconds']:5.1f} "
            f"(scheduling {r['seconds'] - slowest:4.2f} s); jobs' own {busy:5.1f} s | {split}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stacks", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("GACN_TEST_DATA", ROOT.parent / "shared" / "gacn")))
    args = ap.parse_args()
    weights = args.data / "GACN.pkl"
    print(f"{args.stacks} stacks (3 frames, 400x300) + {args.pairs} pairs; {os.cpu_count()} cores; "
          f"one process vs --dask local:{args.workers}, {args.rounds} rounds interleaved")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_jobs(args.data, root, args.stacks, args.pairs)
        for k in range(args.rounds):
            print(describe("one process", run(root, weights, None)))
            print(describe(f"local:{args.workers}", run(root, weights, f"local:{args.workers}")))
        for label, dask in (("rerun", None), (f"rerun local:{args.workers}", f"local:{args.workers}")):
            r = run(root, weights, dask, overwrite=False)
            print(f"{label:12s} wall {r['wall']:6.1f} s: {r['summary']}")


if __name__ == "__main__":
    main()
