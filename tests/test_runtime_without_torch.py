"""The runtime (CPU backends, CLI) never imports torch."""
import importlib.util
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = r"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, Block())
from engine.cli import main
rc = main(sys.argv[1:])
assert "torch" not in sys.modules
sys.exit(rc)
"""


@pytest.mark.parametrize("backend", ["auto", "openvino", "onnxruntime"])
def test_cli_fuses_without_torch(backend, data_dir, weights, tmp_path):
    if backend != "auto" and importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    out = tmp_path / "f.png"
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(data_dir / "pairs" / "gray_mwg_clock_1.png"),
                        str(data_dir / "pairs" / "gray_mwg_clock_2.png"), "-o", str(out), "--weights", str(weights),
                        "--backend", backend, "-q"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert out.is_file()
