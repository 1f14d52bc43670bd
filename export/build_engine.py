"""Build a TensorRT engine from GACN's plugin graph (export/export_onnx.py --plugins [--fp16]).

    python export/build_engine.py --onnx gacn_trt_fp16.onnx -o gacn_fp16.plan

Writes the plan and ``<plan>.json`` (TensorRT version, GPU and compute capability, profile,
precision, checkpoint and plugin-library sha256, build time), which the TensorRT backend checks
before it runs the plan. Written against the TensorRT 10 and 11 Python APIs: flags are looked
up by name and features detected with hasattr (11 has no FP16 builder flag: an FP16 engine
comes from the FP16 graph, built strongly typed).
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import __version__  # noqa: E402
from engine.errors import GacnError  # noqa: E402

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


def build(args) -> dict:
    from engine.backends.tensorrt import import_tensorrt, load_plugins
    from engine import cuda
    from engine.checkpoint import sha256_of

    trt = import_tensorrt()
    meta = onnx_metadata(args.onnx)
    graph_fp16 = meta.get("gacn.precision") == "fp16"
    if args.fp16_flag and graph_fp16:
        raise GacnError("--fp16-flag is for an FP32 graph; this graph is already FP16")
    if args.fp16_flag and not hasattr(trt.BuilderFlag, "FP16"):
        raise GacnError(f"TensorRT {trt.__version__} has no FP16 builder flag: export the FP16 graph "
                        "(export_onnx.py --plugins --fp16) and build that instead")
    logger = trt.Logger(trt.Logger.VERBOSE if args.verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    plugin_lib = load_plugins(builder.get_plugin_registry(), args.plugins)
    flags = 0
    if not args.fp16_flag and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # precision from the graph
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(args.onnx)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        lines = [f"  {e.node_name() or '?'} ({e.node_operator() or '?'}): {e.desc()}" for e in errors]
        raise GacnError(f"{args.onnx}: the ONNX parser failed:\n" + "\n".join(lines))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, args.workspace << 20)
    if hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = args.opt_level
    if args.strict_fp32:
        config.clear_flag(trt.BuilderFlag.TF32)
    else:
        log.warning("float32 layers (the whole FP32 graph; the feature extraction of the FP16 graph) may run as TF32: "
                    "measured with cuDNN, TF32 features keep 99.8 % of the decision map against 100 %; "
                    "pass --strict-fp32 for the exact result")
    if args.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    if args.hardware_compat != "none":
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, HW_COMPAT[args.hardware_compat])

    cache_bytes = args.timing_cache.read_bytes() if args.timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    profile = builder.create_optimization_profile()
    (h0, w0), (h1, w1), (h2, w2) = args.min, args.opt, args.max
    profile.set_shape("luma", (2, 1, h0, w0), (2, 1, h1, w1), (args.max_frames, 1, h2, w2))
    config.add_optimization_profile(profile)

    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if plan is None:
        raise GacnError("TensorRT failed to build the engine (its log above says why); try a larger --workspace "
                        "or a smaller --max")
    from engine.imageio import write_bytes_atomic
    write_bytes_atomic(args.output, bytes(plan))
    args.timing_cache.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.timing_cache, bytes(config.get_timing_cache().serialize()))

    gpu, cc = cuda.device_name_and_capability()
    sidecar = {
        "tensorrt_version": trt.__version__, "gpu": gpu, "compute_capability": cc,
        "hardware_compatibility": args.hardware_compat, "version_compatible": False,
        "profile": {"frames": [2, 2, args.max_frames], "min": list(args.min), "opt": list(args.opt), "max": list(args.max)},
        "precision": "fp16" if (graph_fp16 or args.fp16_flag) else ("fp32" if args.strict_fp32 else "fp32+tf32"),
        "typing": "weak (FP16 flag)" if args.fp16_flag else "strong",
        "checkpoint_sha256": meta.get("gacn.checkpoint_sha256"),
        "plugin_library": str(plugin_lib), "plugin_library_sha256": sha256_of(plugin_lib),
        "onnx_sha256": sha256_of(args.onnx), "build_seconds": round(seconds, 1),
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "builder_optimization_level": args.opt_level, "workspace_mib": args.workspace,
    }
    from engine.backends.tensorrt import sidecar_path
    write_bytes_atomic(sidecar_path(args.output), json.dumps(sidecar, indent=2).encode())
    log.info("built %s in %.1f s (%s, %s)", args.output, seconds, sidecar["precision"], gpu)
    return sidecar


def main(argv=None) -> int:
    from engine.weights import cache_dir
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--onnx", required=True, type=Path, help="plugin graph from export_onnx.py --plugins [--fp16]")
    p.add_argument("-o", "--output", required=True, type=Path, help="engine plan to write")
    p.add_argument("--min", type=parse_hw, default=(256, 256), metavar="HxW", help="smallest frame (default 256x256)")
    p.add_argument("--opt", type=parse_hw, default=(1080, 1920), metavar="HxW", help="tuned frame (default 1080x1920)")
    p.add_argument("--max", type=parse_hw, default=(2160, 3840), metavar="HxW", help="largest frame (default 2160x3840)")
    p.add_argument("--max-frames", type=int, default=2, help="largest K of luma[K,1,H,W] (2 = pairs; more batches stack frames)")
    p.add_argument("--workspace", type=int, default=4096, metavar="MiB", help="builder workspace limit (default 4096)")
    p.add_argument("--opt-level", type=int, default=3, choices=range(6), help="builder optimisation level (default 3)")
    p.add_argument("--timing-cache", type=Path, default=cache_dir() / "tensorrt.timing-cache", help="reused across builds")
    p.add_argument("--hardware-compat", choices=tuple(HW_COMPAT), default="none", help="engine portability across GPUs")
    p.add_argument("--strict-fp32", action="store_true", help="disable TF32 for float32 layers (exact features)")
    p.add_argument("--fp16-flag", action="store_true", help="TensorRT 10 only: build an FP32 graph with the FP16 flag")
    p.add_argument("--plugins", type=Path, help="libgacn_plugins.so (default: the one built in build/lib)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not all(a <= b <= c for a, b, c in zip(args.min, args.opt, args.max)):
        p.error("profile must satisfy --min <= --opt <= --max in both sides")
    try:
        build(args)
    except GacnError as e:
        print(f"build_engine: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
