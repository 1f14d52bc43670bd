"""Where engine.kernels looks for its libraries: $GACN_KERNELS_DIR, then the package's own
engine/_libs (what the wheel build put there), then <repo>/build/lib in a source checkout only."""
import pytest

from engine import kernels as K
from engine.testing import kernels as TK
from engine.errors import BackendError

NAME = "libgacn_kernels_cpu.so"


@pytest.fixture()
def layout(tmp_path, monkeypatch):
    """A fake checkout and package, each with the CPU library in its place."""
    repo, env = tmp_path / "repo", tmp_path / "env"
    (repo / "kernels").mkdir(parents=True)
    (repo / "CMakeLists.txt").write_text("")
    for d in (repo / "build" / "lib", repo / "engine" / "_libs", env):
        d.mkdir(parents=True, exist_ok=True)
        (d / NAME).write_bytes(b"")
    monkeypatch.setattr(K, "REPO_ROOT", repo)
    monkeypatch.setattr(K, "PACKAGE_LIB_DIR", repo / "engine" / "_libs", raising=False)
    monkeypatch.delenv("GACN_KERNELS_DIR", raising=False)
    return repo, env


def test_the_package_s_own_library_comes_before_the_build_tree(layout):
    repo, _ = layout
    assert K.find_library("cpu") == repo / "engine" / "_libs" / NAME


def test_gacn_kernels_dir_wins_and_falls_through_when_it_lacks_the_library(layout, monkeypatch, tmp_path):
    repo, env = layout
    monkeypatch.setenv("GACN_KERNELS_DIR", str(env))
    assert K.find_library("cpu") == env / NAME
    monkeypatch.setenv("GACN_KERNELS_DIR", str(tmp_path / "empty"))
    assert K.find_library("cpu") == repo / "engine" / "_libs" / NAME


def test_build_tree_is_used_in_a_checkout_without_packaged_libraries(layout):
    repo, _ = layout
    (repo / "engine" / "_libs" / NAME).unlink()
    assert K.find_library("cpu") == repo / "build" / "lib" / NAME


def test_an_installed_package_never_looks_beside_site_packages(layout, monkeypatch):
    repo, _ = layout
    (repo / "CMakeLists.txt").unlink()  # site-packages: no CMakeLists.txt, no kernels/
    (repo / "engine" / "_libs" / NAME).unlink()
    assert K.library_dirs() == [repo / "engine" / "_libs"]
    with pytest.raises(BackendError, match="not found in .*engine/_libs; reinstall gacn-engine"):
        K.find_library("cpu")
    with pytest.raises(BackendError, match="installed package, not a source checkout"):
        TK.build()
