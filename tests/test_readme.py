"""README's install text stays true to pyproject.toml: every extra is described, the CPU-only
PyTorch route is given, and the commands it shows exist."""
import re
import tomllib

from conftest import REPO

README = (REPO / "README.md").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
INSTALL = README.split("## Install", 1)[-1].split("\n## ", 1)[0]


def test_every_extra_is_described_with_what_it_adds():
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `\[(\w+)\]` \| ([^|]+) \|", INSTALL, re.M)}
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(rows) == set(extras), (sorted(rows), sorted(extras))
    for extra, deps in extras.items():
        names = {re.split(r"[<>=\[ ]", d)[0] for d in deps}
        assert all(n in rows[extra] for n in names), (extra, names, rows[extra])


def test_the_base_install_row_names_every_dependency():
    row = re.search(r"^\| \(none\) \| ([^|]+) \|", INSTALL, re.M)
    assert row, "no '(none)' row in the extras table"
    names = {re.split(r"[<>=\[ ]", d)[0] for d in PYPROJECT["project"]["dependencies"]}
    assert all(n in row.group(1) for n in names), (names, row.group(1))


def test_the_cpu_only_torch_route_is_given():
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in INSTALL
    assert "multi-GB" in INSTALL and "CUDA build" in INSTALL


def test_console_scripts_shown_are_the_installed_ones():
    scripts = set(PYPROJECT["project"]["scripts"])
    assert scripts == {"gacn-fuse", "gacn-export", "gacn-build-engine", "gacn-quality", "gacn-serve"}
    shown = set(re.findall(r"^(gacn-[a-z-]+) ", README, re.M))
    assert shown and shown <= scripts, shown
