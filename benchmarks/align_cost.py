"""What alignment adds to a stack: `gacn-fuse --stack` with --align none against --align auto.

    python benchmarks/align_cost.py [--rounds 15] [--strategy focus-weights] [FRAME ...]

Default frames: the 9-frame 1600x1200 golden microscope stack (it breathes, so `auto` registers
and warps every frame). Each round runs both commands once, in alternating order, as fresh
processes (start-up, JPEG decoding and writing the result included: what a user waits for);
medians are reported, with the ratio from the same run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GACN_TEST_DATA", REPO.parent / "shared" / "gacn"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("frames", nargs="*", type=Path)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--strategy", default="focus-weights")
    p.add_argument("--weights", type=Path, default=DATA / "GACN.pkl")
    args = p.parse_args(argv)
    frames = args.frames or sorted((DATA / "stack9").glob("*.jpg"))
    seconds = {"none": [], "auto": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for align in (("none", "auto") if r % 2 == 0 else ("auto", "none")):
                cmd = [sys.executable, "-m", "engine.cli", "-q", "--stack", *map(str, frames), "--align", align,
                       "--strategy", args.strategy, "--weights", str(args.weights), "-o", str(Path(tmp) / "s.png")]
                t = time.perf_counter()
                subprocess.run(cmd, check=True, cwd=REPO)
                seconds[align].append(time.perf_counter() - t)
    none, auto = (statistics.median(seconds[k]) for k in ("none", "auto"))
    print(f"{len(frames)} frames, --strategy {args.strategy}, median of {args.rounds} rounds: "
          f"--align none {none:.2f} s, --align auto {auto:.2f} s: alignment adds {auto - none:.2f} s "
          f"({(auto - none) / none:+.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
