"""PEP 517 build backend: setuptools (setup.py compiles the kernels with CMake), asking pip for
CMake from PyPI only when no CMake >= 3.24 is on PATH, so that a machine with a C++ compiler
but no CMake still installs with one command, and one with CMake downloads nothing more."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403 - build_wheel, build_editable, build_sdist, ...

CMAKE_MIN = (3, 24)


def _system_cmake_ok() -> bool:
    exe = shutil.which("cmake")
    if exe is None:
        return False
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    m = re.search(r"version (\d+)\.(\d+)", out)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= CMAKE_MIN


def _cmake_requirement() -> list[str]:
    if os.environ.get("GACN_BUILD_KERNELS", "1").strip().lower() in ("0", "no", "off", "false"):
        return []
    return [] if _system_cmake_ok() else [f"cmake>={CMAKE_MIN[0]}.{CMAKE_MIN[1]}"]


def get_requires_for_build_wheel(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings) + _cmake_requirement()


def get_requires_for_build_editable(config_settings=None):
    return _setuptools.get_requires_for_build_editable(config_settings) + _cmake_requirement()
