"""No-reference fusion metrics for two sources A, B and a fused image F.

Each metric follows the MATLAB image-fusion metrics toolbox of Z. Liu et al. (Z. Liu, E. Blasch,
Z. Xue, J. Zhao, R. Laganiere, W. Wu, "Objective assessment of multiresolution image fusion
algorithms for context enhancement in night vision: a comparative study", IEEE TPAMI 34(1),
2012; github.com/zhengliu6699/imageFusionMetrics), step for step, including its small
numerical guards, as corrected and used in Yu Liu's multi-focus fusion benchmark
(github.com/yuliu316316/MFIF, evaluation/objective_metrics, 2019):

- ``qabf``: Q^AB/F, Xydeas & Petrovic 2000 (``metricXydeas.m``, MFIF version: Sobel edges, the
  paper's constants Tg=0.9994, kg=-15, Dg=0.5, Ta=0.9879, ka=-22, Da=0.8, L=1, orientation term
  1 - |alpha_A - alpha_F| / (pi/2), the weighted sum of Eq. 8).
- ``nmi``: Q_MI, Hossny et al. 2008 (``metricMI.m`` with ``mutual_info.m``, ``normalize1.m``:
  every image stretched to 0..255 and rounded, 256-bin histograms,
  2 * (I(A,F) / (H(A)+H(F)) + I(B,F) / (H(B)+H(F)))).
- ``qy``: Q_Y, Yang et al. 2008 (``metricYang.m``, MFIF version with its 0/0 guard; SSIM with a
  7x7 Gaussian window, sigma 1.5, C1 = C2 = 2e-16, 'valid' filtering, threshold 0.75). With
  constants that small, SSIM over an exactly flat window is a ratio of rounding residuals; here
  such windows get exact zero variances (SSIM = the luminance term), which the toolbox's values
  approach: within 1e-3 of it on the golden pairs, where it is itself ill-conditioned.
- ``qcb``: Q_CB, Chen & Blum 2009 (``metricChenBlum.m``: normalize1, the contrast sensitivity
  filter in the frequency domain with f0=15.3870, f1=1.3456, a=0.7622 on ``freqspace`` scaled
  by size/30, local contrast from 31x31 Gaussians sigma 2 and 4, k=1, h=1, p=3, q=2, Z=1e-4).
  Complex values are kept as MATLAB keeps them; like the toolbox, an exactly flat region can
  make it NaN (0/0).

Inputs are luma in 0..255 (float64): gray 8-bit as is; RGB 8-bit converted as MATLAB's
``rgb2gray`` does for uint8 (the weights of the NTSC transform's inverse, rounded to integers),
which is what the toolbox users' scripts do; 16-bit images are scaled by 255/65535 first.
MATLAB's ``filter2`` (correlation, zero padding) is ``cv2.filter2D`` with a constant border.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from engine.errors import InputError

# MATLAB rgb2gray: first row of inv([1 .956 .621; 1 -.272 -.647; 1 -1.106 1.703]).
RGB2GRAY = np.linalg.inv(np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]]))[0]
MIN_SIDE = 11  # the toolbox's SSIM refuses smaller images


def luma255(img: np.ndarray) -> np.ndarray:
    """float64 luma in 0..255 as the toolbox's users compute it (see the module docstring)."""
    img = np.asarray(img)
    if img.dtype not in (np.uint8, np.uint16):
        raise InputError(f"unsupported pixel type {img.dtype}; pass uint8 or uint16 images")
    x = img.astype(np.float64)
    if img.dtype == np.uint16:
        x *= 255.0 / 65535.0
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    if x.ndim == 3:
        if x.shape[2] != 3:
            raise InputError(f"shape {img.shape} is neither gray nor RGB")
        x = x @ RGB2GRAY
        if img.dtype == np.uint8:
            x = np.floor(x + 0.5)   # MATLAB rounds half away from zero
    elif x.ndim != 2:
        raise InputError(f"shape {img.shape} is neither gray nor RGB")
    return x


def _filter2(kernel: np.ndarray, img: np.ndarray, shape: str = "same") -> np.ndarray:
    """MATLAB ``filter2(kernel, img, shape)`` for odd kernels: correlation, zero padding."""
    if np.iscomplexobj(img):
        return _filter2(kernel, img.real, shape) + 1j * _filter2(kernel, img.imag, shape)
    out = cv2.filter2D(img.astype(np.float64), cv2.CV_64F, kernel.astype(np.float64),
                       borderType=cv2.BORDER_CONSTANT)
    if shape == "valid":
        ry, rx = kernel.shape[0] // 2, kernel.shape[1] // 2
        out = out[ry:out.shape[0] - ry, rx:out.shape[1] - rx]
    return out


