"""Focus-stack strategies against ground truth, beside focus-stack and enfuse.

    python benchmarks/stack_quality.py [--size 480x640] [--scenes motorcycle,coffee,chelsea,cutout]
                                       [--strategies S1,S2] [--real] [--tag NAME]

Renders stacks with a known answer (engine.synthetic: layered thin-lens blur over a depth map,
noise sigma 2) for every scene in four variants: 9 registered frames; 9 frames with 3 % focus
breathing about the centre; 15 and 7 frames with 6 % (each with 5 % exposure drift and 1 % colour
jitter). Fuses them with every strategy through the product's own path (engine.fusion.fuse_stack
on the raw frames: alignment to the default reference included, as `gacn-fuse --stack` runs),
with the default strategy aligned to the first frame instead, with focus-stack (its own
alignment: its defaults, reference the middle frame, and `--reference=0`) and enfuse (given our
aligned frames) where installed, and scores PSNR / SSIM against the sharp image carried into each
result's own geometry (benchmarks/gt_score.py; the other way round as a check). Writes
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
DRIFT = dict(noise=2.0, exposure_drift=0.05, color_drift=0.01)
VARIANTS = {   # name -> (frames, rendering options)
    "registered": (9, dict(noise=2.0)),
    "breathing 3 %": (9, dict(DRIFT, breathing=0.03)),
    "breathing 6 %, 15 frames": (15, dict(DRIFT, breathing=0.06)),
    "breathing 6 %, 7 frames": (7, dict(DRIFT, breathing=0.06)),
}
FIRST = f"{S.DEFAULT}, reference first"
FS0 = "focus-stack --reference=0"


def strategies(fuser, names):
    """name -> f(raw frames) -> fused, as `gacn-fuse --stack --strategy NAME` computes it, and the
    default strategy with `--reference first`."""
    pipeline = fuser.pipeline if fuser else None
    out = {name: (lambda frames, name=name: fuse_stack(frames, pipeline=pipeline, strategy=name).fused)
           for name in names}
    out[FIRST] = lambda frames: fuse_stack(frames, pipeline=None, reference="first").fused
    return out


def run_synthetic(args, fuser) -> tuple[list[dict], dict]:
    rows, pictures = [], {}
    for scene in args.scenes:
        for variant, (n, options) in VARIANTS.items():
            stack = synthetic.make_stack(scene, n, args.size, seed=args.seed, **options)
            name = f"{scene} / {variant}"
            row = {"stack": name, "breathing": "breathing" in variant, "psnr": {}, "ssim": {}, "check": {}, "s": {}}
            results = {"middle frame": stack.frames[n // 2]}
            for sname, fn in strategies(fuser, args.strategies).items():
                t = time.perf_counter()
                results[sname] = fn(stack.frames)
                row["s"][sname] = time.perf_counter() - t
            if tools.focus_stack_path():
                results["focus-stack"], row["s"]["focus-stack"] = tools.run_focus_stack(stack.frames)
                results[FS0], row["s"][FS0] = tools.run_focus_stack(stack.frames, extra=["--reference=0"])
            if tools.enfuse_path():
                aligned = [f for f, _ in align.align_stack(stack.frames, "auto", align.DEFAULT_REFERENCE)]
                results["enfuse"], row["s"]["enfuse"] = tools.run_enfuse(aligned)
            for k, v in results.items():
                sc = gt_score.score(v, stack)
                row["psnr"][k], row["ssim"][k], row["check"][k] = sc["psnr"], sc["ssim"], sc["psnr_truth_geometry"]
            log.info("%s: %s", name, "  ".join(f"{k} {v:.2f}" for k, v in row["psnr"].items()))
            rows.append(row)
            if variant == "breathing 3 %":
                pictures[scene] = (stack, {k: gt_score.register_to_truth(v, stack.truth)[0] for k, v in results.items()})
    return rows, pictures


def margins(rows, key, methods, lines):
    lines += ["| method | min | mean | min, breathing stacks |", "| --- | --- | --- | --- |"]
    for m in methods:
        d = [r[key][m] - r[key]["focus-stack"] for r in rows]
        b = [r[key][m] - r[key]["focus-stack"] for r in rows if r["breathing"]]
        lines.append(f"| {m} | {min(d):+.2f} | {np.mean(d):+.2f} | {min(b):+.2f} |")


def table(rows, args) -> str:
    methods = list(rows[0]["psnr"])
    lines = [f"Ground truth: stacks from engine.synthetic at {args.size[1]}x{args.size[0]}, seed {args.seed}; "
             "PSNR dB / SSIM against the sharp image carried into each result's own geometry (ECC affine) after "
             "a per-channel gain fit, over the pixels every frame covers (benchmarks/gt_score.py). Our "
             f"strategies run as gacn-fuse --stack does (alignment auto, reference {align.DEFAULT_REFERENCE}); "
             "focus-stack aligns itself; enfuse gets our aligned frames.", "",
             "| stack | " + " | ".join(methods) + " |", "|" + " --- |" * (len(methods) + 1)]
    for r in rows:
        lines.append(f"| {r['stack']} | " + " | ".join(f"{r['psnr'][m]:.2f} / {r['ssim'][m]:.3f}" for m in methods) + " |")
    lines += ["", "Check, the other way round (each result warped into the truth's geometry, frame 0's), PSNR dB:", "",
              "| stack | " + " | ".join(methods) + " |", "|" + " --- |" * (len(methods) + 1)]
    for r in rows:
        lines.append(f"| {r['stack']} | " + " | ".join(f"{r['check'][m]:.2f}" for m in methods) + " |")
    if "focus-stack" in methods:
        lines += ["", "Margin over focus-stack (its defaults), dB, in each result's geometry:", ""]
        margins(rows, "psnr", methods, lines)
        lines += ["", "The same margins scored in the truth's geometry (the check):", ""]
        margins(rows, "check", methods, lines)
        if S.DEFAULT in methods:
            worst = min(r["psnr"][S.DEFAULT] - r["psnr"]["focus-stack"] for r in rows if r["breathing"])
            lines += ["", f"Acceptance (default >= focus-stack's defaults + 1.5 dB on every breathing stack): "
                      f"{'met' if worst >= 1.5 else 'NOT met'}, smallest margin {worst:+.2f} dB."]
    timed = [m for m in methods if m in rows[0]["s"]]
    lines += ["", "Seconds per stack (mean; shared 2-core machine, indicative): "
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
    """1:1 crops of the real stacks: the default (reference middle), the default with reference
    first and focus-stack (both shown in the default's geometry), the authors' calibration; and
    the area every frame covers with either reference."""
    sets = {"stack9": sorted((DATA / "stack9").glob("*.jpg"))}
    pcb = Path(args.pcb) if args.pcb else None
    if pcb and pcb.is_dir():
        sets["pcb"] = sorted(pcb.glob("pcb_*.jpg"))
    rows, notes = [], []
    crops = {"stack9": [(380, 280), (300, 1250), (40, 40)], "pcb": [(800, 700), (600, 1300), (30, 30)]}
    for name, paths in sets.items():
        if not paths:
            continue
        frames = [read_image(p) for p in paths]
        t = time.perf_counter()
        res = fuse_stack(frames, pipeline=None)           # the default: focus-weights, align auto, reference middle
        t_fw = time.perf_counter() - t
        first = fuse_stack(frames, pipeline=None, reference="first")
        fw = res.fused
        in_ours = lambda img: align.warp(img, register_stack([fw, img], "affine")[1])[0]  # noqa: E731
        results = {f"default (ref {res.reference})": fw, "reference first": in_ours(first.fused)}
        t_fs = float("nan")
        if tools.focus_stack_path():
            fs, t_fs = tools.run_focus_stack(frames)
            results["focus-stack"] = in_ours(fs)
        golden = DATA / "golden" / "stack9_calibration_fused.png"
        if name == "stack9" and golden.is_file():
            results["calibration (authors')"] = read_image(golden)
        for y, x in crops[name]:
            tiles = [v[y:y + 256, x:x + 320] for v in results.values()]
            rows.append(np.hstack([label(c, f"{name} {k}") for c, k in zip(tiles, results)]))
            for c, k in zip(tiles, results):
                cv2.imwrite(str(Path(args.crops) / f"{name}_{y}_{x}_{k.split()[0]}.png"), c[:, :, ::-1])
        area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
        h, w = fw.shape[:2]
        scales = ", ".join(f"{tr.scale:.4f}" for tr in res.transforms)
        notes.append(f"- {name}: {len(frames)} frames {w}x{h}, reference frame {res.reference} (scales against it "
                     f"{scales}); every frame covers {area(res.valid_rect) / (w * h):.1%} of the output "
                     f"(x {res.valid_rect[0]}..{res.valid_rect[2]}, y {res.valid_rect[1]}..{res.valid_rect[3]}), "
                     f"with reference first {area(first.valid_rect) / (w * h):.1%} (x {first.valid_rect[0]}.."
                     f"{first.valid_rect[2]}, y {first.valid_rect[1]}..{first.valid_rect[3]}); default "
                     f"{t_fw:.2f} s, focus-stack {t_fs:.2f} s.")
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
    p.add_argument("--crops", default="/tmp", help="--real: where the single 1:1 crops are written")
    p.add_argument("--strategies", default=",".join(S.STRATEGIES), help="our strategies to run (GACN ones are slow)")
    p.add_argument("--tag", default=time.strftime("%Y-%m-%d"))
    p.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    args.size = tuple(int(v) for v in args.size.lower().split("x"))
    args.scenes = [s for s in args.scenes.split(",") if s]
    args.strategies = [s for s in args.strategies.split(",") if s]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("engine.align").setLevel(logging.WARNING)
    logging.getLogger("engine.imageio").setLevel(logging.ERROR)   # enfuse writes an alpha channel
    args.out_dir.mkdir(parents=True, exist_ok=True)

    from contextlib import nullcontext
    from engine import Fuser
    network = any(s not in S.NETWORK_FREE for s in args.strategies)
    with Fuser("onnxruntime", weights=args.weights, threads=args.threads) if network else nullcontext() as fuser:
        rows, pictures = run_synthetic(args, fuser)
    text = table(rows, args)
    picture(pictures, args.out_dir / f"{args.tag}_stack_quality.png")
    text += (f"\nPicture: `{args.tag}_stack_quality.png`, per scene (3 % breathing) the 1:1 crop where "
             "the methods err most, every result registered to the truth.\n")
    if args.real:
        text += "\nReal stacks (`" + f"{args.tag}_real_stacks.png" + "`, 1:1 crops, the other results shown in the default's geometry):\n\n"
        text += real_stacks(args, args.out_dir / f"{args.tag}_real_stacks.png")
    (args.out_dir / f"{args.tag}_stack_quality.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
