"""gacn-fuse: fuse a pair, a directory of pairs, a focus stack, two streams, or the demo."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from engine import __version__
from engine.backends.base import BACKENDS
from engine.errors import GacnError, InputError
from engine.fusion import ALIGN_MODES
from engine.options import ALL_PRECISIONS, PRECISIONS
from engine.strategies import DEFAULT as DEFAULT_STRATEGY, NETWORK_FREE, STRATEGIES, STRATEGY_HELP
from engine.imageio import (check_output_image, check_writable, image_meta,
                            quiet_opencv, read_image, save_npz_atomic, write_image)

log = logging.getLogger(__name__)
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
    p.add_argument("--stacks-dir", metavar="DIR", help="fuse every subfolder of DIR (a focus stack, files in natural "
                   "order) to OUTDIR/SUBFOLDER.png; alone or with --pairs-dir; OUTDIR/report.json lists the jobs")
    p.add_argument("--dask", metavar="ADDRESS", help="--pairs-dir/--stacks-dir on a Dask cluster: local:N (N worker "
                   "processes here) or tcp://HOST:PORT (a scheduler; workers read and write the same paths)")
    p.add_argument("--overwrite", action="store_true", help="--pairs-dir/--stacks-dir: redo the jobs whose outputs exist "
                   "(default: skip them)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output image, directory (--pairs-dir) or video/directory (--stream)")
    p.add_argument("--save-maps", metavar="MAPS.npz", help="also save float32 'decision' (D) and 'mask' (M)")
    p.add_argument("--index-map", metavar="PATH", help="stack: save which frame each pixel came from (.npy, or a 16-bit image); "
                   "--stacks-dir: the format (.npy, .png, ...) of OUTDIR/SUBFOLDER_index.EXT")
    p.add_argument("--strategy", choices=STRATEGIES, default=DEFAULT_STRATEGY,
                   help=f"stack strategy (default {DEFAULT_STRATEGY}): " + "; ".join(f"{k}: {v}" for k, v in STRATEGY_HELP.items()))
    p.add_argument("--align", choices=ALIGN_MODES, help="register the frames first (default: auto for --stack, which "
                   "leaves registered frames as they are; none for pairs); affine/homography make a frame that "
                   "cannot be registered an error")
    p.add_argument("--crop", action="store_true", help="--stack: crop to the area every aligned frame covers")
    p.add_argument("--reference", metavar="{first,middle,last,N}", help="--stack: the frame whose geometry the aligned "
                   "output keeps (default middle: the least warping under focus breathing; first for --strategy "
                   "calibration); N counts from 0")
    p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS),
                   help="auto: tensorrt with --engine, torch-cuda with a GPU, else openvino if installed, else onnxruntime")
    p.add_argument("--weights", metavar="PATH", help="GACN checkpoint (default: $GACN_WEIGHTS or a verified download)")
    p.add_argument("--onnx", metavar="MODEL.onnx", help="openvino/onnxruntime: use an exported graph instead of the checkpoint")
    p.add_argument("--engine", metavar="ENGINE.plan", help="tensorrt: a plan from gacn-build-engine")
    p.add_argument("--precision", choices=ALL_PRECISIONS, help="compute precision: "
                   + "; ".join(f"{b}: {', '.join(ps)}" for b, ps in PRECISIONS.items() if ps) + " (default: the first)")
    p.add_argument("--threads", type=int, help="openvino/onnxruntime: threads (default: all usable cores)")
    p.add_argument("--device", type=int, metavar="N", help="torch-cuda/tensorrt: the CUDA device index (default 0)")
    p.add_argument("--slots", type=int, default=3, help="--stream: frames in flight (default 3)")
    p.add_argument("--max-memory", metavar="SIZE", help="working memory of a job, e.g. 2G or 800M (default: 2G on the CPU, "
                   "the free GPU memory less 512M on a GPU); frames that do not fit whole run in exact tiles")
    p.add_argument("--tile", type=int, metavar="PX", help="run in PX x PX tiles (the window the network sees, its 35 px "
                   "overlap included); 0: never tile (default: whole frames when they fit)")
    p.add_argument("--server", metavar="URL", help="fuse on a GACN Triton server (gacn-serve): http://HOST:PORT or "
                   "grpc://HOST:PORT; pairs, --pairs-dir and --stack; the model options are the server's")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S", help="--server: seconds per request (default 120)")
    p.add_argument("--retries", type=int, default=1, metavar="N", help="--server: tries after a failed connection (default 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def _progress(total, desc, quiet, unit="frame"):
    """A progress bar on stderr that stays when done (log lines print above it: see main)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, disable=quiet, leave=True, file=sys.stderr, dynamic_ncols=True)


