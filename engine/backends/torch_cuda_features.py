"""The torch-cuda feature path without elementwise passes (kernel ABI 3), behind a switch.

Today's path (``features="default"``) multiplies each CSE scale into its feature slice and
converts Bm to the decision path's type and layout in separate passes over the image. This path
never does: the 64-channel buffer holds the UNSCALED block outputs u_k, block k+1's convolution
folds the scales of blocks 0..k into its weights per input channel (``gacn_feature_conv``), the
scales come from the conv's partial sums in one small kernel (``gacn_cse_scale``, float64 mean)
or are handed in (tiled execution: ``scales`` [K, 4, 16]), and ``gacn_activity_scaled`` reads u
with per-channel scales and writes Bm directly as the decision path's dtype and layout (FP16
NHWC in fp16 mode).

Selected with ``TorchCudaRunner(..., features=NAME)`` or the environment variable
``GACN_FEATURES=NAME``:
  ``default``  today's path (gacn_conv3x3_c16 + PyTorch elementwise passes);
  ``fold``     this path with the FP32 FMA convolution (no elementwise passes);
  ``tc32``     this path with the 3xTF32 tensor-core convolution (no elementwise passes and
               tensor cores), FP32-level
               accuracy; GPUs below sm_80 (or with too little shared memory) run the FMA kernel.
The new paths' speed is unmeasured until a GPU session times them (benchmarks/gpu_check.py).
"""
from __future__ import annotations

import os

from engine import kernels as K
from engine.errors import BackendError

FEATURE_PATHS = {"default": None, "fold": K.CONV_FFMA, "tc32": K.CONV_3XTF32}
BLOCKS, CH = 4, 16  # feature blocks, channels per block


def feature_path_name(name: str | None = None) -> str:
    """The path to use: ``name``, else $GACN_FEATURES, else "default"; unknown names are refused."""
    value = name if name is not None else os.environ.get("GACN_FEATURES", "default")
    value = (value or "default").strip().lower()
    if value not in FEATURE_PATHS:
        raise BackendError(f"unknown feature path {value!r} (GACN_FEATURES / features=): expected one of "
                           f"{', '.join(FEATURE_PATHS)}")
    return value


class ScaledFeatures:
    """The feature extraction and activity step of a :class:`CudaGacn` on unscaled features.

    Uses the network's folded feature blocks (``net.fe``), CSE weights (``net.cse``), kernel
    library, device and decision dtype/layout; ``algo`` is the convolution's (K.CONV_FFMA or
    K.CONV_3XTF32).
    """

    def __init__(self, net, algo: int):
        self.net, self.algo = net, algo

    def features(self, y, u, s, scales_given: bool = False):
        """One frame: y [1,1,H,W] float32 -> u [1,64,H,W] (u_k in channels 16k..16k+15, unscaled).

        ``s`` is the frame's [1, 4, 16] float32 scale slot: filled from the partial sums, or read
        when ``scales_given`` (then no partial sums are formed)."""
        net, t = self.net, self.net.t
        lib, stream = net.lib, net._stream()
        _, _, h, w = y.shape
        sums = None if scales_given else t.empty((1, lib.conv3x3_c16_partials(h, w), CH), device=y.device,
                                                  dtype=t.float32)
        for i, (wt, b, bn) in enumerate(net.fe):
            src, cin, stride = (y, 1, h * w) if i == 0 else (u, CH * i, BLOCKS * CH * h * w)
            scale = 0 if i == 0 else s.data_ptr()  # the slots of blocks 0..i-1: contiguous
            dst = u[:, CH * i:CH * (i + 1)]
            lib.feature_conv(src.data_ptr(), cin, scale, BLOCKS * CH, wt.data_ptr(), b.data_ptr(), bn.data_ptr(),
                             dst.data_ptr(), 0 if sums is None else sums.data_ptr(), 1, h, w, stride,
                             BLOCKS * CH * h * w, self.algo, stream)
            if sums is not None:
                fc1, fc2 = net.cse[i]
                lib.cse_scale(sums.data_ptr(), 1, sums.shape[1], h * w, fc1.data_ptr(), fc2.data_ptr(),
                              s[:, i].data_ptr(), BLOCKS * CH, stream)
        return u

    def bm(self, luma, scales=None):
        """Bm [K-1, 64, H, W] in the decision path's dtype and memory format from luma [K,1,H,W].

        ``scales``: the CSE scales [K, 4, 16] float32 (contiguous, on luma's device) to use instead
        of computing them (tiled execution: the frame's whole-image scales)."""
        net, t = self.net, self.net.t
        k, _, h, w = luma.shape
        dev = luma.device
        if scales is not None:
            if (tuple(scales.shape) != (k, BLOCKS, CH) or scales.dtype != t.float32 or not scales.is_contiguous()
                    or scales.device != dev):
                raise ValueError(f"scales must be a contiguous float32 [{k}, {BLOCKS}, {CH}] tensor on {dev}, "
                                 f"got {tuple(scales.shape)} {scales.dtype} on {scales.device}")
            s = scales
        else:
            s = t.empty((k, BLOCKS, CH), device=dev, dtype=t.float32)
        ua = t.empty((1, BLOCKS * CH, h, w), device=dev, dtype=t.float32)
        ub = t.empty((k - 1, BLOCKS * CH, h, w), device=dev, dtype=t.float32)
        given = scales is not None
        self.features(luma[:1], ua, s[0:1], given)
        for j in range(k - 1):  # one frame at a time: bounded temporaries
            self.features(luma[j + 1:j + 2], ub[j:j + 1], s[j + 1:j + 2], given)
        bm = t.empty((k - 1, BLOCKS * CH, h, w), device=dev, dtype=net.dtype, memory_format=net.layout)
        net.lib.activity_scaled(ua.data_ptr(), ub.data_ptr(), s[0].data_ptr(), s[1:].data_ptr(), bm.data_ptr(),
                                k - 1, 1, BLOCKS * CH, h, w, K.F32, K.NCHW, net.kdtype, net.klayout, net._stream())
        return bm


def make_feature_path(net, name: str | None = None):
    """The :class:`ScaledFeatures` for path ``name`` (see the module docstring), None for "default"."""
    algo = FEATURE_PATHS[feature_path_name(name)]
    return None if algo is None else ScaledFeatures(net, algo)
