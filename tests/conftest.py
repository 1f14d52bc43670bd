"""Shared fixtures: the test data in ../shared/gacn (or $GACN_TEST_DATA) and loaded models."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

# tests/serve runs in its own venv with the [serve] extra (numpy < 2): .ci/serve-tests sets GACN_SERVE_TESTS=1
collect_ignore = [] if os.environ.get("GACN_SERVE_TESTS") else ["serve"]

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("GACN_TEST_DATA", REPO.parent / "shared" / "gacn")).resolve()


def golden_names() -> list[str]:
    return sorted(p.name[: -len("_maps.npz")] for p in (DATA / "golden").glob("*_maps.npz"))


@pytest.fixture(scope="session", autouse=True)
def model_cache_dir(tmp_path_factory) -> Path:
    """Compiled models go to a per-session directory, never the user's ~/.cache."""
    path = tmp_path_factory.mktemp("model_cache")
    old = os.environ.get("GACN_MODEL_CACHE")
    os.environ["GACN_MODEL_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("GACN_MODEL_CACHE", None)
    else:
        os.environ["GACN_MODEL_CACHE"] = old


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "GACN.pkl").is_file():
        pytest.fail(f"test data not found at {DATA}; set GACN_TEST_DATA to the folder holding GACN.pkl")
    return DATA


@pytest.fixture(scope="session")
def weights(data_dir) -> Path:
    return data_dir / "GACN.pkl"


@pytest.fixture(scope="session")
def params(weights):
    from engine.checkpoint import load_gacn
    return load_gacn(weights)


@pytest.fixture(scope="session")
def ort_fuser(weights):
    from engine import Fuser
    with Fuser("onnxruntime", weights=weights) as f:
        yield f


@pytest.fixture(scope="session")
def ov_fuser(weights):
    pytest.importorskip("openvino", reason="openvino is not installed (a dependency of gacn-engine: pip install openvino): "
                        "the OpenVINO backend cannot be checked")
    from engine import Fuser
    with Fuser("openvino", weights=weights) as f:
        yield f


@pytest.fixture(scope="session")
def ov_bf16_fuser(weights):
    """OpenVINO with its bfloat16 decision path; skipped where the CPU has no BF16."""
    ov = pytest.importorskip("openvino", reason="openvino is not installed (pip install '.[openvino]')")
    from engine.backends.openvino_bf16 import cpu_has_bf16
    if not cpu_has_bf16(ov.Core()):
        pytest.skip("this CPU has no bfloat16 instructions (AVX512_BF16/AMX): --precision bf16 is refused here")
    from engine import Fuser
    with Fuser("openvino", weights=weights, precision="bf16") as f:
        yield f


@pytest.fixture(scope="session")
def torch_model(weights):
    torch = pytest.importorskip("torch")
    from engine.export.model import GACN
    torch.set_num_threads(os.cpu_count() or 1)
    return GACN.from_checkpoint(weights)


@pytest.fixture(scope="session")
def golden(data_dir):
    """name -> (A, B, golden fused, golden D, golden M), loaded lazily."""
    from engine.imageio import read_image
    cache = {}

    def get(name):
        if name not in cache:
            maps = np.load(data_dir / "golden" / f"{name}_maps.npz")
            cache[name] = (read_image(data_dir / "pairs" / f"{name}_1.png"), read_image(data_dir / "pairs" / f"{name}_2.png"),
                           read_image(data_dir / "golden" / f"{name}_fused.png"), maps["decision"], maps["mask"])
        return cache[name]
    return get


@pytest.fixture(scope="session")
def cpu():
    """The CPU twin of the kernel library, built with CMake on first use (as CI does)."""
    from engine import kernels as K
    from engine.testing import kernels as TK
    from engine.errors import BackendError
    try:
        lib = K.KernelLibrary.load("cpu")
    except BackendError:
        compilers = (os.environ.get("CXX", ""), "c++", "g++", "clang++")
        if shutil.which("cmake") is None or not any(shutil.which(c) for c in compilers if c):
            pytest.skip("no cmake or C++ compiler: cannot build the kernel libraries")
        TK.build()
        lib = K.KernelLibrary.load("cpu")
    assert lib.backend == "cpu" and lib.abi_version == K.ABI_VERSION
    return lib
