"""PyTorch-CUDA runner: cuDNN convolutions, GACN's three custom operations from the kernel library.

The float32 feature convolutions run as gacn_conv3x3_c16, the decision-path convolutions in
cuDNN (float16 channels_last, or float32); the activity step, the five
spatial gates (with the preceding ReLU and BatchNorm fused in) and the boundary step run as
the CUDA kernels of kernels/, called through ctypes on tensor pointers on the current stream.
A shape's first run is eager; its second captures a CUDA graph and replays it, later runs replay
(engine/backends/shape_cache.py: the SHAPES_KEPT most recently used shapes stay captured).
"""
from __future__ import annotations

import logging

import numpy as np

from engine import kernels as K
from engine.backends.shape_cache import CAPTURE, SHAPES_KEPT, ShapeCache
from engine.errors import BackendError
from engine.spec import DECISION_BLOCKS, FEATURE_BLOCKS, SSE_CHANNELS, sse_key
from engine.tiling import cse_weights
from engine.variants import sums_block

log = logging.getLogger(__name__)



class CudaGacn:
    """The network as PyTorch ops plus kernel-library calls; ``__call__(luma) -> (D, M)``.

    Feature extraction always runs in float32 (NCHW, no TF32): the activity step multiplies
    feature differences by 1000 before its sigmoid, and float16 features move 0.7-1.6 % of the
    decision map on flat images (TF32 0.2 %, measured against the golden outputs), while a
    float16 decision path moves < 0.01 %. ``dtype`` is the decision path's.
    """

    def __init__(self, params: dict[str, np.ndarray], lib: K.KernelLibrary, dtype, torch, device: str = "cuda",
                 features: str | None = None):
        from engine.backends.torch_cuda_features import make_feature_path
        from engine.folding import fold_conv_block
        self.t, self.lib, self.dtype = torch, lib, dtype
        self.on_gpu = device == "cuda"  # "cpu" with the CPU kernel library: how CI checks this class
        self.kdtype = K.F16 if dtype == torch.float16 else K.F32
        # float16 convolutions want channels_last (tensor cores); float32 stays NCHW
        self.layout = torch.channels_last if dtype == torch.float16 else torch.contiguous_format
        self.klayout = K.NHWC if dtype == torch.float16 else K.NCHW
        cuda, f32 = torch.device(device), torch.float32

        def on(a, dt):
            return torch.from_numpy(np.ascontiguousarray(a)).to(cuda, dt)

        def conv(blk, dt, layout):
            """(folded weight, bias, BatchNorm rest [2,C] float32: scale and shift) on the device."""
            w, b, rest, shift = fold_conv_block(params, blk)
            return on(w, dt).contiguous(memory_format=layout), on(b, dt), on(np.stack([rest, shift]), f32)

        self.fe = [conv(b, f32, torch.contiguous_format) for b in FEATURE_BLOCKS]
        self.cse = [(on(fc1, f32), on(fc2, f32)) for fc1, fc2 in cse_weights(params)]
        self.dp = [conv(b, dtype, self.layout) for b in DECISION_BLOCKS]
        self.gate_w = [on(params[sse_key(i)][0], f32) for i in SSE_CHANNELS]
        # features="fold"/"tc32" (or $GACN_FEATURES): the path without elementwise passes
        self.feature_path = make_feature_path(self, features)

    def _stream(self) -> int:
        return self.t.cuda.current_stream().cuda_stream if self.on_gpu else 0

    def features(self, y, out, cse=None, until: int | None = None):
        """Spec section 3 for one frame: y [1,1,H,W] float32 -> out [1,64,H,W] float32 (NCHW).

        Per block, gacn_conv3x3_c16 computes u = relu(conv(x))*rest + shift and the per-block
        channel sums of u (the CSE mean) in one pass, then u * s lands in the block's channel
        slice of ``out``; the next block reads the slice prefix, so concatenation costs nothing.
        (3x faster than cuDNN's float32 convolutions, measured on an H200.) ``cse`` [16*k] gives
        the frame's scales instead (tiled execution, engine.tiling); ``until`` = k returns block
        k's u_k before its CSE (the sums passes)."""
        t = self.t
        _, _, h, w = y.shape
        u = t.empty((1, 16, h, w), device=y.device, dtype=t.float32)
        sums = None
        if cse is None:
            sums = t.empty((1, self.lib.conv3x3_c16_partials(h, w), 16), device=y.device, dtype=t.float32)
        for i, (wt, b, bn) in enumerate(self.fe):
            src, cin, stride = (y, 1, h * w) if i == 0 else (out, 16 * i, 64 * h * w)
            self.lib.conv3x3_c16(src.data_ptr(), cin, wt.data_ptr(), b.data_ptr(), bn.data_ptr(), u.data_ptr(),
                                 0 if sums is None else sums.data_ptr(), 1, h, w, stride, 16 * h * w, self._stream())
            if i == until:
                return u
            if cse is None:
                fc1, fc2 = self.cse[i]
                s = t.sigmoid(t.relu((sums.sum(1) / (h * w)) @ fc1.T) @ fc2.T)
            else:
                s = cse[None, 16 * i:16 * (i + 1)]
            t.mul(u, s[:, :, None, None], out=out[:, 16 * i:16 * (i + 1)])
        return out

    def block_sums(self, block: int, luma, cse, colmask):
        """The ``sums<block>`` variant: row sums [K,16,H] of u_block over the masked columns."""
        t = self.t
        k, _, h, w = luma.shape
        buf = t.empty((1, 64, h, w), device=luma.device, dtype=t.float32)
        rows = []
        for j in range(k):
            u = self.features(luma[j:j + 1], buf, cse[j, :, 0, 0] if block else cse, until=block)
            rows.append((u[0] * colmask.view(1, 1, w)).sum(dim=2))
        return t.stack(rows)

    def _conv_relu(self, x, w, b):
        """relu(conv3x3(x) + b): one cuDNN call on the GPU (saves the bias and ReLU passes)."""
        if self.on_gpu:
            return self.t.cudnn_convolution_relu(x, w, b, (1, 1), (1, 1), (1, 1), 1)
        return self.t.nn.functional.conv2d(x, w, b, padding=1).relu_()

    def gate(self, x, i, bn=None):
        """GacnSpatialGate: u = x * scale + shift (the block's BatchNorm, if given; the ReLU was
        cuDNN's), then u * sigmoid(conv7x7(u))."""
        n, c, h, w = x.shape
        x = x.contiguous(memory_format=self.layout)
        y = self.t.empty_like(x, memory_format=self.layout)
        self.lib.spatial_gate(x.data_ptr(), self.gate_w[i].data_ptr(), bn.data_ptr() if bn is not None else 0,
                              0, y.data_ptr(), n, c, h, w, self.kdtype, self.klayout, self._stream())
        return y

    def __call__(self, luma, cse=None):
        """D, M [K-1,1,H,W] for luma [K,1,H,W]; ``cse`` [K,64,1,1] for a tile (engine.tiling)."""
        t = self.t
        k, _, h, w = luma.shape
        if self.feature_path is not None:  # Bm straight in the decision path's dtype and layout
            scales = None if cse is None else cse.reshape(k, 4, 16).contiguous()
            return self._decide(luma, self.feature_path.bm(luma, scales))
        fa = t.empty((1, 64, h, w), device=luma.device, dtype=t.float32)
        fb = t.empty((k - 1, 64, h, w), device=luma.device, dtype=t.float32)
        frame_cse = (lambda j: None) if cse is None else (lambda j: cse[j, :, 0, 0])  # noqa: E731
        self.features(luma[:1], fa, frame_cse(0))
        for j in range(k - 1):  # one frame at a time: bounded temporaries
            self.features(luma[j + 1:j + 2], fb[j:j + 1], frame_cse(j + 1))
        bm = t.empty_like(fb)
        self.lib.activity(fa.data_ptr(), fb.data_ptr(), bm.data_ptr(), k - 1, 1, 64, h, w, K.F32, K.NCHW, self._stream())
        del fa, fb
        return self._decide(luma, bm.to(self.dtype, memory_format=self.layout))

    def _decide(self, luma, bm):
        """Spec sections 5-6 from Bm (in the decision path's dtype and memory format)."""
        t = self.t
        k, _, h, w = luma.shape
        x = self.gate(bm, 0)
        del bm
        for j, (w_, b_, bn) in enumerate(self.dp):
            x = self.gate(self._conv_relu(x, w_, b_), j + 1, bn=bn)
        d4 = x.contiguous()
        d = t.empty((k - 1, 1, h, w), device=luma.device, dtype=t.float32)
        m = t.empty_like(d)
        self.lib.boundary_refine(d4.data_ptr(), luma[:1].data_ptr(), luma[1:].data_ptr(), d.data_ptr(), m.data_ptr(),
                                 k - 1, 1, h, w, self.kdtype, self._stream())
        return d, m


