"""gacn-quality: the no-reference fusion metrics of one fused image against its two sources."""
from __future__ import annotations

import argparse
import json
import sys

from engine.errors import GacnError
from engine.imageio import read_image

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gacn-quality",
        description="Q^AB/F, NMI, Q_Y and Q_CB of a fused image against its sources A and B, on luma "
                    "in 0..255, as the MATLAB image-fusion metrics toolbox (Z. Liu et al.) computes them.",
        epilog="Exit codes: 0 success, 2 bad input (message on stderr).")
    p.add_argument("a", metavar="A", help="source image A")
    p.add_argument("b", metavar="B", help="source image B")
    p.add_argument("fused", metavar="FUSED", help="fused image")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of 'key value' lines")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from engine.quality import evaluate
    try:
        scores = evaluate(read_image(args.a), read_image(args.b), read_image(args.fused))
    except GacnError as e:
        print(f"gacn-quality: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(scores))
    else:
        for k, v in scores.items():
            print(f"{k} {v:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
