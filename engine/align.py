"""Registration of focus-stack frames (focus breathing, shifts, small rotations, exposure).

Each frame is registered to its *neighbour* (adjacent focus planes look alike, distant ones do
not) and the steps are chained outwards from a *reference* frame in both directions, whose
geometry the stack is resampled into (``REFERENCES``; ``align_stack``). The default is the middle
frame: focus breathing scales the frames steadily from one end of the stack to the other, so the
middle frame needs the least warping (each warp resamples and softens, and the uncovered border
grows with it); measured in benchmarks/STACKS.md. Tests and benchmarks register a whole stack in one call
with engine.testing.registration.
Estimation runs on downscaled gray thumbnails (longest side ``max_side``): OpenCV's ECC
(``cv2.findTransformECC``, enhanced correlation, invariant to gain and offset) on a three-level
pyramid, started from the previous step (breathing is steady) and, should that fail, from
identity and then from ORB features matched with RANSAC. Only the previous frame's thumbnails
are kept, so memory is constant in the number of frames; warping happens at full size with
``cv2.warpAffine`` / ``cv2.warpPerspective``.

Conventions: ``Transform.matrix`` maps a *reference* pixel (x, y, 1) to the position in *this*
frame where the same scene point is (pixel centres at integers), so ``warp`` samples the frame
there (``WARP_INVERSE_MAP``). ``Transform.gain`` is per channel: reference ~= gain * frame.

Uncovered pixels: a warped frame does not cover the reference's whole area (a zoomed-in frame
leaves a border). ``warp`` fills those pixels by edge replication *and* returns a validity mask;
``common_rect`` gives the rectangle every frame covers, so a caller can crop to it, or take the
border from frames that cover it (a fusion should prefer valid pixels).

Plausibility: a step or chained transform outside the limits below (scale, anisotropy/shear,
rotation, translation, perspective, gain) or an ECC correlation under ``MIN_SCORE`` is a failed
registration: ``AlignmentError`` naming the frame (``strict=True``), or a logged warning and a
``Transform`` with ``ok=False`` (``strict=False``; the caller decides, e.g. to fuse it unaligned).

``model='auto'`` estimates an affine transform and snaps each neighbour *step* to identity when
it moves no image corner by more than ``IDENTITY_STEP`` of the diagonal (and its gain to 1 within
``IDENTITY_GAIN_STEP``): a registered stack is then left exactly as it is (``warp`` returns the
frames themselves), while the apparent sub-pixel motion that differing defocus produces between
neighbours does not accumulate along the chain. Snapping steps rather than the chain means a
very slow breathing (under ~0.04 % of the diagonal per frame) is ignored; 3 % over 9 frames is
5x above it.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from engine import preprocess
from engine.errors import InputError

log = logging.getLogger(__name__)

MODELS = ("auto", "affine", "homography")
REFERENCES = ("first", "middle", "last")   # or a frame number
DEFAULT_REFERENCE = "middle"
MAX_SIDE = 512            # thumbnail size for estimation (ECC is sub-pixel: ~0.1 px at full size)
MIN_SCORE = 0.7           # ECC correlation with the neighbour on the thumbnail
MAX_STEP_LOG_SCALE = math.log(1.15)
MAX_TOTAL_LOG_SCALE = math.log(1.5)
MAX_ANISOTROPY = 0.05     # |s1 / s2 - 1| of the 2x2 part (shear or unequal axis scales)
MAX_ROTATION_DEG = 10.0   # per step and chained
MAX_STEP_SHIFT = 0.2      # fraction of the image diagonal, per step
MAX_TOTAL_SHIFT = 0.35
MAX_PERSPECTIVE = 0.1     # |h20| * W + |h21| * H
GAIN_RANGE = (0.5, 2.0)
IDENTITY_STEP = 4e-4      # auto: a neighbour step moving no corner by more than this fraction of
                          # the diagonal (0.32 px at 640x480, 0.8 px at 1600x1200) is "registered"
IDENTITY_GAIN_STEP = 0.0025  # auto: a neighbour step's |gain - 1| still "same exposure"


class AlignmentError(InputError):
    """A frame that cannot be registered (or whose registration is implausible)."""

    def __init__(self, message: str, frame: int):
        super().__init__(message)
        self.frame = frame


@dataclass
class Transform:
    """Where frame ``frame`` lies relative to the reference, and how to match its exposure."""
    matrix: np.ndarray = field(default_factory=lambda: np.eye(3))  # 3x3: reference px -> frame px
    gain: np.ndarray = field(default_factory=lambda: np.ones(1))   # per channel: ref ~= gain * frame
    score: float = 1.0        # ECC correlation with the neighbour (1 for the reference)
    frame: int = 0
    ok: bool = True
    message: str = ""

    @property
    def identity(self) -> bool:
        """Nothing to do: ``warp`` returns the frame itself."""
        return bool(np.array_equal(self.matrix, np.eye(3)) and np.all(self.gain == 1))

    @property
    def scale(self) -> float:
        """Magnification of the frame against the reference (sqrt of the 2x2 determinant)."""
        return float(math.sqrt(abs(np.linalg.det(self.matrix[:2, :2]))))

    @property
    def rotation_deg(self) -> float:
        a = self.matrix
        return float(math.degrees(math.atan2(a[1, 0] - a[0, 1], a[0, 0] + a[1, 1])))

    @property
    def shift(self) -> tuple[float, float]:
        return float(self.matrix[0, 2]), float(self.matrix[1, 2])

    def describe(self) -> str:
        dx, dy = self.shift
        gains = "/".join(f"{g:.3f}" for g in self.gain)
        return (f"frame {self.frame}: scale {self.scale:.4f}, rotation {self.rotation_deg:+.2f} deg, "
                f"shift ({dx:+.1f}, {dy:+.1f}) px, gain {gains}, ECC {self.score:.3f}"
                + ("" if self.ok else f" - NOT REGISTERED: {self.message}"))


def _resize_matrix(src_hw, dst_hw) -> np.ndarray:
    """3x3 from ``src`` pixel coordinates to ``dst`` ones for cv2.resize (pixel-centre aligned)."""
    sx, sy = dst_hw[1] / src_hw[1], dst_hw[0] / src_hw[0]
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])


def _gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


class _Thumb:
    """A frame reduced for estimation: float32 gray pyramid (fine to coarse) and colour means."""

    def __init__(self, frame: np.ndarray, max_side: int):
        h, w = frame.shape[:2]
        s = min(1.0, max_side / max(h, w))
        self.full_hw = (h, w)
        self.hw = (max(8, round(h * s)), max(8, round(w * s)))
        small = frame if self.hw == (h, w) else cv2.resize(frame, self.hw[::-1], interpolation=cv2.INTER_AREA)
        self.colour = small.astype(np.float32) * np.float32(1 / preprocess.max_value(frame.dtype))
        gray = small if small.ndim == 2 else _gray(small)
        self.levels = [gray.astype(np.float32) * np.float32(1 / preprocess.max_value(frame.dtype))]
        while len(self.levels) < 3 and min(self.levels[-1].shape) >= 64:
            g = self.levels[-1]
            self.levels.append(cv2.resize(g, (g.shape[1] // 2, g.shape[0] // 2), interpolation=cv2.INTER_AREA))
        self.to_thumb = _resize_matrix((h, w), self.hw)


def _ecc(template: np.ndarray, moving: np.ndarray, warp: np.ndarray, motion: int, iters: int, eps: float):
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, iters, eps)
    w = warp[:2].astype(np.float32) if motion != cv2.MOTION_HOMOGRAPHY else warp.astype(np.float32)
    rho, w = cv2.findTransformECC(template, moving, w, motion, criteria, None, 3)
    out = np.eye(3)
    out[: w.shape[0]] = w
    return float(rho), out


def _ecc_pyramid(prev: _Thumb, cur: _Thumb, guess: np.ndarray, motion: int) -> tuple[float, np.ndarray]:
    """ECC coarse to fine on the thumbnails; ``guess`` and the result are thumbnail matrices
    (previous thumbnail px -> current thumbnail px)."""
    levels = list(zip(prev.levels, cur.levels))[::-1]
    fine_hw = prev.levels[0].shape
    rho, warp = 0.0, guess
    for k, (t, m) in enumerate(levels):
        to_level = _resize_matrix(fine_hw, t.shape)
        w = to_level @ warp @ np.linalg.inv(to_level)
        last = k == len(levels) - 1
        rho, w = _ecc(t, m, w, motion, 40 if last else 60, 1e-5 if last else 1e-4)
        warp = np.linalg.inv(to_level) @ w @ to_level
    return rho, warp


def _features(prev: _Thumb, cur: _Thumb, homography: bool) -> np.ndarray | None:
    """ORB matches and RANSAC: a first estimate when ECC does not converge from the guesses."""
    to8 = lambda g: np.clip(g * 255, 0, 255).astype(np.uint8)
    orb = cv2.ORB_create(2000)
    k1, d1 = orb.detectAndCompute(to8(prev.levels[0]), None)
    k2, d2 = orb.detectAndCompute(to8(cur.levels[0]), None)
    if d1 is None or d2 is None or len(k1) < 8 or len(k2) < 8:
        return None
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(d1, d2)
    if len(matches) < 8:
        return None
    p1 = np.float32([k1[m.queryIdx].pt for m in matches])
    p2 = np.float32([k2[m.trainIdx].pt for m in matches])
    if homography:
        h, inliers = cv2.findHomography(p1, p2, cv2.RANSAC, 3.0)
    else:
        a, inliers = cv2.estimateAffinePartial2D(p1, p2, method=cv2.RANSAC, ransacReprojThreshold=3.0)
        h = None if a is None else np.vstack([a, [0, 0, 1]])
    if h is None or inliers is None or int(inliers.sum()) < max(12, len(matches) // 10):
        return None
    return h


def _gain_step(prev: _Thumb, cur: _Thumb, step: np.ndarray) -> np.ndarray:
    """Per-channel gain taking the current frame to the previous one (ratio of means over the
    overlap; defocus moves detail, not local means)."""
    h, w = prev.hw
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective(cur.colour, step, (w, h), flags=flags)
    valid = cv2.warpPerspective(np.ones((cur.hw[0], cur.hw[1]), np.float32), step, (w, h), flags=flags) > 0.999
    mask, channels = valid.astype(np.uint8), 1 if warped.ndim == 2 else warped.shape[2]
    num = np.array(cv2.mean(prev.colour, mask=mask)[:channels])    # float64 sums, no masked copies
    den = np.array(cv2.mean(warped, mask=mask)[:channels])
    return np.where(den > 1e-3, num / np.maximum(den, 1e-3), 1.0)


def _check(matrix: np.ndarray, size_hw, step: bool) -> str:
    """'' if plausible, else what is wrong."""
    h, w = size_hw
    a = matrix[:2, :2]
    s = np.linalg.svd(a, compute_uv=False)
    if s[1] <= 0 or np.linalg.det(a) <= 0:
        return "the transform mirrors or collapses the image"
    log_scale = 0.5 * math.log(s[0] * s[1])
    limit = MAX_STEP_LOG_SCALE if step else MAX_TOTAL_LOG_SCALE
    if abs(log_scale) > limit:
        return f"scale {math.exp(log_scale):.3f} is outside {math.exp(-limit):.3f}..{math.exp(limit):.3f}"
    if s[0] / s[1] - 1 > MAX_ANISOTROPY:
        return f"shear/anisotropy {s[0] / s[1] - 1:.3f} exceeds {MAX_ANISOTROPY}"
    rot = math.degrees(math.atan2(a[1, 0] - a[0, 1], a[0, 0] + a[1, 1]))
    if abs(rot) > MAX_ROTATION_DEG:
        return f"rotation {rot:+.1f} deg exceeds {MAX_ROTATION_DEG} deg"
    centre = np.array([(w - 1) / 2, (h - 1) / 2, 1.0])
    moved = matrix @ centre
    moved = moved[:2] / moved[2]
    shift = float(np.hypot(*(moved - centre[:2]))) / math.hypot(w, h)
    if shift > (MAX_STEP_SHIFT if step else MAX_TOTAL_SHIFT):
        return f"the centre moves by {shift:.0%} of the image diagonal"
    persp = abs(matrix[2, 0]) * w + abs(matrix[2, 1]) * h
    if persp > MAX_PERSPECTIVE:
        return f"perspective {persp:.3f} exceeds {MAX_PERSPECTIVE}"
    return ""


def _check_chain(matrix: np.ndarray, gain: np.ndarray, size_hw) -> str:
    """'' if a transform to the reference is plausible (geometry and exposure), else what is wrong."""
    why = _check(matrix, size_hw, step=False)
    if not why and not (GAIN_RANGE[0] <= gain.min() and gain.max() <= GAIN_RANGE[1]):
        why = f"exposure gain {gain.min():.2f}..{gain.max():.2f} is outside {GAIN_RANGE[0]}..{GAIN_RANGE[1]}"
    return why


def corner_displacement(matrix: np.ndarray, size_hw) -> float:
    """Largest distance (px) any image corner moves under ``matrix``."""
    h, w = size_hw
    c = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], float).T
    m = matrix @ c
    return float(np.max(np.hypot(*(m[:2] / m[2] - c[:2]))))


class StackAligner:
    """Registers frames one at a time to the previous good frame, chained to frame 0.

    Holds only the last good frame's thumbnails (constant memory). ``add`` returns the frame's
    ``Transform`` to frame 0 (frame 0 itself gets identity). ``chain_check=False`` checks each
    neighbour step only, for a chain that ``to_reference`` re-expresses and checks against
    another reference."""

    def __init__(self, model: str = "auto", *, max_side: int = MAX_SIDE, strict: bool = True,
                 names: Sequence[str] | None = None, chain_check: bool = True):
        if model not in MODELS:
            raise InputError(f"unknown alignment model '{model}'; choose one of {', '.join(MODELS)}")
        self.model, self.max_side, self.strict, self.names = model, max_side, strict, names
        self.chain_check = chain_check
        self.motion = cv2.MOTION_HOMOGRAPHY if model == "homography" else cv2.MOTION_AFFINE
        self.index = 0
        self._ref_meta = None
        self._prev: _Thumb | None = None
        self._prev_chain = np.eye(3)          # previous good frame: reference px -> its px
        self._prev_gain = None
        self._last_step = np.eye(3)           # thumbnail step, the next frame's first guess
        self._good_index = 0                  # the frame the next one is registered to

    def _name(self, i: int) -> str:
        return self.names[i] if self.names and i < len(self.names) else f"frame {i}"

    def add(self, frame: np.ndarray) -> Transform:
        i = self.index
        frame = preprocess.check_image(frame, self._name(i))
        if self._ref_meta is None:
            self._ref_meta = (frame.shape, frame.dtype)
        else:
            preprocess.check_same([self._ref_meta, (frame.shape, frame.dtype)], [self._name(0), self._name(i)])
        self.index += 1
        thumb = _Thumb(frame, self.max_side)
        channels = 1 if frame.ndim == 2 else 3
        if self._prev is None:
            self._prev, self._prev_gain = thumb, np.ones(channels)
            return Transform(np.eye(3), np.ones(channels), 1.0, i)
        try:
            t = self._register(thumb, i, channels)
        except AlignmentError as e:
            if self.strict:
                raise
            log.warning("%s", e)
            # Best guess for an unregistrable frame: where its predecessor was; the chain goes on
            # from the last good frame.
            return Transform(self._prev_chain.copy(), self._prev_gain.copy(), 0.0, i, ok=False, message=str(e))
        if self.chain_check:
            log.info("aligned %s", t.describe())
        return t

    def _fail(self, i: int, why: str) -> AlignmentError:
        return AlignmentError(f"{self._name(i)} cannot be registered to {self._name(self._good_index)}: {why}", i)

    def _register(self, thumb: _Thumb, i: int, channels: int) -> Transform:
        prev = self._prev
        homography = self.motion == cv2.MOTION_HOMOGRAPHY
        best = None
        for guess in (self._last_step, np.eye(3), "features"):
            if isinstance(guess, str):
                guess = _features(prev, thumb, homography)
                if guess is None:
                    break
            try:
                rho, step = _ecc_pyramid(prev, thumb, guess, self.motion)
            except cv2.error:
                continue
            if best is None or rho > best[0]:
                best = (rho, step)
            if rho >= MIN_SCORE and not _check(step, prev.hw, step=True):
                break
        if best is None:
            raise self._fail(i, "the correlation (ECC) does not converge and no feature match was found; "
                             "unrelated images?")
        rho, step = best
        if rho < MIN_SCORE:
            raise self._fail(i, f"correlation {rho:.2f} is under {MIN_SCORE}; unrelated images?")
        why = _check(step, prev.hw, step=True)
        if why:
            raise self._fail(i, why)
        gain_step = _gain_step(prev, thumb, step)
        to_t = thumb.to_thumb                   # same for both thumbnails (same full size)
        step_full = np.linalg.inv(to_t) @ step @ to_t
        if self.model == "auto":
            # Registered input: snap each *step* (not the chain), so that the small apparent
            # motion defocus differences produce does not accumulate along the stack.
            if corner_displacement(step_full, thumb.full_hw) <= IDENTITY_STEP * math.hypot(*thumb.full_hw):
                step_full = np.eye(3)
            if np.max(np.abs(gain_step - 1)) <= IDENTITY_GAIN_STEP:
                gain_step = np.ones_like(gain_step)
        chain = step_full @ self._prev_chain
        chain /= chain[2, 2]
        if not homography:
            chain[2] = (0, 0, 1)
        gain = self._prev_gain * gain_step
        why = _check_chain(chain, gain, thumb.full_hw) if self.chain_check else ""
        if why:
            raise self._fail(i, why + " (chained to the reference)")
        self._prev, self._prev_chain, self._prev_gain, self._last_step = thumb, chain, gain, step
        self._good_index = i
        return Transform(chain.copy(), gain.copy(), rho, i)


def parse_reference(value) -> str | int:
    """A reference as given ("first", "middle", "last", a frame number >= 0, or its text) -> the
    name or the int; anything else is an InputError."""
    if isinstance(value, str) and value in REFERENCES:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0:
        return int(value)
    raise InputError(f"unknown reference frame {value!r}; give {', '.join(REFERENCES)} or a frame number (0 = first)")


def reference_index(reference, n: int) -> int:
    """The frame number ``reference`` names in an ``n``-frame stack (middle: n // 2, as focus-stack)."""
    reference = parse_reference(reference)
    i = {"first": 0, "middle": n // 2, "last": n - 1}.get(reference, reference)
    if not 0 <= i < n:
        raise InputError(f"reference frame {i} is outside the stack's {n} frames (0..{n - 1})")
    return i


def rebase(transforms: Sequence[Transform], reference: int) -> list[Transform]:
    """The same registration with frame ``reference`` as the reference (its transform becomes
    identity; geometry and gains are re-expressed relative to it). Frame i's new matrix is the
    product of the neighbour steps between the reference and i only (chained outwards)."""
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


def to_reference(transforms: Sequence[Transform], reference: int, size_hw, *, strict: bool = True,
                 names: Sequence[str] | None = None) -> list[Transform]:
    """``transforms`` (chained to frame 0 without chain checks: ``StackAligner(chain_check=False)``)
    re-expressed relative to frame ``reference`` and checked for plausibility against it, walking
    outwards in both directions. A chain that fails is an AlignmentError (``strict``), else a
    warning and ``ok=False`` with its inner neighbour's transform (the frame is used as it is)."""
    name = lambda i: names[i] if names and i < len(names) else f"frame {i}"
    if not transforms[reference].ok:
        raise AlignmentError(f"the reference frame {reference} ({name(reference)}) cannot be registered to its "
                             "neighbours; choose another reference", reference)
    out = rebase(transforms, reference)
    for step in (-1, 1):
        inner = out[reference]
        for i in range(reference + step, -1 if step < 0 else len(out), step):
            t = out[i]
            why = _check_chain(t.matrix, t.gain, size_hw) if t.ok else ""
            if why:
                e = AlignmentError(f"{name(i)} cannot be registered to {name(reference)}: {why} "
                                   "(chained to the reference)", i)
                if strict:
                    raise e
                log.warning("%s", e)
                out[i] = t = Transform(inner.matrix.copy(), inner.gain.copy(), 0.0, i, ok=False, message=str(e))
            if t.ok:
                inner = t
    return out


def align_stack(frames: Iterable[np.ndarray], model: str, reference=DEFAULT_REFERENCE, *,
                names: Sequence[str] | None = None, strict: bool = True,
                transforms: list | None = None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """``(frame, valid)`` in the reference frame's geometry and exposure, in input order; ``valid``
    None where the frame is used as it is (identity, or not registered with ``strict=False``).
    Each frame's Transform to the reference is appended to ``transforms`` before it is yielded.

    The first frame as reference: one pass, each frame registered and warped as it arrives.
    Another reference (its number is known only once every frame is read): two passes, the first
    registering neighbours on thumbnails (``max_side`` px, a few hundred kB a frame), the second
    warping. ``frames`` is then iterated twice, unless it is an iterator (``iter(x) is x``: a
    generator), whose frames are held between the passes: n full frames of memory. Give a
    re-iterable (a list, or a Sequence that reads files, ``engine.imageio.ImageFiles``) to keep
    memory at one frame in flight."""
    transforms = [] if transforms is None else transforms
    if parse_reference(reference) in ("first", 0):
        aligner = StackAligner(model, strict=strict, names=names)
        for frame in frames:
            t = aligner.add(frame)
            transforms.append(t)
            yield (frame, None) if not t.ok or t.identity else warp(frame, t)
        return
    held = deque() if isinstance(frames, Iterator) else None
    aligner = StackAligner(model, strict=strict, names=names, chain_check=False)
    chained, size = [], None
    for frame in frames:                       # pass 1: neighbour steps on thumbnails
        chained.append(aligner.add(frame))
        size = size or frame.shape[:2]
        if held is not None:
            held.append(frame)
    if len(chained) < 2:                       # the caller refuses a one-frame stack
        yield from ((f, None) for f in (frames if held is None else held))
        return
    ref = reference_index(reference, len(chained))
    transforms.extend(to_reference(chained, ref, size, strict=strict, names=names))
    log.info("reference: frame %d of %d (%s)", ref, len(chained), reference)
    for t in transforms:
        log.info("aligned %s", t.describe())
    again = iter(frames) if held is None else (held.popleft() for _ in range(len(held)))   # held: released as used
    for t in transforms:                       # pass 2: warp
        frame = next(again, None)
        if frame is None:
            raise InputError(f"the stack gave {len(transforms)} frames, then {t.frame} when read again")
        yield (frame, None) if not t.ok or t.identity else warp(frame, t)
    if next(again, None) is not None:
        raise InputError(f"the stack gave {len(transforms)} frames, then more when read again")


def warp(frame: np.ndarray, transform: Transform, size: tuple[int, int] | None = None,
         interpolation: int = cv2.INTER_CUBIC) -> tuple[np.ndarray, np.ndarray]:
    """``frame`` resampled into the reference's geometry and exposure, and its validity mask.

    ``size``: (H, W) of the reference (default the frame's). Pixels the frame does not cover are
    filled by edge replication and are False in the mask (bool H x W). An identity transform
    returns the frame itself (no resampling)."""
    h, w = size or frame.shape[:2]
    if transform.identity and (h, w) == frame.shape[:2]:
        return frame, np.ones((h, w), bool)
    out = frame
    if not np.array_equal(transform.matrix, np.eye(3)) or (h, w) != frame.shape[:2]:
        flags = interpolation | cv2.WARP_INVERSE_MAP
        if np.allclose(transform.matrix[2], (0, 0, 1)):
            out = cv2.warpAffine(frame, transform.matrix[:2], (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        else:
            out = cv2.warpPerspective(frame, transform.matrix, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    valid = coverage(transform, frame.shape[:2], (h, w))
    if not np.all(transform.gain == 1):
        out = apply_gain(out, transform.gain)
    return out, valid


def apply_gain(img: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """``img * gain`` per channel, rounded and clipped (a lookup table for 8-bit images)."""
    if img.dtype == np.uint8:
        lut = np.clip(np.rint(np.arange(256)[:, None] * np.asarray(gain, np.float64)[None, :]), 0, 255).astype(np.uint8)
        if img.ndim == 2:
            return cv2.LUT(img, lut[:, 0])
        return cv2.LUT(img, lut[:, None, :] if lut.shape[1] == 3 else np.repeat(lut, 3, 1)[:, None, :])
    peak = preprocess.max_value(img.dtype)
    g = np.asarray(gain, np.float32)
    f = img.astype(np.float32) * (g[0] if img.ndim == 2 else g)
    return np.clip(np.rint(f), 0, peak).astype(img.dtype)


def coverage(transform: Transform, frame_hw, size_hw) -> np.ndarray:
    """bool (H, W) in reference geometry: where the frame has pixels (a 1 px margin is dropped
    where the interpolation kernel would reach past the frame's edge)."""
    h, w = size_hw
    ones = np.ones(frame_hw, np.uint8)
    m = cv2.warpPerspective(ones, transform.matrix, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if not np.array_equal(transform.matrix, np.eye(3)):
        m = cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return m.astype(bool)


def common_rect(transforms: Iterable[Transform], frame_hw, size_hw=None) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), exclusive ends: the largest axis-aligned rectangle of reference pixels
    that every frame covers (for near-axis-aligned transforms), with a 1 px interpolation margin.
    Crop a fused result with ``out[y0:y1, x0:x1]``."""
    fh, fw = frame_hw
    h, w = size_hw or frame_hw
    x0, y0, x1, y1 = 0.0, 0.0, w - 1.0, h - 1.0
    corners = np.array([[0, 0, 1], [fw - 1, 0, 1], [0, fh - 1, 1], [fw - 1, fh - 1, 1]], float).T
    for t in transforms:
        if np.array_equal(t.matrix, np.eye(3)):
            continue
        q = np.linalg.inv(t.matrix) @ corners
        (tlx, trx, blx, brx), (tly, try_, bly, bry) = q[:2] / q[2]
        x0, x1 = max(x0, tlx + 1, blx + 1), min(x1, trx - 1, brx - 1)
        y0, y1 = max(y0, tly + 1, try_ + 1), min(y1, bly - 1, bry - 1)
    x0, y0 = math.ceil(x0), math.ceil(y0)
    x1, y1 = math.floor(x1) + 1, math.floor(y1) + 1
    if x1 <= x0 or y1 <= y0:
        raise InputError("the frames have no common area after alignment")
    return x0, y0, x1, y1
