"""The tools that make deployable graphs and plans, installed with the engine but never imported
by its runtime: gacn-export (export_onnx: ONNX graphs from the checkpoint), gacn-build-engine
(build_engine: TensorRT plans) and the PyTorch reference model they and the tests use (model;
needs torch, the ``export`` extra)."""
from __future__ import annotations

import sys
from typing import Callable


def run_tool(name: str, action: Callable[[], object]) -> int:
    """A tool's exit status: 0, or 2 with one line on stderr for a GacnError (bad input, a
    missing library, an output that cannot be written)."""
    from engine.errors import GacnError
    try:
        action()
    except GacnError as e:
        print(f"{name}: error: {e.cli_message}", file=sys.stderr)
        return 2
    return 0
