"""The default stack strategy against focus-stack on stacks outside benchmarks/stack_quality.py's set.

    python benchmarks/stack_robustness.py [--markdown out.md]

Five other scikit-image photos (astronaut, rocket, immunohistochemistry, camera, coins) over
three synthetic depth maps (a ramp, smooth blobs, steps), each rendered by engine/synthetic.py
four ways: 9 registered frames; 7 frames with 3 % breathing, a Gaussian PSF, 5 % exposure drift
and noise sigma 3; 12 frames with twice the blur (2.5 % of 640 px) and noise 2; 11 frames with 6 %
breathing and noise 2. `gacn-fuse --stack`'s default path (focus-weights, alignment auto,
reference middle) and focus-stack (its defaults, and `--reference=0`) are scored by PSNR against
the sharp image carried into each result's own geometry (benchmarks/gt_score.py; the margin
scored the other way round, in the truth's geometry, as a check). Needs focus-stack
(benchmarks/tools.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import gt_score  # noqa: E402
import tools  # noqa: E402
from engine import synthetic as S  # noqa: E402
from engine.fusion import fuse_stack  # noqa: E402

RENDERINGS = {
    "9 registered": dict(n=9),
    "7 breathing, Gaussian PSF, noise 3": dict(n=7, breathing=0.03, psf_kind="gaussian", noise=3.0, exposure_drift=0.05),
    "12, blur 2x, noise 2": dict(n=12, max_blur=0.025 * 640, noise=2.0),
    "11 breathing 6 %, noise 2": dict(n=11, breathing=0.06, noise=2.0),
}


def depth_map(kind: str, h: int, w: int, rng) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    if kind == "ramp":
        return S.normalise(xx + 0.3 * yy)
    if kind == "blobs":
        d = cv2.GaussianBlur(rng.random((h // 16, w // 16)).astype(np.float32), (0, 0), 1.5)
        return S.normalise(cv2.resize(d, (w, h), interpolation=cv2.INTER_CUBIC))
    return S.normalise(np.floor(xx * 4) / 4 + 0.1 * yy)   # steps


def main(argv=None) -> int:
    from skimage import data
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--markdown", type=Path, help="the table, rewritten after each stack")
    p.add_argument("--images", default="astronaut,rocket,ihc,camera,coins", help="which photos, in this order")
    args = p.parse_args(argv)
    if not tools.focus_stack_path():
        print("focus-stack not found (benchmarks/tools.py says where it is looked for)", file=sys.stderr)
        return 2
    photos = {"astronaut": data.astronaut, "rocket": data.rocket, "ihc": data.immunohistochemistry,
              "camera": data.camera, "coins": data.coins}
    images = {name: photos[name]() for name in args.images.split(",")}
    rows = ["| image | depth | stack | ours dB | ours, reference first dB | focus-stack dB | focus-stack --reference=0 dB | margin | "
            "margin over --reference=0 | margin, truth geometry |", "|" + " --- |" * 10]
    margins: dict[str, list] = {label: [] for label in RENDERINGS}
    gains = []   # the default reference (middle) over the first
    for name, img in images.items():
        rng = np.random.default_rng(7)    # the same depth maps for a photo whichever photos run
        for kind in ("ramp", "blobs", "steps"):
            depth = depth_map(kind, *img.shape[:2], rng)
            for label, opts in RENDERINGS.items():
                size = (480, 640) if img.shape[0] >= 480 else img.shape[:2]
                st = S.render_stack(img, depth, out_size=size, seed=3, **opts)
                ours = gt_score.score(fuse_stack(st.frames, pipeline=None).fused, st)
                first = gt_score.score(fuse_stack(st.frames, pipeline=None, reference="first").fused, st)["psnr"]
                theirs = gt_score.score(tools.run_focus_stack(st.frames)[0], st)
                ref0 = gt_score.score(tools.run_focus_stack(st.frames, extra=["--reference=0"])[0], st)["psnr"]
                m = ours["psnr"] - theirs["psnr"]
                margins[label].append(m)
                gains.append(ours["psnr"] - first)
                rows.append(f"| {name} | {kind} | {label} | {ours['psnr']:.2f} | {first:.2f} | {theirs['psnr']:.2f} | "
                            f"{ref0:.2f} | "
                            f"{m:+.2f} | {ours['psnr'] - ref0:+.2f} | "
                            f"{ours['psnr_truth_geometry'] - theirs['psnr_truth_geometry']:+.2f} |")
                print(rows[-1], flush=True)
                if args.markdown:
                    args.markdown.write_text("\n".join(rows) + "\n")
    every = [m for ms in margins.values() for m in ms]
    rows.append("")
    for label, ms in margins.items():
        rows.append(f"- {label}: margin min / median / max {min(ms):+.2f} / {np.median(ms):+.2f} / {max(ms):+.2f} dB, "
                    f"{sum(m >= 1.5 for m in ms)} of {len(ms)} >= +1.5 dB.")
    rows.append(f"- all: {min(every):+.2f} / {np.median(every):+.2f} / {max(every):+.2f} dB; "
                f"{sum(m >= 1.5 for m in every)} of {len(every)} stacks >= +1.5 dB.")
    rows.append(f"- reference middle (default) over reference first: min / median / max {min(gains):+.2f} / "
                f"{np.median(gains):+.2f} / {max(gains):+.2f} dB.")
    print("\n".join(rows[-len(margins) - 2:]))
    if args.markdown:
        args.markdown.write_text("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