class TorchCudaRunner:
    """engine.backends.base.DeviceRunner: the executor fills ``bind``'s inputs, ``enqueue`` computes.

    Each (variant, shape) keeps its tensors; a shape seen twice is captured as a CUDA graph and
    replayed from then on (a one-off call pays no capture)."""

    name = "torch-cuda"
    on_device = True
    tile_side = None
    max_frames = None
    max_tile = None
    SHAPES_KEPT = SHAPES_KEPT

    def __init__(self, params, precision: str = "fp32", cuda_graphs: bool = True, device: int = 0,
                 features: str | None = None):
        from engine.backends.torch_cuda_features import feature_path_name
        if params is None:
            raise BackendError("the torch-cuda backend needs checkpoint parameters (--weights)")
        if precision not in ("fp32", "fp16"):
            raise BackendError(f"unsupported precision '{precision}' (fp32 or fp16)")
        self.params, self.precision, self.cuda_graphs, self.device = params, precision, cuda_graphs, device
        self.cse_weights = cse_weights(params)
        self.features = feature_path_name(features)  # "default", "fold" or "tc32" (torch_cuda_features.py)
        self.net = None
        # LRU of (variant, shape): eager, then capture + replay; a tiled frame uses up to 5 variants
        self._shapes = ShapeCache(capacity=self.SHAPES_KEPT, graphs=cuda_graphs)
        self._current = None

    def activate(self) -> None:
        try:
            import torch
        except ImportError:
            raise BackendError("the torch-cuda backend needs PyTorch with CUDA: pip install torch") from None
        if not torch.cuda.is_available():
            raise BackendError("the torch-cuda backend needs a CUDA GPU; none is visible to PyTorch")
        self.torch = torch
        torch.cuda.set_device(self.device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = False   # float32 means float32: TF32 would move D by ~1e-3
        torch.backends.cuda.matmul.allow_tf32 = False
        lib = K.KernelLibrary.load("cuda")
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self.net = CudaGacn(self.params, lib, dtype, torch, features=self.features)
        log.info("torch-cuda runner on %s (%s, features %s)", torch.cuda.get_device_name(self.device), self.precision,
                 self.features)

    def bind(self, variant: str, frames: int, height: int, width: int) -> dict[str, int]:
        t = self.torch
        block = sums_block(variant)

        def make():
            f32 = dict(device="cuda", dtype=t.float32)
            io = {"luma": t.zeros((frames, 1, height, width), **f32)}
            if variant == "tile" or block:
                io["cse"] = t.ones((frames, 64 if block is None else 16 * block, 1, 1), **f32)
            if block is None:
                io["decision"] = t.zeros((frames - 1, 1, height, width), **f32)
                io["mask"] = t.zeros_like(io["decision"])
            else:
                io["colmask"] = t.zeros((1, 1, 1, width), **f32)
                io["sums"] = t.zeros((frames, 16, height), **f32)
            return {"io": io, "block": block}
        self._current = self._shapes.entry((variant, frames, height, width), make)
        return {name: tensor.data_ptr() for name, tensor in self._current["io"].items()}

    def _run(self, s) -> None:
        io = s["io"]
        if s["block"] is not None:
            io["sums"].copy_(self.net.block_sums(s["block"], io["luma"], io.get("cse"), io["colmask"]))
            return
        d, m = self.net(io["luma"], io.get("cse"))
        io["decision"].copy_(d)
        io["mask"].copy_(m)

    def enqueue(self, stream) -> None:
        t, s = self.torch, self._current
        with t.cuda.stream(t.cuda.ExternalStream(int(stream))):
            action = self._shapes.action(s)
            if action == CAPTURE:  # shape seen twice: capture it once, then replay that capture
                s["graph"] = self._capture(s)
            if s["graph"] is not None:
                s["graph"].replay()
                return
            self._run(s)  # first run of a (variant, shape): eager, no capture to pay for

    def _capture(self, s):
        t = self.torch
        t.cuda.current_stream().synchronize()
        g = t.cuda.CUDAGraph()
        with t.cuda.graph(g):
            self._run(s)
        return g

    def memory(self, variant: str, frames: int, height: int, width: int) -> int:
        """Estimated from the tensors each variant holds at its peak (features of two frames in
        float32, Bm, the decision path; sums: one frame's features), with 25 % for the caching
        allocator; the 4K whole-frame fp16 peak measured 6.1 GiB (benchmarks/RESULTS.md) against
        6.6 GiB estimated here. benchmarks/memory.py measures it on a GPU."""
        px = height * width
        block = sums_block(variant)
        if block is not None:
            per_px = 4 * (frames + 16 * (block + 2) + 16)
        else:
            per_px = 4 * frames + 256 * 2 + 256 * (frames - 1) * (2 if self.precision == "fp32" else 1.5)
        return int((64 << 20) + 1.25 * per_px * px)

    def unsupported(self, variant: str, frames: int, height: int, width: int) -> str | None:
        return None

    def deactivate(self) -> None:
        self._shapes.clear()
        self.net = None
