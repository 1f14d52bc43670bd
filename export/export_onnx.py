"""Export GACN to ONNX: the portable graph (standard ops) or the TensorRT plugin graph.

A thin script for a checkout (`python export/export_onnx.py ...`); the tool is engine.export.export_onnx,
installed as the console script gacn-export."""
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from engine.export.export_onnx import main
    sys.exit(main())