def _normalize1(x: np.ndarray) -> np.ndarray:
    """``normalize1.m``: stretch to 0..255 and round. (A constant non-zero image, where the
    toolbox divides by zero, gives zeros.)"""
    hi, lo = float(x.max()), float(x.min())
    if hi == 0 and lo == 0:
        return x.copy()
    if hi == lo:
        return np.zeros_like(x)
    return np.floor((x - lo) / (hi - lo) * 255 + 0.5)


def _check(a, b, f):
    if not (a.shape == b.shape == f.shape):
        size = lambda x: f"{x.shape[1]}x{x.shape[0]}"
        raise InputError(f"the images differ in size: A is {size(a)}, B {size(b)}, fused {size(f)}")
    if min(a.shape) < MIN_SIDE:
        raise InputError(f"images must be at least {MIN_SIDE} px on each side (got {a.shape[1]}x{a.shape[0]})")


def qabf(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Q^AB/F on luma planes (``metricXydeas.m``, MFIF version)."""
    a, b, f = (np.asarray(x, np.float64) for x in (a, b, f))
    _check(a, b, f)
    flt1 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64)
    flt2 = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float64)

    def edges(img):
        x, y = _filter2(flt1, img), _filter2(flt2, img)
        g = np.sqrt(x * x + y * y)
        x = x + (x == 0) * 0.00001
        return g, np.arctan(y / x)

    fg, fa = edges(f)
    ga, aa = edges(a)
    gb, ab = edges(b)

    def preservation(g, ang, fg):
        bimap = g > fg
        g = g + (g == 0) * 0.00001
        buffer1 = fg / g
        fg = fg + (fg == 0) * 0.00001
        buffer2 = g / fg
        gq = bimap * buffer1 + (1 - bimap) * buffer2
        aq = 1 - np.abs(ang - fa) * 2 / math.pi
        return g, fg, gq, aq

    ga, fg, gaf, aaf = preservation(ga, aa, fg)
    gb, fg, gbf, abf = preservation(gb, ab, fg)
    tg, kg, dg, ta, ka, da, L = 0.9994, -15.0, 0.5, 0.9879, -22.0, 0.8, 1.0
    qaf = tg / (1 + np.exp(kg * (gaf - dg))) * (ta / (1 + np.exp(ka * (aaf - da))))
    qbf = tg / (1 + np.exp(kg * (gbf - dg))) * (ta / (1 + np.exp(ka * (abf - da))))
    wa, wb = ga ** L, gb ** L
    return float(np.sum(qaf * wa + qbf * wb) / np.sum(wa + wb))


def _mutual_info(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """``mutual_info.m`` on integer images 0..255: (MI, H(x), H(y)) from a 256x256 histogram."""
    h = np.zeros((256, 256))
    np.add.at(h, (x.astype(np.int64).ravel(), y.astype(np.int64).ravel()), 1)
    h /= h.sum()
    ent = lambda p: float(-np.sum(p * np.log2(p + (p == 0))))
    hx, hy, hxy = ent(h.sum(1)), ent(h.sum(0)), ent(h)
    return hx + hy - hxy, hx, hy


def nmi(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Q_MI of Hossny et al. (``metricMI.m``, sw = 1)."""
    a, b, f = (np.asarray(x, np.float64) for x in (a, b, f))
    _check(a, b, f)
    a, b, f = _normalize1(a), _normalize1(b), _normalize1(f)
    i_af, h_a, h_f1 = _mutual_info(a, f)
    i_bf, h_b, h_f2 = _mutual_info(b, f)
    return 2 * (i_af / (h_f1 + h_a) + i_bf / (h_f2 + h_b))


def _gaussian(size: int, sigma: float) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)``."""
    r = (size - 1) / 2
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    g = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    g[g < np.finfo(float).eps * g.max()] = 0
    return g / g.sum()


def _flat(x: np.ndarray, size: int) -> np.ndarray:
    """'valid' windows of ``size`` where every pixel is equal."""
    k = np.ones((size, size), np.uint8)
    r = size // 2
    same = cv2.dilate(x, k) == cv2.erode(x, k)
    return same[r:x.shape[0] - r, r:x.shape[1] - r]


def _ssim_yang(x: np.ndarray, y: np.ndarray):
    w = _gaussian(7, 1.5)
    c1 = c2 = 2e-16
    mu1, mu2 = _filter2(w, x, "valid"), _filter2(w, y, "valid")
    s1 = _filter2(w, x * x, "valid") - mu1 * mu1
    s2 = _filter2(w, y * y, "valid") - mu2 * mu2
    s12 = _filter2(w, x * y, "valid") - mu1 * mu2
    # E[x^2] - E[x]^2 over an exactly flat window is a rounding residual (~1e-12) and, with
    # C1 = C2 = 2e-16, SSIM there is residual / residual: whatever the summation order makes it
    # (over 4 on one golden pair here). The toolbox's filter2 leaves equal residuals, i.e. SSIM
    # ~1 between equal flat windows and ~0 against a textured one; exact zeros give the same.
    f1, f2 = _flat(x, 7), _flat(y, 7)
    s1[f1], s2[f2], s12[f1 | f2] = 0.0, 0.0, 0.0
    ssim = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 * mu1 + mu2 * mu2 + c1) * (s1 + s2 + c2))
    return ssim, s1, s2


def qy(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Q_Y of Yang et al. (``metricYang.m``, MFIF version)."""
    a, b, f = (np.asarray(x, np.float64) for x in (a, b, f))
    _check(a, b, f)
    m1, s1, s2 = _ssim_yang(a, b)
    m2, _, _ = _ssim_yang(a, f)
    m3, _, _ = _ssim_yang(b, f)
    binary = m1 >= 0.75
    test = ((s1 + s2) == 0) * 0.5
    s1, s2 = s1 + test, s2 + test
    lam = s1 / (s1 + s2)
    q1 = (lam * m2 + (1 - lam) * m3) * binary
    q2 = np.maximum(m2, m3) * ~binary
    return float(np.mean(q1 + q2))


