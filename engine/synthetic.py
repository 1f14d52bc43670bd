"""Focus stacks with a known answer, rendered from a sharp image and a depth map.

Used by the tests and by ``benchmarks/stack_quality.py``: the sharp image is the ground truth
every fusion result is scored against. No torch; numpy and OpenCV only.

The model is a layered thin lens. ``depth`` is *nearness* scaled to [0, 1] (0 = farthest,
1 = nearest), e.g. a stereo disparity: the blur-circle diameter of a thin lens is proportional
to the difference of inverse distances, i.e. linear in disparity, so a pixel at depth ``d``
seen with focus at ``f`` is blurred by a point-spread function of radius
``max_blur * |d - f|`` pixels. The depth range is cut into ``layers`` slabs composited back to
front with premultiplied alpha ("over"): a near out-of-focus edge spreads over what is behind it,
a near in-focus edge stays sharp over a blurred background. Behind an occluder, the hidden
surface continues the nearest visible one (its depth slab and colour), so a blurred occluder
reveals a plausible background instead of a dark seam.

Then, per frame: focus breathing (magnification ``(1 + breathing) ** (i / (n - 1))`` about the
image centre, frame 0 at 1, so frame 0 has the truth's geometry), optional random shifts,
exposure drift (a gain ramp from 1 at frame 0 to ``1 + exposure_drift`` at the last frame, times
a seeded per-channel colour jitter), Gaussian noise, rounding to uint8. Everything random comes
from one ``numpy.random.Generator`` seeded by ``seed``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

SCENES = ("motorcycle", "coffee", "chelsea", "cutout")


@dataclass
class Scene:
    name: str
    image: np.ndarray          # uint8 (H, W, 3) or (H, W): the all-in-focus truth
    depth: np.ndarray          # float32 (H, W) nearness in [0, 1]


@dataclass
class SyntheticStack:
    frames: list[np.ndarray]   # uint8, like ``truth``
    truth: np.ndarray          # the sharp image, in frame 0's geometry
    depth: np.ndarray          # float32 nearness in [0, 1], truth geometry
    focus: np.ndarray          # (n,) focus nearness of each frame
    matrices: list[np.ndarray] = field(default_factory=list)  # 3x3: truth pixel -> frame pixel
    gains: np.ndarray | None = None  # (n, channels): frame = gain * truth (before noise)

    def best_frame(self) -> np.ndarray:
        """int32 (H, W): the frame whose focus is nearest each pixel's depth (truth geometry)."""
        return np.abs(self.depth[..., None] - self.focus[None, None, :]).argmin(-1).astype(np.int32)

    def covered(self, margin: int = 2) -> np.ndarray:
        """bool (H, W) in truth geometry: pixels every frame sees, eroded by ``margin`` px.

        Breathing frames are zoomed in, so the truth's border is seen by few frames; scores are
        taken over this region (what every frame can contribute to)."""
        h, w = self.truth.shape[:2]
        ok = np.ones((h, w), np.uint8)
        for m in self.matrices:
            inv = np.linalg.inv(m)
            ok &= cv2.warpPerspective(np.ones((h, w), np.uint8), inv, (w, h), flags=cv2.INTER_NEAREST,
                                      borderValue=0)
        if margin:
            ok = cv2.erode(ok, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8), borderValue=0)
        return ok.astype(bool)


