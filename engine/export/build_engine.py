"""Build a TensorRT engine from GACN's plugin graph (export/export_onnx.py --plugins [--fp16]).

    python export/build_engine.py --onnx gacn_trt_fp16.onnx -o gacn_fp16.plan
    python export/build_engine.py --onnx gacn_tile.onnx -o gacn_tile.plan --tile 1024

A whole-frame engine runs frames within its profile (--min/--max). ``--tile T`` builds the tile
bundle of a graph exported with export_onnx.py --tile: the tile network for windows of up to
T x T (opt T) and its four sums passes (PLAN.sums0.plan .. sums3), with which the runtime runs
any frame size exactly in bounded device memory (engine/tiling.py).

Writes the plan and ``<plan>.json`` (TensorRT version, GPU and compute capability, profile,
precision, checkpoint and plugin-library sha256, build time), which the TensorRT backend checks
before it runs the plan. Written against the TensorRT 10 and 11 Python APIs: flags are looked
up by name and features detected with hasattr (11 has no FP16 builder flag: an FP16 engine
comes from the FP16 graph, built strongly typed).
"""
from __future__ import annotations

import argparse
import datetime
import logging
import sys
import time
from pathlib import Path


from engine import __version__
from engine.errors import GacnError
from engine.export import run_tool

log = logging.getLogger("build_engine")
HW_COMPAT = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}


def parse_hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not HxW (e.g. 1080x1920)") from None
    if min(h, w) < 8:
        raise argparse.ArgumentTypeError(f"'{text}': both sides must be >= 8")
    return h, w


def onnx_metadata(path: Path) -> dict:
    import onnx
    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("gacn.plugins") != "1":
        raise GacnError(f"{path}: not GACN's TensorRT graph; export it with export/export_onnx.py --plugins [--fp16]")
    return meta


def _network(trt, builder, logger, onnx_path: Path, strongly_typed: bool):
    flags = 0
    if strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # precision from the graph
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        lines = [f"  {e.node_name() or '?'} ({e.node_operator() or '?'}): {e.desc()}" for e in errors]
        raise GacnError(f"{onnx_path}: the ONNX parser failed:\n" + "\n".join(lines))
    return network, parser


def _config(trt, builder, args, cache):
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, args.workspace << 20)
    if hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = args.opt_level
    if args.strict_fp32:
        config.clear_flag(trt.BuilderFlag.TF32)
    if args.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    if args.hardware_compat != "none":
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, HW_COMPAT[args.hardware_compat])
    config.set_timing_cache(cache, ignore_mismatch=False)
    return config


def profiles(args, variant: str) -> dict[str, tuple]:
    """(min, opt, max) input shapes by tensor name: a whole-frame engine's from --min/--opt/--max;
    a tile bundle's windows from 8 x 8 to T x T (opt T), 1 to --max-frames frames for the sums."""
    k = args.max_frames
    if variant == "whole":
        (h0, w0), (h1, w1), (h2, w2) = args.min, args.opt, args.max
        return {"luma": ((2, 1, h0, w0), (2, 1, h1, w1), (k, 1, h2, w2))}
    t = args.tile
    if variant == "tile":
        return {"luma": ((2, 1, 8, 8), (2, 1, t, t), (k, 1, t, t)), "cse": ((2, 64, 1, 1), (2, 64, 1, 1), (k, 64, 1, 1))}
    block = int(variant[4:])
    shapes = {"luma": ((1, 1, 8, 8), (2, 1, t, t), (k, 1, t, t)), "colmask": ((1, 1, 1, 8), (1, 1, 1, t), (1, 1, 1, t))}
    if block:
        c = 16 * block
        shapes["cse"] = ((1, c, 1, 1), (2, c, 1, 1), (k, c, 1, 1))
    return shapes


