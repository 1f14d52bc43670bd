"""The installed runtime holds no test or benchmark code, and the tests use none from benchmarks/."""
import ast
import importlib
import re

from conftest import REPO

BENCHMARK_MODULES = {p.stem for p in (REPO / "benchmarks").glob("*.py")}


def test_tests_import_nothing_from_benchmarks():
    """Neither as imports nor in the scripts they run in a child process (``from memory import``)."""
    found = []
    for path in sorted((REPO / "tests").glob("*.py")):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            found += [f"{path.name}: import {n}" for n in names if n.split(".")[0] in BENCHMARK_MODULES | {"benchmarks"}]
        found += [f"{path.name}: {m}" for m in re.findall(r"^\s*(?:from|import) (\w+)", text, re.M)
                  if m in BENCHMARK_MODULES]
    assert not found, found


def test_test_helpers_live_in_engine_testing():
    """What only tests and benchmarks use is in engine.testing, not in the runtime modules."""
    gone = {"engine.kernels": ["build", "cpu_activity", "cpu_feature_conv", "cpu_luma"],
            "engine.align": ["register_stack"], "engine.variants": ["VARIANTS"]}
    for module, names in gone.items():
        present = [n for n in names if hasattr(importlib.import_module(module), n)]
        assert not present, (module, present)
    for module in ("metrics.py", "ort_plugins.py"):
        assert not (REPO / "engine" / module).exists(), module
    assert (REPO / "engine" / "testing" / "__init__.py").is_file() and not (REPO / "export" / "__init__.py").exists()
