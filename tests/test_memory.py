"""Memory is planned, not guessed: a job stays within --max-memory, and sizes parse or are refused."""
import json
import subprocess
import sys

import pytest

from conftest import REPO
from engine.errors import InputError
from engine.memory import GiB, MiB, parse_size

PROBE = r"""
import json, resource, sys
sys.path.insert(0, {repo!r})
from engine.testing.pairs import camera_pair
a, b = camera_pair({h}, {w})
from engine import Fuser
with Fuser("onnxruntime", weights={weights!r}, max_memory={budget!r}) as f:
    plans, plan_of = [], f.pipeline.plan
    f.pipeline.plan = lambda *args: plans.append(plan_of(*args)) or plans[-1]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    f.fuse(a, b)
    side = plans[-1].side
print(json.dumps({{"before": before, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "side": side}}))
"""


@pytest.mark.parametrize("text, value", [("2G", 2 * GiB), ("1.5g", int(1.5 * GiB)), ("800M", 800 * MiB), ("512MiB", 512 * MiB),
                                         ("4096", 4096), (3 * GiB, 3 * GiB)])
def test_sizes_parse(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "2X", "-1G", "0", "abc", "1.2.3G"])
def test_bad_sizes_are_refused_by_name(text):
    with pytest.raises(InputError, match="--max-memory"):
        parse_size(text)


def test_a_large_pair_stays_within_its_budget(weights):
    """A 2400x1800 pair, 18.5 GB whole before tiling existed, with a 1 GiB budget: the peak RSS
    grows by no more than the budget over the process holding the two frames and the ready runtime."""
    code = PROBE.format(repo=str(REPO), h=1800, w=2400, weights=str(weights), budget="1G")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["side"] is not None                       # it was tiled
    grew = res["peak"] - res["before"]
    assert grew <= 1 * GiB, f"grew by {grew / GiB:.2f} GiB over a 1 GiB budget (tiles of {res['side']} px)"


def test_the_memory_table_runs(weights, tmp_path):
    """benchmarks/memory.py end to end at a tiny size: every row ran (exit 0) and has a peak."""
    out = tmp_path / "table.json"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "memory.py"), "--sizes", "0.05", "--weights", str(weights),
                        "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert {row["mode"] for row in rows} >= {"default", "whole (--tile 0)", "--strategy calibration"} and len(rows) == 6, rows
    assert all(row["rc"] == 0 and row["peak_gib"] > 0 for row in rows), rows
