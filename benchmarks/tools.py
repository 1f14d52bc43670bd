"""The comparison tools a user would pick instead: focus-stack and enfuse, where installed.

Neither is part of the project. focus-stack (github.com/PetteriAimonen/focus-stack) builds from
its public source against Debian's OpenCV (``apt-get install libopencv-dev``; ``make``); enfuse is
the Debian package ``enfuse`` (bookworm; ``enblend-enfuse`` elsewhere). Found on $PATH, in
$FOCUS_STACK / $ENFUSE, or (focus-stack) in /work/tools/focus-stack/build.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.imageio import read_image, write_image

_FOCUS_STACK_GUESSES = ("/work/tools/focus-stack/build/focus-stack",)


def focus_stack_path() -> str | None:
    env = os.environ.get("FOCUS_STACK")
    if env and Path(env).is_file():
        return env
    found = shutil.which("focus-stack")
    return found or next((p for p in _FOCUS_STACK_GUESSES if Path(p).is_file()), None)


def enfuse_path() -> str | None:
    env = os.environ.get("ENFUSE")
    return env if env and Path(env).is_file() else shutil.which("enfuse")


def _write_frames(frames: Sequence[np.ndarray], folder: Path) -> list[str]:
    paths = []
    for i, f in enumerate(frames):
        p = folder / f"frame_{i:03d}.png"
        write_image(p, f)
        paths.append(str(p))
    return paths


def _run_tool(exe: str, frames: Sequence[np.ndarray], prefix: str, options: Sequence[str]) -> tuple[np.ndarray, float]:
    """Write the frames, run ``exe options --output=OUT frames`` and return (OUT read back, seconds)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        paths = _write_frames(frames, Path(d))
        out = Path(d) / "out.png"
        t = time.perf_counter()
        subprocess.run([exe, *options, f"--output={out}", *paths], check=True, capture_output=True)
        return read_image(out), time.perf_counter() - t


def run_focus_stack(frames: Sequence[np.ndarray], *, threads: int = 2, extra: Sequence[str] = ()) -> tuple[np.ndarray, float]:
    """focus-stack with its defaults (it aligns, reference = middle frame) and
    ``--align-keep-size`` (no crop: the output has the input's size, borders extrapolated).
    Returns (fused, seconds)."""
    exe = focus_stack_path()
    if exe is None:
        raise FileNotFoundError("focus-stack not found")
    return _run_tool(exe, frames, "fs_", ["--no-opencl", f"--threads={threads}", "--align-keep-size", *extra])


def run_enfuse(frames: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
    """enfuse's focus-stacking recipe (contrast weight only, hard masks). enfuse does not align:
    give it registered frames."""
    exe = enfuse_path()
    if exe is None:
        raise FileNotFoundError("enfuse not found")
    return _run_tool(exe, frames, "enfuse_", ["--exposure-weight=0", "--saturation-weight=0", "--contrast-weight=1",
                                               "--hard-mask", "--contrast-window-size=5", "--depth=8"])
