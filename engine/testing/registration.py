"""A whole stack registered in one call, for tests and benchmarks (the runtime registers frame by
frame with engine.align.StackAligner as they are read); ``rebase`` moves the chain to another
reference."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from engine.align import MAX_SIDE, StackAligner, Transform
from engine.errors import InputError


def rebase(transforms: Sequence[Transform], reference: int) -> list[Transform]:
    """The same registration with frame ``reference`` as the reference (its transform becomes
    identity; geometry and gains are re-expressed relative to it)."""
    ref = transforms[reference]
    inv = np.linalg.inv(ref.matrix)
    out = []
    for t in transforms:
        m = t.matrix @ inv
        m /= m[2, 2]
        if np.allclose(m, np.eye(3), atol=1e-12):
            m = np.eye(3)
        out.append(Transform(m, t.gain / ref.gain, t.score, t.frame, t.ok, t.message))
    return out


def register_stack(frames: Iterable[np.ndarray], model: str = "auto", reference: int = 0, *,
                   names: Sequence[str] | None = None, strict: bool = True,
                   max_side: int = MAX_SIDE) -> list[Transform]:
    """Transforms of every frame to frame ``reference`` (see the module docstring).

    ``frames`` may be a generator: each frame is read once and only thumbnails are kept."""
    aligner = StackAligner(model, max_side=max_side, strict=strict, names=names)
    transforms = [aligner.add(f) for f in frames]
    if not 0 <= reference < len(transforms):
        raise InputError(f"reference frame {reference} is outside the stack's {len(transforms)} frames")
    return transforms if reference == 0 else rebase(transforms, reference)