def build(args):
    import json as _json
    from engine.backends.plan_sidecar import PlanSidecar, sidecar_path
    from engine.backends.tensorrt import import_tensorrt, load_plugins
    from engine import cuda
    from engine.checkpoint import sha256_of
    from engine.atomic import write_bytes_atomic
    from engine.export.export_onnx import sums_path

    trt = import_tensorrt()
    meta = onnx_metadata(args.onnx)
    variant = meta.get("gacn.variant", "whole")
    if (variant == "tile") != bool(args.tile):
        raise GacnError(f"{args.onnx} is a '{variant}' graph: " + ("build it with --tile T" if variant == "tile" else
                        "--tile needs the graphs of export_onnx.py --tile"))
    graph_fp16 = meta.get("gacn.precision") == "fp16"
    if args.fp16_flag and graph_fp16:
        raise GacnError("--fp16-flag is for an FP32 graph; this graph is already FP16")
    if args.fp16_flag and not hasattr(trt.BuilderFlag, "FP16"):
        raise GacnError(f"TensorRT {trt.__version__} has no FP16 builder flag: export the FP16 graph "
                        "(export_onnx.py --plugins --fp16) and build that instead")
    if not args.strict_fp32:
        log.warning("float32 layers (the whole FP32 graph; the feature extraction of the FP16 graph) may run as TF32: "
                    "measured with cuDNN, TF32 features keep 99.8 % of the decision map against 100 %; "
                    "pass --strict-fp32 for the exact result")
    logger = trt.Logger(trt.Logger.VERBOSE if args.verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    plugin_lib = load_plugins(builder.get_plugin_registry(), args.plugins)
    cache_bytes = args.timing_cache.read_bytes() if args.timing_cache.is_file() else b""
    cache = builder.create_builder_config().create_timing_cache(cache_bytes)

    jobs = [(args.onnx, args.output, variant)]
    if variant == "tile":
        jobs += [(sums_path(args.onnx, k), sums_path(args.output, k), f"sums{k}") for k in range(4)]
    seconds = 0.0
    for onnx_path, plan_path, what in jobs:
        network, _parser = _network(trt, builder, logger, onnx_path, strongly_typed=not args.fp16_flag)
        config = _config(trt, builder, args, cache)
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in profiles(args, what).items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
        t0 = time.perf_counter()
        plan = builder.build_serialized_network(network, config)
        seconds += time.perf_counter() - t0
        if plan is None:
            raise GacnError(f"TensorRT failed to build {onnx_path} (its log above says why); try a larger --workspace "
                            "or a smaller --max / --tile")
        write_bytes_atomic(plan_path, bytes(plan))
        log.info("built %s (%s)", plan_path, what)
    args.timing_cache.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.timing_cache, bytes(cache.serialize()))

    gpu, cc = cuda.device_name_and_capability()
    tile = variant == "tile"
    sidecar = PlanSidecar(
        tensorrt_version=trt.__version__, gpu=gpu, compute_capability=cc,
        hardware_compatibility=args.hardware_compat, version_compatible=False, variant=variant,
        profile={k: [list(s) for s in v] for k, v in profiles(args, variant).items()},
        precision="fp16" if (graph_fp16 or args.fp16_flag) else ("fp32" if args.strict_fp32 else "fp32+tf32"),
        typing="weak (FP16 flag)" if args.fp16_flag else "strong",
        checkpoint_sha256=meta.get("gacn.checkpoint_sha256"),
        plugin_library=str(plugin_lib), plugin_library_sha256=sha256_of(plugin_lib),
        onnx_sha256=sha256_of(args.onnx), build_seconds=round(seconds, 1),
        built_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        builder_optimization_level=args.opt_level, workspace_mib=args.workspace,
        tile=args.tile if tile else None,
        sums_plans=[sums_path(args.output, k).name for k in range(4)] if tile else None,
        cse_fc=_json.loads(meta["gacn.cse_fc"]) if tile else None)
    write_bytes_atomic(sidecar_path(args.output), sidecar.to_json().encode())
    log.info("built %s in %.1f s (%s, %s)", args.output, seconds, sidecar.precision, gpu)
    return sidecar


def main(argv=None) -> int:
    from engine.weights import cache_dir
    p = argparse.ArgumentParser(prog="gacn-build-engine", description=__doc__.split("\n")[0])
    p.add_argument("--onnx", required=True, type=Path, help="plugin graph from export_onnx.py --plugins [--fp16]")
    p.add_argument("-o", "--output", required=True, type=Path, help="engine plan to write")
    p.add_argument("--min", type=parse_hw, default=(256, 256), metavar="HxW", help="smallest frame (default 256x256)")
    p.add_argument("--opt", type=parse_hw, default=(1080, 1920), metavar="HxW", help="tuned frame (default 1080x1920)")
    p.add_argument("--max", type=parse_hw, default=(2160, 3840), metavar="HxW", help="largest frame (default 2160x3840)")
    p.add_argument("--max-frames", type=int, default=3, help="largest K of luma[K,1,H,W] (2: pairs; 3: stacks compare "
                   "STACK_BATCH = 2 frames with the reference per run, engine/strategies.py)")
    p.add_argument("--tile", type=int, metavar="T", help="build the tile bundle of a graph from export_onnx.py --tile, "
                   "for windows of up to T x T (e.g. 1024)")
    p.add_argument("--workspace", type=int, default=4096, metavar="MiB", help="builder workspace limit (default 4096)")
    p.add_argument("--opt-level", type=int, default=3, choices=range(6), help="builder optimisation level (default 3)")
    p.add_argument("--timing-cache", type=Path, default=cache_dir() / "tensorrt.timing-cache", help="reused across builds")
    p.add_argument("--hardware-compat", choices=tuple(HW_COMPAT), default="none", help="engine portability across GPUs")
    p.add_argument("--strict-fp32", action="store_true", help="disable TF32 for float32 layers (exact features)")
    p.add_argument("--fp16-flag", action="store_true", help="TensorRT 10 only: build an FP32 graph with the FP16 flag")
    p.add_argument("--plugins", type=Path, help="libgacn_plugins.so (default: found as the runtime finds it: "
                   "$GACN_KERNELS_DIR, the installed package, a checkout's build/lib)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not all(a <= b <= c for a, b, c in zip(args.min, args.opt, args.max)):
        p.error("profile must satisfy --min <= --opt <= --max in both sides")
    if args.max_frames < 2:
        p.error("--max-frames must be at least 2")
    if args.tile is not None:
        from engine.tiling import MIN_TILE
        if args.tile < MIN_TILE:
            p.error(f"--tile {args.tile}: a tile must be at least {MIN_TILE} px (twice the network's overlap plus 8)")
    return run_tool("build_engine", lambda: build(args))


if __name__ == "__main__":
    sys.exit(main())
