"""No-reference fusion metrics (Q^AB/F, NMI, Q_Y, Q_CB) over a directory of registered pairs,
for GACN, the stack strategy focus-weights (on two frames) and, where installed,
enfuse and focus-stack; a markdown table.

    python benchmarks/quality.py [--pairs-dir DIR] [--weights GACN.pkl] [-o table.md]

DIR holds NAME_1.* / NAME_2.* (default: $GACN_TEST_DATA/pairs). Every tool fuses the same two
files; the metrics (engine.quality) are computed on luma in 0..255 against the two sources.
focus-stack aligns the pair first (its default, reference = the second frame); enfuse gets the
pair as it is. See benchmarks/tools.py for how to get the tools.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import tools  # noqa: E402
from engine.imageio import read_image  # noqa: E402
from engine.quality import METRICS, evaluate  # noqa: E402

log = logging.getLogger("quality")
DATA = Path(os.environ.get("GACN_TEST_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "gacn"))


def find_pairs(folder: Path) -> list[tuple[str, Path, Path]]:
    firsts = {}
    for p in sorted(folder.iterdir()):
        m = re.match(r"(.+)_1\.[^.]+$", p.name)
        if m:
            firsts[m.group(1)] = p
    pairs = []
    for name, p1 in firsts.items():
        p2 = next(iter(sorted(folder.glob(f"{name}_2.*"))), None)
        if p2 is not None:
            pairs.append((name, p1, p2))
    return pairs


def as_mode(img: np.ndarray, like: np.ndarray) -> np.ndarray:
    """A tool's output in the sources' mode (focus-stack writes RGB for gray input)."""
    if like.ndim == 2 and img.ndim == 3:
        import cv2
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return img


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs-dir", type=Path, default=DATA / "pairs")
    p.add_argument("--weights", default=os.environ.get("GACN_WEIGHTS", str(DATA / "GACN.pkl")))
    p.add_argument("-o", "--output", type=Path, help="write the markdown table here (default: stdout)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("engine.imageio").setLevel(logging.ERROR)   # enfuse writes an alpha channel

    from engine import Fuser
    runners = {}
    fuser = Fuser("onnxruntime", weights=args.weights, threads=args.threads)
    runners["GACN"] = lambda a, b: fuser.fuse(a, b).fused
    from engine.fusion import fuse_stack
    runners["focus-weights"] = lambda a, b: fuse_stack([a, b], pipeline=None, align="none").fused
    if tools.enfuse_path():
        runners["enfuse"] = lambda a, b: tools.run_enfuse([a, b])[0]
    else:
        log.warning("enfuse not found: skipped")
    if tools.focus_stack_path():
        runners["focus-stack"] = lambda a, b: tools.run_focus_stack([a, b], threads=args.threads)[0]
    else:
        log.warning("focus-stack not found: skipped")

    pairs = find_pairs(args.pairs_dir)
    if not pairs:
        print(f"no NAME_1.* / NAME_2.* pairs in {args.pairs_dir}", file=sys.stderr)
        return 2
    keys = list(METRICS)
    scores = {tool: {} for tool in runners}
    seconds = {tool: 0.0 for tool in runners}
    for name, p1, p2 in pairs:
        a, b = read_image(p1), read_image(p2)
        for tool, run in runners.items():
            t = time.perf_counter()
            fused = as_mode(run(a, b), a)
            seconds[tool] += time.perf_counter() - t
            scores[tool][name] = evaluate(a, b, fused)
        log.info("%s: %s", name, "  ".join(f"{t} {scores[t][name]['qabf']:.3f}" for t in runners))
    fuser.close()

    lines = [f"Pairs: {args.pairs_dir} ({len(pairs)}); metrics on luma 0..255 (engine.quality).", ""]
    head = "| pair | " + " | ".join(f"{t} {k}" for t in runners for k in keys) + " |"
    lines += [head, "|" + " --- |" * (1 + len(runners) * len(keys))]
    for name, _, _ in pairs:
        lines.append(f"| {name} | " + " | ".join(f"{scores[t][name][k]:.3f}" for t in runners for k in keys) + " |")
    mean = {t: {k: float(np.mean([s[k] for s in scores[t].values()])) for k in keys} for t in runners}
    lines.append("| **mean** | " + " | ".join(f"**{mean[t][k]:.3f}**" for t in runners for k in keys) + " |")
    lines += ["", "| tool | " + " | ".join(f"{k} mean" for k in keys) + " | pairs won on qabf | s per pair |",
              "|" + " --- |" * (len(keys) + 3)]
    for t in runners:
        won = sum(all(scores[t][n]["qabf"] >= scores[o][n]["qabf"] for o in runners) for n, _, _ in pairs)
        lines.append(f"| {t} | " + " | ".join(f"{mean[t][k]:.3f}" for k in keys)
                     + f" | {won}/{len(pairs)} | {seconds[t] / len(pairs):.2f} |")
    text = "\n".join(lines) + "\n"
    if args.output:
        args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
