"""gacn-fuse: fuse a pair, a directory of pairs, a focus stack, two streams, or the demo."""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from pathlib import Path

from engine import __version__
from engine.backends.base import BACKENDS
from engine.errors import GacnError, InputError
from engine.fusion import ALIGN_MODES
from engine.strategies import DEFAULT as DEFAULT_STRATEGY, NETWORK_FREE, STRATEGIES, STRATEGY_HELP
from engine.imageio import (check_index_map, check_output_image, check_writable, make_output_dir, quiet_opencv,
                            read_image, save_npz_atomic, write_image, write_index_map)

log = logging.getLogger("gacn-fuse")
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gacn-fuse",
        description="All-in-focus fusion of multi-focus images with GACN: registered pairs, focus stacks (aligned by default), streams.",
        epilog="Exit codes: 0 success, 2 bad input or unusable backend/weights (message on stderr).")
    p.add_argument("sources", nargs="*", metavar="A B", help="two registered source images")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--pairs-dir", metavar="DIR", help="fuse every NAME_1.*/NAME_2.* in DIR to OUTDIR/NAME.png")
    mode.add_argument("--stack", nargs="+", metavar="FILE", help="fuse a focus stack (frame order as given)")
    mode.add_argument("--stream", nargs=2, metavar=("A", "B"),
                      help="fuse two synchronised videos or image sequences (directory or glob) frame by frame")
    mode.add_argument("--demo", action="store_true", help="fuse a synthetic pair with a known answer and report D's accuracy")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output image, directory (--pairs-dir) or video/directory (--stream)")
    p.add_argument("--save-maps", metavar="MAPS.npz", help="also save float32 'decision' (D) and 'mask' (M)")
    p.add_argument("--index-map", metavar="PATH", help="stack: save which frame each pixel came from (.npy, or a 16-bit image)")
    p.add_argument("--strategy", choices=STRATEGIES, default=DEFAULT_STRATEGY,
                   help=f"stack strategy (default {DEFAULT_STRATEGY}): " + "; ".join(f"{k}: {v}" for k, v in STRATEGY_HELP.items()))
    p.add_argument("--align", choices=ALIGN_MODES, help="register the frames first (default: auto for --stack, which "
                   "leaves registered frames as they are; none for pairs); affine/homography make a frame that "
                   "cannot be registered an error")
    p.add_argument("--crop", action="store_true", help="--stack: crop to the area every aligned frame covers")
    p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS),
                   help="auto: tensorrt with --engine, torch-cuda with a GPU, else openvino if installed, else onnxruntime")
    p.add_argument("--weights", metavar="PATH", help="GACN checkpoint (default: $GACN_WEIGHTS or a verified download)")
    p.add_argument("--onnx", metavar="MODEL.onnx", help="openvino/onnxruntime: use an exported graph instead of the checkpoint")
    p.add_argument("--engine", metavar="ENGINE.plan", help="tensorrt: a plan from export/build_engine.py")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32",
                   help="fp16: torch-cuda's float16 decision path; bf16: openvino's bfloat16 decision path (CPUs with BF16)")
    p.add_argument("--threads", type=int, help="openvino/onnxruntime: threads (default: all usable cores)")
    p.add_argument("--slots", type=int, default=3, help="--stream: frames in flight (default 3)")
    p.add_argument("--max-memory", metavar="SIZE", help="working memory of a job, e.g. 2G or 800M (default: 2G on the CPU, "
                   "the free GPU memory less 512M on a GPU); frames that do not fit whole run in exact tiles")
    p.add_argument("--tile", type=int, metavar="PX", help="run in PX x PX tiles (the window the network sees, its 35 px "
                   "overlap included); 0: never tile (default: whole frames when they fit)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def _progress(total, desc, quiet, unit="frame"):
    """A progress bar on stderr that stays when done (log lines print above it: see main)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, disable=quiet, leave=True, file=sys.stderr, dynamic_ncols=True)


def _same_file(a, b) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _make_fuser(args):
    from engine.fusion import Fuser
    if args.backend in ("auto", "openvino"):
        from engine.backends.openvino import lean_import
        lean_import()
    return Fuser(args.backend, weights=args.weights, onnx=args.onnx, engine=args.engine,
                 precision=args.precision, threads=args.threads, max_memory=args.max_memory, tile=args.tile)


def _check_args(args, parser):
    pair_mode = not (args.pairs_dir or args.stack or args.stream or args.demo)
    if pair_mode and len(args.sources) != 2:
        parser.error(f"give two source images A B (got {len(args.sources)}), or one of --pairs-dir/--stack/--stream/--demo")
    if not pair_mode and args.sources:
        parser.error("source images go either as A B or after --stack/--stream, not both")
    if args.index_map and not args.stack:
        parser.error("--index-map applies to --stack only")
    if args.crop and not args.stack:
        parser.error("--crop applies to --stack only")
    if args.save_maps and not (pair_mode or args.demo):
        parser.error("--save-maps applies to a single pair (A B or --demo)")
    if args.max_memory is not None:
        from engine.memory import parse_size
        parse_size(args.max_memory)
    from engine.tiling import check_tile
    check_tile(args.tile)
    if args.stack and len(args.stack) < 2:
        raise InputError(f"a focus stack needs at least 2 frames, got {len(args.stack)}")
    if args.slots < 1:
        raise InputError(f"--slots must be at least 1 (frames in flight), got {args.slots}")
    for option in ("save_maps", "index_map"):
        extra = getattr(args, option)
        if extra and _same_file(extra, args.output):
            raise InputError(f"-o and --{option.replace('_', '-')} both name {args.output}; give two different files")
    return pair_mode


def run_pair(args, a, b, names=("source A", "source B")):
    from engine.preprocess import check_sources
    a, b = check_sources([a, b], list(names))  # before loading any model
    check_output_image(args.output, a.dtype)
    if args.save_maps:
        check_writable(args.save_maps)
    with _make_fuser(args) as fuser:
        t = time.perf_counter()
        res = fuser.fuse(a, b, maps=bool(args.save_maps) or args.demo, align=args.align or "none")
        log.info("fused %dx%d in %.3f s", a.shape[1], a.shape[0], time.perf_counter() - t)
    write_image(args.output, res.fused, announce=False)
    if args.save_maps:
        save_npz_atomic(args.save_maps, decision=res.decision, mask=res.mask)
    return res


def run_pairs_dir(args) -> int:
    src = Path(args.pairs_dir)
    if not src.is_dir():
        raise InputError(f"{src}: not a directory")
    groups: dict[str, dict[str, Path]] = {}
    for f in sorted(src.iterdir()):
        m = re.fullmatch(r"(.+)_([12])\.[^.]+", f.name)
        if m and f.is_file():
            groups.setdefault(m.group(1), {})[m.group(2)] = f
    if not groups:
        raise InputError(f"{src}: no NAME_1.*/NAME_2.* files")
    out = Path(args.output)
    make_output_dir(out)
    failed = [f"{name}: missing NAME_{'2' if '1' in g else '1'}.*" for name, g in groups.items() if len(g) != 2]
    complete = [(name, g) for name, g in groups.items() if len(g) == 2]
    from engine.prefetch import prefetch

    def load(item):
        name, g = item
        try:
            return name, read_image(g["1"]), read_image(g["2"]), None
        except GacnError as e:
            return name, None, None, e

    written = 0
    with _make_fuser(args) as fuser, _progress(len(complete), "pairs", args.quiet, unit="pair") as bar:
        for name, a, b, err in prefetch(load, complete):
            try:
                if err:
                    raise err
                write_image(out / f"{name}.png", fuser.fuse(a, b, align=args.align or "none").fused)
                written += 1
            except InputError as e:
                failed.append(f"{name}: {e}")
            bar.update()
    for msg in failed:
        print(f"gacn-fuse: error: {msg}", file=sys.stderr)
    log.info("%d of %d pairs fused into %s", written, len(groups), out)
    return EXIT_BAD_INPUT if failed else 0


def run_stack(args) -> int:
    import itertools
    from engine.prefetch import prefetch
    paths = args.stack
    first = read_image(paths[0])  # its bit depth decides what the output format must hold
    check_output_image(args.output, first.dtype)
    if args.index_map:
        check_index_map(args.index_map, len(paths))
    from contextlib import nullcontext
    from engine.fusion import fuse_stack
    no_network = args.strategy in NETWORK_FREE
    with (nullcontext() if no_network else _make_fuser(args)) as fuser, \
            _progress(len(paths), "stack", args.quiet) as bar:
        def frames():
            for img in itertools.chain([first], prefetch(read_image, paths[1:])):
                bar.update()
                yield img
        t = time.perf_counter()
        res = fuse_stack(frames(), pipeline=None if no_network else fuser.pipeline, strategy=args.strategy,
                         align=args.align or "auto", names=paths, crop=args.crop)
        log.info("fused %d frames in %.2f s (%s)", res.frames, time.perf_counter() - t, args.strategy)
    write_image(args.output, res.fused, announce=False)
    if args.index_map:
        write_index_map(args.index_map, res.index)
    return 0


def run_demo(args) -> int:
    from engine.demo import decision_agreement, demo_pair
    a, b, truth = demo_pair()
    res = run_pair(args, a, b)
    overall, away = decision_agreement(res.decision, truth)
    print(f"demo: D > 0.5 matches the known sharp region on {overall:.2%} of pixels "
          f"({away:.2%} away from the focus boundary); fused image written to {args.output}")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    quiet_opencv()
    from tqdm.contrib.logging import logging_redirect_tqdm
    with logging_redirect_tqdm():  # log lines print above the progress bars, not over them
        return _dispatch(args, parser)


def _dispatch(args, parser) -> int:
    try:
        pair_mode = _check_args(args, parser)
        if args.demo:
            return run_demo(args)
        if args.pairs_dir:
            return run_pairs_dir(args)
        if args.stack:
            return run_stack(args)
        if args.stream:
            from engine.stream_cli import run_stream
            return run_stream(args, _make_fuser)
        if pair_mode:
            a, b = (read_image(p) for p in args.sources)
            run_pair(args, a, b, names=args.sources)
        return 0
    except GacnError as e:
        print(f"gacn-fuse: error: {e.cli_message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("gacn-fuse: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
