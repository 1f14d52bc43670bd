"""A whole stack registered in one call, for tests and benchmarks (the runtime registers frame by
frame as they are read: engine.align.align_stack)."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from engine.align import MAX_SIDE, StackAligner, Transform, parse_reference, reference_index, to_reference


def register_stack(frames: Iterable[np.ndarray], model: str = "auto", reference=0, *,
                   names: Sequence[str] | None = None, strict: bool = True,
                   max_side: int = MAX_SIDE) -> list[Transform]:
    """Transforms of every frame to frame ``reference`` (a frame number or one of
    engine.align.REFERENCES), chained outwards from it.

    ``frames`` may be a generator: each frame is read once and only thumbnails are kept."""
    first = parse_reference(reference) in ("first", 0)
    aligner = StackAligner(model, max_side=max_side, strict=strict, names=names, chain_check=first)
    transforms, size = [], None
    for f in frames:
        transforms.append(aligner.add(f))
        size = size or f.shape[:2]
    if first:
        return transforms
    return to_reference(transforms, reference_index(reference, len(transforms)), size, strict=strict, names=names)