def _freqspace(n: int) -> np.ndarray:
    return (np.arange(n) - n // 2) * (2.0 / n)


def qcb(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Q_CB of Chen & Blum (``metricChenBlum.m``)."""
    a, b, f = (np.asarray(x, np.float64) for x in (a, b, f))
    _check(a, b, f)
    a, b, f = _normalize1(a), _normalize1(b), _normalize1(f)
    f0, f1, amp = 15.3870, 1.3456, 0.7622
    k, h, p, q, z = 1.0, 1.0, 3.0, 2.0, 0.0001
    rows, cols = a.shape
    u, v = np.meshgrid(_freqspace(cols) * (cols / 30), _freqspace(rows) * (rows / 30))
    r = np.sqrt(u * u + v * v)
    sd = np.exp(-(r / f0) ** 2) - amp * np.exp(-(r / f1) ** 2)
    csf = lambda img: np.fft.ifft2(np.fft.ifftshift(np.fft.fftshift(np.fft.fft2(img)) * sd))
    yy, xx = np.mgrid[-15:16, -15:16]
    g1 = np.exp(-(xx * xx + yy * yy) / (2 * 2.0 ** 2)) / (2 * math.pi * 2.0 ** 2)
    g2 = np.exp(-(xx * xx + yy * yy) / (2 * 4.0 ** 2)) / (2 * math.pi * 4.0 ** 2)

    def contrast(img):
        c = np.abs(_filter2(g1, img) / _filter2(g2, img) - 1)
        return (k * c ** p) / (h * c ** q + z)

    with np.errstate(divide="ignore", invalid="ignore"):
        c1, c2, cf = contrast(csf(a)), contrast(csf(b)), contrast(csf(f))
        mask = c1 < cf
        q1f = (c1 / cf) * mask + (cf / c1) * (1 - mask)
        mask = c2 < cf
        q2f = (c2 / cf) * mask + (cf / c2) * (1 - mask)
        lam1 = c1 * c1 / (c1 * c1 + c2 * c2)
        lam2 = c2 * c2 / (c1 * c1 + c2 * c2)
        return float(np.mean(lam1 * q1f + lam2 * q2f))


METRICS = {"qabf": qabf, "nmi": nmi, "qy": qy, "qcb": qcb}


def evaluate(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> dict[str, float]:
    """All four metrics of images (uint8/uint16, gray or RGB), on their luma in 0..255."""
    la, lb, lf = luma255(a), luma255(b), luma255(fused)
    _check(la, lb, lf)
    return {name: fn(la, lb, lf) for name, fn in METRICS.items()}
