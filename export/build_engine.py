"""Build a TensorRT engine from GACN's plugin graph (export/export_onnx.py --plugins [--fp16]).

A thin script for a checkout (`python export/build_engine.py ...`); the tool is engine.export.build_engine,
installed as the console script gacn-build-engine."""
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from engine.export.build_engine import main
    sys.exit(main())
