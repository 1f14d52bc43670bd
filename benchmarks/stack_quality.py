"""Focus-stack strategies against ground truth, beside focus-stack and enfuse.

    python benchmarks/stack_quality.py [--size 480x640] [--scenes motorcycle,coffee,chelsea,cutout]
                                       [--real] [--tag NAME]

Renders 9-frame stacks with a known answer (engine.synthetic: layered thin-lens blur over a depth
map, noise sigma 2) for every scene in two variants, "registered" and "breathing" (3 % focus
breathing about the centre, 5 % exposure drift, 1 % colour jitter), registers them with
engine.align (auto), fuses them with every strategy through the product's own path
(engine.fusion.fuse_stack on the raw frames: alignment included, as `gacn-fuse --stack` runs)
and with focus-stack (its own alignment) and enfuse (given our aligned frames) where installed, and scores PSNR / SSIM against the sharp
image after registering each result to it (benchmarks/gt_score.py). Writes
benchmarks/results/<tag>_stack_quality.md and a side-by-side picture <tag>_stack_quality.png;
with --real also 1:1 crops of the authors' 9-frame stack and focus-stack's PCB example
(<tag>_real_stacks.png).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import gt_score, tools  # noqa: E402
from engine import align, synthetic  # noqa: E402
from engine import strategies as S  # noqa: E402
from engine.fusion import fuse_stack  # noqa: E402
from engine.imageio import read_image  # noqa: E402
from engine.testing.registration import register_stack  # noqa: E402

log = logging.getLogger("stack_quality")
ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("GACN_TEST_DATA", ROOT.parent / "shared" / "gacn"))
VARIANTS = {
    "registered": dict(noise=2.0),
    "breathing": dict(noise=2.0, breathing=0.03, exposure_drift=0.05, color_drift=0.01),
}


def strategies(fuser):
    """name -> f(raw frames) -> fused, as `gacn-fuse --stack --strategy NAME` computes it."""
    return {name: (lambda frames, name=name: fuse_stack(frames, pipeline=fuser.pipeline, strategy=name).fused)
            for name in S.STRATEGIES}


def run_synthetic(args, fuser) -> tuple[list[dict], dict]:
    rows, pictures = [], {}
    for scene in args.scenes:
        for variant, options in VARIANTS.items():
            stack = synthetic.make_stack(scene, 9, args.size, seed=args.seed, **options)
            name = f"{scene} / {variant}"
            t = time.perf_counter()
            transforms = register_stack(stack.frames, "auto")
            al = [align.warp(f, tr) for f, tr in zip(stack.frames, transforms)]
            row = {"stack": name, "align_s": time.perf_counter() - t, "psnr": {}, "ssim": {}, "s": {}}
            results = {"middle frame": stack.frames[len(stack.frames) // 2]}
            for sname, fn in strategies(fuser).items():
                t = time.perf_counter()
                results[sname] = fn(stack.frames)
                row["s"][sname] = time.perf_counter() - t
            if tools.focus_stack_path():
                results["focus-stack"], row["s"]["focus-stack"] = tools.run_focus_stack(stack.frames)
            if tools.enfuse_path():
                results["enfuse"], row["s"]["enfuse"] = tools.run_enfuse([f for f, _ in al])
            for k, v in results.items():
                sc = gt_score.score(v, stack)
                row["psnr"][k], row["ssim"][k] = sc["psnr"], sc["ssim"]
            log.info("%s: %s", name, "  ".join(f"{k} {v:.2f}" for k, v in row["psnr"].items()))
            rows.append(row)
            if variant == "breathing":
                pictures[scene] = (stack, {k: gt_score.register_to_truth(v, stack.truth)[0] for k, v in results.items()})
    return rows, pictures


def table(rows, args) -> str:
    methods = list(rows[0]["psnr"])
    lines = [f"Ground truth: 9-frame stacks from engine.synthetic at {args.size[1]}x{args.size[0]}, seed {args.seed}; "
             "PSNR dB / SSIM against the sharp image over the pixels every frame covers, each result "
             "registered to the truth first. Our strategies run as gacn-fuse --stack does (alignment auto "
             "included); focus-stack aligns itself; enfuse gets our aligned frames.", "",
             "| stack | " + " | ".join(methods) + " |", "|" + " --- |" * (len(methods) + 1)]
    for r in rows:
        lines.append(f"| {r['stack']} | " + " | ".join(f"{r['psnr'][m]:.2f} / {r['ssim'][m]:.3f}" for m in methods) + " |")
    if "focus-stack" in methods:
        lines += ["", "Margin over focus-stack, dB (min / mean over the stacks):", "",
                  "| method | min | mean |", "| --- | --- | --- |"]
        for m in methods:
            d = [r["psnr"][m] - r["psnr"]["focus-stack"] for r in rows]
            lines.append(f"| {m} | {min(d):+.2f} | {np.mean(d):+.2f} |")
    timed = [m for m in methods if m in rows[0]["s"]]
    lines += ["", "Seconds per stack (mean; shared 2-core machine, indicative): alignment "
              f"{np.mean([r['align_s'] for r in rows]):.2f}; "
              + "; ".join(f"{m} {np.mean([r['s'][m] for r in rows]):.2f}" for m in timed) + "."]
    return "\n".join(lines) + "\n"


def label(img: np.ndarray, text: str) -> np.ndarray:
    out = np.ascontiguousarray(img[:, :, ::-1] if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def worst_crop(stack, results, side=160):
    """The crop (1:1) where the strategies disagree most with the truth on average."""
    err = np.mean([np.abs(v.astype(np.float32) - stack.truth).mean(-1) for v in results.values()], 0)
    err[~stack.covered(side // 2)] = 0
    e = cv2.blur(err, (side, side))
    y, x = np.unravel_index(np.argmax(e), e.shape)
    y0 = int(np.clip(y - side // 2, 0, err.shape[0] - side))
    x0 = int(np.clip(x - side // 2, 0, err.shape[1] - side))
    return slice(y0, y0 + side), slice(x0, x0 + side)


def picture(pictures, path: Path) -> None:
    rows = []
    for scene, (stack, results) in pictures.items():
        ys, xs = worst_crop(stack, results)
        tiles = [label(stack.truth[ys, xs], f"{scene}: truth")]
        tiles += [label(v[ys, xs], k) for k, v in results.items()]
        rows.append(np.hstack(tiles))
    cv2.imwrite(str(path), np.vstack(rows), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def real_stacks(args, path: Path) -> str:
    """1:1 crops of the real stacks: focus-stack, focus-weights (+ the authors' calibration)."""
    sets = {"stack9": sorted((DATA / "stack9").glob("*.jpg"))}
    pcb = Path(args.pcb) if args.pcb else None
    if pcb and pcb.is_dir():
        sets["pcb"] = sorted(pcb.glob("pcb_*.jpg"))
    rows, notes = [], []
    crops = {"stack9": [(380, 280), (300, 1250)], "pcb": [(800, 700), (600, 1300)]}
    for name, paths in sets.items():
        if not paths:
            continue
        frames = [read_image(p) for p in paths]
        t = time.perf_counter()
        transforms = register_stack(frames, "auto")
        t_align = time.perf_counter() - t
        t = time.perf_counter()
        fw = fuse_stack(frames, pipeline=None).fused     # the default: focus-weights, align auto
        t_fw = time.perf_counter() - t
        results = {"focus-weights": fw}
        if tools.focus_stack_path():
            fs, t_fs = tools.run_focus_stack(frames)
            fs_t = register_stack([fw, fs], "affine")[1]   # show it in the same geometry
            results["focus-stack"] = align.warp(fs, fs_t)[0]
        else:
            t_fs = float("nan")
        golden = DATA / "golden" / "stack9_calibration_fused.png"
        if name == "stack9" and golden.is_file():
            results["calibration (authors')"] = read_image(golden)
        for y, x in crops[name]:
            rows.append(np.hstack([label(v[y:y + 256, x:x + 320], f"{name} {k}") for k, v in results.items()]))
        scales = ", ".join(f"{tr.scale:.4f}" for tr in transforms)
        notes.append(f"- {name}: {len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}; alignment "
                     f"{t_align:.2f} s (scales {scales}); focus-weights {t_fw:.2f} s; focus-stack {t_fs:.2f} s.")
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    cv2.imwrite(str(path), np.vstack(rows), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return "\n".join(notes) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="480x640", help="HxW of the rendered stacks")
    p.add_argument("--scenes", default=",".join(synthetic.SCENES))
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--weights", default=os.environ.get("GACN_WEIGHTS", str(DATA / "GACN.pkl")))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--real", action="store_true", help="also crops of the real stacks (stack9, PCB)")
    p.add_argument("--pcb", default="/work/tools/focus-stack/examples/pcb", help="focus-stack's examples/pcb folder")
    p.add_argument("--tag", default=time.strftime("%Y-%m-%d"))
    p.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    args.size = tuple(int(v) for v in args.size.lower().split("x"))
    args.scenes = [s for s in args.scenes.split(",") if s]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("engine.align").setLevel(logging.WARNING)
    logging.getLogger("engine.imageio").setLevel(logging.ERROR)   # enfuse writes an alpha channel
    args.out_dir.mkdir(parents=True, exist_ok=True)

    from engine import Fuser
    with Fuser("onnxruntime", weights=args.weights, threads=args.threads) as fuser:
        rows, pictures = run_synthetic(args, fuser)
    text = table(rows, args)
    picture(pictures, args.out_dir / f"{args.tag}_stack_quality.png")
    text += (f"\nPicture: `{args.tag}_stack_quality.png`, per scene (breathing variant) the 1:1 crop where "
             "the methods err most, every result registered to the truth.\n")
    if args.real:
        text += "\nReal stacks (`" + f"{args.tag}_real_stacks.png" + "`, 1:1 crops, focus-stack shown in our geometry):\n\n"
        text += real_stacks(args, args.out_dir / f"{args.tag}_real_stacks.png")
    (args.out_dir / f"{args.tag}_stack_quality.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