def _fill(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Push-pull fill: ``values`` (H, W) or (H, W, C) where ``weight`` (0..1) is 1, smoothly
    extended from the nearest known values where it is 0."""
    v = values[..., None] if values.ndim == 2 else values
    out = _push_pull(v.astype(np.float32) * weight[..., None], weight.astype(np.float32))
    return out[..., 0] if values.ndim == 2 else out


def _push_pull(pre: np.ndarray, weight: np.ndarray) -> np.ndarray:
    h, w = weight.shape
    c = pre.shape[2]
    if min(h, w) <= 4 or weight.min() >= 1:
        total = float(weight.sum())
        mean = pre.reshape(-1, c).sum(0) / total if total > 0 else np.zeros(c, np.float32)
        return np.where(weight[..., None] > 0, pre / np.maximum(weight, 1e-6)[..., None], mean).astype(np.float32)
    size = ((w + 1) // 2, (h + 1) // 2)
    w2 = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
    p2 = cv2.resize(pre, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], c)
    coarse = cv2.resize(_push_pull(p2, w2), (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, c)
    return (pre + (1 - weight[..., None]) * coarse).astype(np.float32)


def psf(radius: float, kind: str = "disc") -> np.ndarray:
    """Normalised point-spread function: an anti-aliased disc of ``radius`` px, or a Gaussian
    with the same second moment (sigma = radius / 2)."""
    if radius < 0.5:
        return np.ones((1, 1), np.float32)
    if kind == "gaussian":
        sigma = radius / 2
        half = int(np.ceil(3 * sigma))
        g = cv2.getGaussianKernel(2 * half + 1, sigma).astype(np.float32)
        return g @ g.T
    if kind != "disc":
        raise ValueError(f"unknown psf '{kind}'; choose disc or gaussian")
    half = int(np.ceil(radius))
    y, x = np.mgrid[-half:half + 1, -half:half + 1]
    k = np.clip(radius + 0.5 - np.hypot(x, y), 0, 1).astype(np.float32)
    return k / k.sum()


def _nearest(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) of the nearest pixel of ``mask`` for every pixel (itself where ``mask``)."""
    _, labels = cv2.distanceTransformWithLabels((~mask).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(mask)             # raster order = the order OpenCV numbers them in
    return ys[labels - 1], xs[labels - 1]


class _Layers:
    """The depth slabs of one scene, prepared once and re-blurred for every focus setting.

    Slab k holds its own pixels and, behind nearer ones, the hidden surface that continues it:
    a hidden pixel belongs to slab k when the nearest pixel at slab k or farther lies in slab k
    (so a continuous surface continues as itself behind an occluder, at one depth, and colours
    are the nearest visible pixel's)."""

    def __init__(self, image: np.ndarray, depth: np.ndarray, layers: int):
        img = image.astype(np.float32)
        self.gray = img.ndim == 2
        if self.gray:
            img = img[..., None]
        self.shape = img.shape
        edges = np.linspace(0, 1, layers + 1)
        index = np.clip(np.digitize(depth, edges[1:-1]), 0, layers - 1)
        self.slabs = []  # (centre nearness, premultiplied colour+alpha (H, W, C+1)), far to near
        for k in range(layers):
            own = index == k
            if not own.any():
                continue
            behind = index <= k
            ny, nx = (slice(None), slice(None)) if behind.all() else _nearest(behind)
            alpha = ((index[ny, nx] == k) & ~(index < k)).astype(np.float32)
            colour = img if behind.all() else img[ny, nx]
            centre = float(depth[own].mean())
            self.slabs.append((centre, np.dstack([colour * alpha[..., None], alpha]).astype(np.float32)))

    def render(self, focus: float, max_blur: float, kind: str) -> np.ndarray:
        out = np.zeros(self.shape, np.float32)
        for centre, slab in self.slabs:
            kernel = psf(max_blur * abs(centre - focus), kind)
            b = slab if kernel.size == 1 else cv2.filter2D(slab, -1, kernel, borderType=cv2.BORDER_REFLECT)
            a = b[..., -1:]
            out = b[..., :-1] + (1 - a) * out
        return out[..., 0] if self.gray else out


def render_stack(image: np.ndarray, depth: np.ndarray, n: int = 9, *, max_blur: float | None = None,
                 psf_kind: str = "disc", layers: int = 24, breathing: float = 0.0, shift: float = 0.0,
                 exposure_drift: float = 0.0, color_drift: float = 0.0, noise: float = 0.0,
                 seed: int = 0, out_size: tuple[int, int] | None = None) -> SyntheticStack:
    """An ``n``-frame focus stack of ``image`` (uint8, gray or RGB) over ``depth`` (nearness).

    ``max_blur``: PSF radius in px for a depth difference of the whole range (default 1.25 % of
    the image width); ``breathing``: relative magnification of the last frame against frame 0
    (0.03 = 3 %); ``shift``: std of a random per-frame translation in px (frame 0 stays);
    ``exposure_drift``: relative gain of the last frame; ``color_drift``: std of a per-frame,
    per-channel gain jitter; ``noise``: std of additive Gaussian noise in 8-bit units;
    ``out_size``: (H, W) to render at the input's resolution and downsample (INTER_AREA) before
    breathing and noise, i.e. supersampled depth edges (``max_blur`` and ``shift`` are in output
    pixels)."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError("image must be uint8 (H, W) or (H, W, 3)")
    if depth.shape != image.shape[:2]:
        raise ValueError(f"depth {depth.shape} does not match the image {image.shape[:2]}")
    if n < 2:
        raise ValueError("a focus stack needs at least 2 frames")
    rng = np.random.default_rng(seed)
    depth = np.clip(depth.astype(np.float32), 0, 1)
    h, w = out_size or depth.shape
    max_blur = 0.0125 * w if max_blur is None else float(max_blur)
    down = depth.shape[1] / w
    truth = image.copy() if (h, w) == depth.shape else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    out_depth = depth if (h, w) == depth.shape else cv2.resize(depth, (w, h), interpolation=cv2.INTER_AREA)
    focus = np.linspace(0, 1, n)
    slabs = _Layers(image, depth, layers)
    channels = 1 if image.ndim == 2 else 3
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    frames, matrices, gains = [], [], []
    for i, f in enumerate(focus):
        t = i / (n - 1)
        mag = (1 + breathing) ** t
        off = rng.normal(0, shift, 2) if (shift and i) else np.zeros(2)
        m = np.array([[mag, 0, c[0] * (1 - mag) + off[0]], [0, mag, c[1] * (1 - mag) + off[1]], [0, 0, 1]])
        gain = (1 + exposure_drift * t) * (1 + color_drift * rng.standard_normal(channels)) if i else np.ones(channels)
        img = slabs.render(f, max_blur * down, psf_kind)
        if (h, w) != depth.shape:
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        if not np.allclose(m, np.eye(3)):
            img = cv2.warpAffine(img, m[:2], (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        img = img * (gain[0] if channels == 1 else gain.astype(np.float32))
        if noise:
            img = img + rng.normal(0, noise, img.shape).astype(np.float32)
        frames.append(np.clip(np.rint(img), 0, 255).astype(np.uint8))
        matrices.append(m)
        gains.append(gain)
    return SyntheticStack(frames, truth, out_depth, focus, matrices, np.array(gains))


def _resize(image: np.ndarray, depth: np.ndarray, size: tuple[int, int] | None):
    """Image by area averaging; depth by nearest neighbour, so that no pixel gets a depth between
    an occluder's and its background's (it would be blurred in every frame)."""
    if size is None or tuple(size) == image.shape[:2]:
        return image, depth
    hw = (int(size[1]), int(size[0]))
    return (cv2.resize(image, hw, interpolation=cv2.INTER_AREA),
            cv2.resize(depth, hw, interpolation=cv2.INTER_NEAREST))


def normalise(d: np.ndarray) -> np.ndarray:
    """Depth to 0..1 by its 1st and 99th percentiles (outliers clipped)."""
    lo, hi = np.percentile(d, [1, 99])
    return np.clip((d - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def scene(name: str, size: tuple[int, int] | None = None) -> Scene:
    """A named test scene from scikit-image's data, resized to ``size`` = (H, W) if given.

    motorcycle: the Middlebury stereo pair's left view with its real disparity (holes filled);
    coffee: a tabletop, nearness ramping up towards the bottom; chelsea: a dome (the cat's face
    nearest); cutout: an elliptical cut-out of the cat held in front of the astronaut photo (a
    far ramp), i.e. occlusion edges that coincide with edges of the content, as real ones do."""
    from skimage import data  # optional dependency (the 'demo'/'test' extras)

    if name == "motorcycle":
        image, _, disp = data.stereo_motorcycle()
        valid = np.isfinite(disp)
        disp = np.where(valid, disp, 0).astype(np.float32)
        disp = _fill(disp, valid.astype(np.float32))
        depth = normalise(cv2.medianBlur(disp, 5))
    elif name == "coffee":
        image = data.coffee()
        h, w = image.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
        depth = normalise(yy + 0.15 * xx)
    elif name == "cutout":
        image = data.astronaut().copy()
        h, w = image.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
        disc = ((xx - 0.62) / 0.26) ** 2 + ((yy - 0.58) / 0.30) ** 2 < 1
        cat = cv2.resize(data.chelsea(), (w, h), interpolation=cv2.INTER_AREA)
        image[disc] = cat[disc]
        depth = normalise(np.where(disc, 0.8 + 0.2 * yy, 0.5 * (1 - yy)))
    elif name == "chelsea":
        image = data.chelsea()
        h, w = image.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
        depth = normalise(-((xx - 0.45) ** 2 + (yy - 0.4) ** 2))
    else:
        raise ValueError(f"unknown scene '{name}'; choose one of {', '.join(SCENES)}")
    image, depth = _resize(np.ascontiguousarray(image), depth.astype(np.float32), size)
    return Scene(name, image, depth)


def make_stack(name: str, n: int = 9, size: tuple[int, int] | None = (480, 640), *,
               supersample: int = 2, **options) -> SyntheticStack:
    """``render_stack`` of the named ``scene`` at ``size`` (H, W), rendered at up to
    ``supersample`` times that size (never above the scene's own) and downsampled, so that depth
    edges are anti-aliased like a camera's (see both functions for the options)."""
    if size is None:
        s = scene(name)
        return render_stack(s.image, s.depth, n, **options)
    native = scene(name)
    k = min(float(supersample), native.image.shape[0] / size[0], native.image.shape[1] / size[1])
    if k <= 1:
        s = scene(name, size)
        return render_stack(s.image, s.depth, n, **options)
    render_hw = (round(size[0] * k), round(size[1] * k))
    image, depth = _resize(native.image, native.depth, render_hw)
    return render_stack(image, depth, n, out_size=tuple(size), **options)
