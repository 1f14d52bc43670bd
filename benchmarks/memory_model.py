"""Peak memory of each host runner variant, and the fit of the runners' cost model.

    python benchmarks/memory_model.py --calibrate [--backends openvino,onnxruntime] [--sizes 320,640] [--json out.json]

Each measurement runs in a fresh process (engine.testing.memory_model says what it counts).
``--calibrate`` fits
FIXED + pixels * (a + K * b) per variant by least squares over K = 2, 3 at each size and
prints the constants for engine/backends/<runner>.py (rounded up by 10 %).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from engine.testing.memory_model import measure  # noqa: E402

VARIANTS = ("whole", "tile", "sums0", "sums1", "sums2", "sums3")   # what a runner runs (engine/variants.py docstring)
DATA = Path(os.environ.get("GACN_TEST_DATA", REPO.parent / "shared" / "gacn"))


def fit(rows: list[dict]) -> tuple[float, float, float]:
    """(FIXED, a, b) of work = FIXED + px * (a + K * b), least squares."""
    x = np.array([[1.0, r["pixels"], r["pixels"] * r["frames"]] for r in rows])
    y = np.array([r["work_bytes"] for r in rows], np.float64)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return tuple(float(c) for c in coef)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", default="openvino,onnxruntime")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--sizes", default="320,640", help="square sides to measure (two or more)")
    p.add_argument("--frames", default="2,3")
    p.add_argument("--threads", type=int)
    p.add_argument("--options", type=json.loads, default={}, help="runner options as JSON, e.g. '{\"static\": \"always\"}'")
    p.add_argument("--calibrate", action="store_true", help="fit and print the cost-model constants")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    rows = []
    for backend in args.backends.split(","):
        for variant in args.variants.split(","):
            for side in (int(s) for s in args.sizes.split(",")):
                for k in (int(v) for v in args.frames.split(",")):
                    r = measure(DATA / "GACN.pkl", backend, variant, k, side, args.threads,
                                args.options if backend == "openvino" else None)
                    rows.append(r)
                    print(f"{backend:12s} {variant:6s} K={k} {side}x{side}: work {r['work_bytes'] / 2**20:8.1f} MiB "
                          f"({r['work_bytes'] / r['pixels']:7.0f} B/px; load {r['load_bytes'] / 2**20:.0f} MiB)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.calibrate:
        for backend in args.backends.split(","):
            fits = {v: fit([r for r in rows if r["backend"] == backend and r["variant"] == v])
                    for v in args.variants.split(",")}
            fixed = max(f[0] for f in fits.values())
            print(f"\n{backend}: fits (FIXED MiB, a B/px, b B/px/frame):")
            for v, (f0, a, b) in fits.items():
                worst = max(abs(f0 + r["pixels"] * (a + r["frames"] * b) - r["work_bytes"]) / r["work_bytes"]
                            for r in rows if r["backend"] == backend and r["variant"] == v)
                print(f"  {v:6s} {f0 / 2**20:7.1f} {a:8.0f} {b:8.0f}   (worst residual {worst:.1%})")
            # scaling both coefficients by 1.1 scales the fitted per-pixel term by 1.1 (a < 0 is
            # fine: K >= 2 always, and a + 2b > 0)
            per_px = {v: (int(round(a * 1.1, -1)), int(round(b * 1.1, -1))) for v, (_, a, b) in fits.items()}
            print(f"  FIXED = {int(np.ceil(fixed * 1.1 / 2**20))} << 20")
            print(f"  PER_PX = {per_px}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
