"""Export GACN to ONNX: the portable graph (standard ops) or the TensorRT plugin graph.

    python export/export_onnx.py --weights GACN.pkl -o gacn.onnx
    python export/export_onnx.py --weights GACN.pkl -o gacn_trt_fp16.onnx --plugins --fp16
    python export/export_onnx.py --weights GACN.pkl -o gacn_tile.onnx --plugins --fp16 --tile

``--tile`` writes the graphs of exact tiled execution (engine/tiling.py): OUT, the ``tile``
network (CSE scales as an input), and OUT.sums0.onnx .. OUT.sums3.onnx, the passes that compute
the scales; export/build_engine.py --tile builds them into one engine bundle.

I/O: ``luma`` [K,1,H,W] float32 (frame 0 = source A) -> ``decision``, ``mask`` [K-1,1,H,W]
float32; H, W and K are dynamic. See engine/onnx_graph.py for why this split is fastest.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


import onnx

from engine import __version__
from engine.atomic import write_bytes_atomic
from engine.checkpoint import load_gacn, sha256_of
from engine.export import run_tool
from engine.onnx_graph import build_model

log = logging.getLogger("export_onnx")


def sums_path(path: Path, block: int) -> Path:
    """Where the sums pass of ``block`` lives beside a tile graph (and its engine)."""
    return path.with_name(f"{path.stem}.sums{block}{path.suffix}")


def export(weights: Path, output: Path, *, plugins: bool = False, fp16: bool = False,
           tile: bool = False) -> onnx.ModelProto:
    import json
    from engine.tiling import cse_weights
    params = load_gacn(weights)
    meta = {"gacn.checkpoint_sha256": sha256_of(weights), "gacn.exporter": f"gacn-engine {__version__}",
            "gacn.precision": "fp16" if fp16 else "fp32"}
    if tile:  # the CSE excitation runs on the host between the passes: its weights travel along
        meta["gacn.cse_fc"] = json.dumps([[f1.tolist(), f2.tolist()] for f1, f2 in cse_weights(params)])
    variants = [(output, "tile" if tile else "whole", None)]
    if tile:
        variants += [(sums_path(output, k), "sums", k) for k in range(4)]
    for path, variant, block in variants:
        model = build_model(params, plugins=plugins, fp16=fp16, variant=variant, block=block, metadata=meta)
        standard = all(n.domain == "" for n in model.graph.node)
        onnx.checker.check_model(model, full_check=standard)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=standard)
        write_bytes_atomic(path, model.SerializeToString())
        log.info("wrote %s (%s, %d nodes, opset %d)", path, variant if block is None else f"sums{block}",
                 len(model.graph.node), model.opset_import[0].version)
        if path == output:
            first = model
    return first


def build_parser() -> argparse.ArgumentParser:
    """gacn-export's options (a tool that adds its own extends this parser)."""
    p = argparse.ArgumentParser(prog="gacn-export", description=__doc__.split("\n")[0])
    p.add_argument("--weights", required=True, type=Path, help="GACN checkpoint (GACN.pkl)")
    p.add_argument("-o", "--output", type=Path, help="the ONNX file (required unless --triton-repo)")
    p.add_argument("--plugins", action="store_true", help="TensorRT graph: GacnFeatureConv/GacnActivity/"
                   "GacnSpatialGate/GacnBoundaryRefine nodes (the four plugins of libgacn_plugins.so)")
    p.add_argument("--fp16", action="store_true", help="with --plugins: FP16 convolutions, plugins computing in FP32 inside")
    p.add_argument("--tile", action="store_true", help="the graphs of exact tiled execution: OUT and OUT.sums0-3")
    p.add_argument("--triton-repo", type=Path, metavar="DIR", help="instead: write a Triton model repository "
                   "(README 'Serving'), with the --triton-* model options")
    from engine.serve.repository import add_arguments
    add_arguments(p, prefix="triton-")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def export_repository(args, parser) -> int:
    """``gacn-export --triton-repo DIR``: the graph options do not apply and are refused."""
    given = [o for o, on in (("-o", args.output), ("--plugins", args.plugins), ("--fp16", args.fp16),
                             ("--tile", args.tile)) if on]
    if given:
        parser.error(f"{', '.join(given)} do(es) not apply with --triton-repo (use the --triton-* options)")
    from engine.serve.repository import options_from_args, write_repository

    def write():
        options = options_from_args(args, prefix="triton-", weights=args.weights)
        root = write_repository(args.triton_repo, options, tensorrt_plan=args.triton_tensorrt_plan)
        print(f"Triton model repository written to {root}: models "
              f"{', '.join(sorted(p.name for p in root.iterdir() if (p / 'config.pbtxt').is_file()))}")
    return run_tool("gacn-export", write)


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.triton_repo:
        return export_repository(args, p)
    if args.output is None:
        p.error("give -o OUTPUT (or --triton-repo DIR)")
    if args.fp16 and not args.plugins:
        p.error("--fp16 applies to the TensorRT plugin graph (--plugins); the portable graph is float32")
    return run_tool("export_onnx", lambda: export(args.weights, args.output, plugins=args.plugins, fp16=args.fp16,
                                                  tile=args.tile))


if __name__ == "__main__":
    sys.exit(main())