class _Bar:
    """A progress callback (engine.pipeline_api.Progress) moving a bar of ``unit`` ("tiles",
    "frames"); made up front when ``total`` is known, else at the first report."""

    def __init__(self, unit, desc, quiet, total=None):
        self.unit, self.desc, self.quiet = unit, desc, quiet
        self.bar = None if total is None else _progress(total, desc, quiet, unit=unit[:-1])

    def __call__(self, unit, done, total):
        if unit != self.unit:
            return
        if self.bar is None:
            self.bar = _progress(total, self.desc, self.quiet, unit=unit[:-1])
        self.bar.update(done - self.bar.n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def _same_file(a, b) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _make_fuser(args, progress=None):
    from engine.batch import make_fuser
    from engine.batch_cli import fuser_options
    if not args.server and args.backend in ("auto", "openvino"):
        from engine.backends.openvino import lean_import
        lean_import()
    return make_fuser(fuser_options(args), progress)


def _check_args(args, parser):
    pair_mode = not (args.pairs_dir or args.stacks_dir or args.stack or args.stream or args.demo)
    from engine.batch_cli import check_batch_args
    check_batch_args(args, parser)
    if pair_mode and len(args.sources) != 2:
        parser.error(f"give two source images A B (got {len(args.sources)}), or one of --pairs-dir/--stack/--stream/--demo")
    if not pair_mode and args.sources:
        parser.error("source images go either as A B or after --stack/--stream, not both")
    if args.index_map and not (args.stack or args.stacks_dir):
        parser.error("--index-map applies to --stack/--stacks-dir only")
    if args.crop and not (args.stack or args.stacks_dir):
        parser.error("--crop applies to --stack/--stacks-dir only")
    if args.reference is not None and not (args.stack or args.stacks_dir):
        parser.error("--reference applies to --stack/--stacks-dir only")
    if args.save_maps and not (pair_mode or args.demo):
        parser.error("--save-maps applies to a single pair (A B or --demo)")
    _check_server_args(args, parser)
    if args.stack and len(args.stack) < 2:
        raise InputError(f"a focus stack needs at least 2 frames, got {len(args.stack)}")
    if args.slots < 1:
        raise InputError(f"--slots must be at least 1 (frames in flight), got {args.slots}")
    for option in ("save_maps", "index_map"):
        extra = getattr(args, option)
        if extra and _same_file(extra, args.output):
            raise InputError(f"-o and --{option.replace('_', '-')} both name {args.output}; give two different files")
    return pair_mode


LOCAL_ONLY = ("backend", "weights", "onnx", "engine", "precision", "threads", "max_memory", "tile", "device", "stream")


def _check_server_args(args, parser) -> None:
    """--server: the model options are the server's; refused here rather than ignored (and the
    client's options without --server)."""
    changed = lambda keys: [f"--{k.replace('_', '-')}" for k in keys if getattr(args, k) != parser.get_default(k)]  # noqa: E731
    if not args.server:
        if changed(("timeout", "retries")):
            parser.error(f"{', '.join(changed(('timeout', 'retries')))} apply with --server only")
        return
    given = changed(LOCAL_ONLY)
    if given:
        parser.error(f"{', '.join(given)} do(es) not apply with --server (the server's options decide)")


def run_pair(args, sources, names=("source A", "source B")):
    """Fuse one pair: ``sources`` are two files, or two arrays (the demo). The cheap checks come
    first: the outputs, the options and the checkpoint (building the Fuser), then the sizes in
    the files' headers against the memory plan; only then are pixels decoded."""
    maps = bool(args.save_maps) or args.demo
    files = not hasattr(sources[0], "dtype")
    metas = [image_meta(p) for p in sources] if files else [(s.shape, s.dtype) for s in sources]
    check_output_image(args.output, metas[0][1])
    if args.save_maps:
        check_writable(args.save_maps)
    with _Bar("tiles", "tiles", args.quiet) as bar, _make_fuser(args, progress=bar) as fuser:   # a bar if tiled
        fuser.check_pair(metas, names, maps=maps)
        a, b = (read_image(p) for p in sources) if files else sources
        t = time.perf_counter()
        res = fuser.fuse(a, b, maps=maps, align=args.align or "none")
        log.info("fused %dx%d in %.3f s", a.shape[1], a.shape[0], time.perf_counter() - t)
    write_image(args.output, res.fused, announce=False)
    if args.save_maps:
        save_npz_atomic(args.save_maps, decision=res.decision, mask=res.mask)
    return res


def run_stack(args) -> int:
    from contextlib import nullcontext
    from engine.align import reference_index
    from engine.batch import fuse_stack_files
    from engine.fusion import fuse_stack, stack_reference
    paths, align = args.stack, args.align or "auto"
    no_network = args.strategy in NETWORK_FREE

    def fuse(frames):
        reference_index(stack_reference(args.reference, args.strategy, align), len(paths))   # before any model loads
        with (nullcontext() if no_network and not args.server else _make_fuser(args)) as fuser, \
                _Bar("frames", "stack", args.quiet, total=len(paths)) as bar:   # moves per fused frame
            t = time.perf_counter()
            options = dict(strategy=args.strategy, align=align, names=paths, crop=args.crop, reference=args.reference)
            res = (fuser.fuse_stack(frames, **options) if args.server else
                   fuse_stack(frames, pipeline=None if no_network else fuser.pipeline, progress=bar, **options))
            log.info("fused %d frames in %.2f s (%s)", res.frames, time.perf_counter() - t, args.strategy)
        return res
    fuse_stack_files(paths, args.output, args.index_map, fuse)
    return 0


def run_demo(args) -> int:
    from engine.demo import decision_agreement, demo_pair
    a, b, truth = demo_pair()
    res = run_pair(args, (a, b))
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
        if args.pairs_dir or args.stacks_dir:
            from engine.batch_cli import run_batch
            return run_batch(args, _progress)
        if args.stack:
            return run_stack(args)
        if args.stream:
            from engine.stream_cli import run_stream
            return run_stream(args, _make_fuser)
        if pair_mode:
            run_pair(args, args.sources, names=args.sources)
        return 0
    except GacnError as e:
        print(f"gacn-fuse: error: {e.cli_message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("gacn-fuse: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
