"""Declared interfaces hold: code outside the pipeline uses only what engine.pipeline_api and
engine.executor declare, and the pipeline and executors implement those declarations.

The check reads the source (AST): an attribute read on a pipeline or an executor (a name such as
``pipeline``/``pipe``/``ex``/``executor``, ``x.pipeline``, or a parameter annotated with a
declared Protocol, as the strategies' ``job: StackJob``) must be a member of the interface
declared for it.
"""
import ast

import pytest

from conftest import REPO
from contracts import assert_implements

DECLARING = ("engine/pipeline_api.py", "engine/executor.py")
# the pipeline itself: it implements the interfaces and may use its own executor freely
PIPELINE = {"engine/pipeline.py", "engine/executor.py", "engine/pipeline_api.py", "engine/host_executor.py",
            "engine/device_executor.py"}


def declared_protocols() -> dict[str, set[str]]:
    """Protocol name -> its members (methods and annotated attributes, inherited ones included)."""
    classes = {}
    for rel in DECLARING:
        for node in ast.parse((REPO / rel).read_text()).body:
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", None) == "Protocol" for b in node.bases):
                members = {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
                members |= {n.target.id for n in node.body if isinstance(n, ast.AnnAssign)}
                classes[node.name] = (members, [b.id for b in node.bases if isinstance(b, ast.Name)])

    def closure(name):
        members, bases = classes[name]
        return members.union(*(closure(b) for b in bases if b in classes))
    return {name: closure(name) for name in classes}


def receivers(protocols) -> dict[str, set[str]]:
    """What each conventional name may use."""
    pipeline = protocols["PairPipeline"] | protocols["StackPipeline"]
    executor = protocols["Executor"] | protocols["StackAccumulators"]
    return {"pipeline": pipeline, "pipe": pipeline, "ex": executor, "executor": executor}


def _annotation_name(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.split("|")[0].strip()
    if isinstance(node, ast.BinOp):          # StackPipeline | None
        return _annotation_name(node.left)
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def violations(source: str, protocols: dict[str, set[str]]) -> list[str]:
    """``line: receiver.attr`` for every attribute a pipeline or executor is used through that its
    declared interface does not name."""
    names = receivers(protocols)
    tree = ast.parse(source)
    annotated: dict[tuple, set[str]] = {}    # (function node id, parameter) -> members
    scopes = {}
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for arg in fn.args.args + fn.args.kwonlyargs:
                proto = _annotation_name(getattr(arg, "annotation", None))
                if proto in protocols:
                    annotated[(id(fn), arg.arg)] = protocols[proto]
            for sub in ast.walk(fn):
                scopes.setdefault(id(sub), []).append(id(fn))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        recv = node.value
        key = recv.id if isinstance(recv, ast.Name) else recv.attr if isinstance(recv, ast.Attribute) else None
        if key is None:
            continue
        allowed = next((annotated[(f, key)] for f in scopes.get(id(node), []) if (f, key) in annotated), None)
        if allowed is None and key in names:
            allowed = names[key]
        if allowed is not None and node.attr not in allowed:
            found.append(f"{node.lineno}: {key}.{node.attr}")
    return found


def outside_modules():
    for d in ("engine", "export"):
        for path in sorted((REPO / d).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel not in PIPELINE:
                yield rel, path


def test_code_outside_the_pipeline_uses_only_declared_interfaces():
    protocols = declared_protocols()
    bad = {rel: v for rel, path in outside_modules() if (v := violations(path.read_text(), protocols))}
    assert not bad, bad


@pytest.mark.parametrize("snippet, expected", [
    ("def f(pipeline):\n    return pipeline.ex.runner\n", ["2: pipeline.ex"]),
    ("def f(self):\n    return self.pipeline.workspaces('stack', 2), self.pipeline.fence('x')\n",
     ["2: pipeline.fence"]),
    ("def f(p: StackPipeline):\n    return p.frames_on_executor([], 2)\n", ["2: p.frames_on_executor"]),
    ("def f(job: StackJob):\n    return job._ex.put\n", ["2: job._ex"]),
    ("def f(ex):\n    return ex.calibration, ex.download\n", ["2: ex.download"]),
])
def test_checker_catches_attributes_the_interfaces_do_not_name(snippet, expected):
    """Negative control: code reaching into the pipeline's or an executor's internals is caught."""
    assert violations(snippet, declared_protocols()) == expected


def test_the_old_reach_ins_are_not_declared():
    """What engine.strategies used to read off the pipeline is not part of its declared interface."""
    names = receivers(declared_protocols())
    assert not {"ex", "fence", "frames_on_executor", "plan", "resident", "maps"} & names["pipeline"]


def test_pipeline_and_executors_implement_the_declared_interfaces():
    from engine import pipeline_api as api
    from engine.device_executor import DeviceExecutor
    from engine.executor import Executor
    from engine.host_executor import HostExecutor
    from engine.pipeline import Pipeline, _StackJob
    for ex in (HostExecutor, DeviceExecutor):
        assert_implements(ex, Executor)
        assert_implements(ex, api.StackAccumulators)
    assert_implements(Pipeline, api.PairPipeline)
    assert_implements(Pipeline, api.StackPipeline)
    assert_implements(_StackJob, api.StackJob)


def test_signature_check_can_fail():
    """Negative control: a method with the declared name but other parameters is refused."""
    from engine.executor import Executor
    from engine.host_executor import HostExecutor

    class Wrong(HostExecutor):
        def blend(self, ws, name, a, b):      # no mask
            return a
    with pytest.raises(AssertionError, match="blend"):
        assert_implements(Wrong, Executor)

