"""PyTorch-CUDA runner: cuDNN convolutions, GACN's three custom operations from the kernel library.

Convolutions run in PyTorch (float16 or float32, channels_last); the activity step, the five
spatial gates (with the preceding ReLU and BatchNorm fused in) and the boundary step run as
the CUDA kernels of kernels/, called through ctypes on tensor pointers on the current stream.
Each input shape is captured once as a CUDA graph and replayed after that.
"""
from __future__ import annotations

import logging

import numpy as np

from engine import kernels as K
from engine.backends.base import Runner
from engine.errors import BackendError

log = logging.getLogger(__name__)

FEATURE_BLOCKS = ("feature_extraction_conv0", "feature_extraction_conv1", "feature_extraction_conv2", "feature_extraction_conv3")
DECISION_BLOCKS = ("decision_path_conv1", "decision_path_conv2", "decision_path_conv3", "decision_path_conv4")


class CudaGacn:
    """The network as PyTorch ops plus kernel-library calls; ``__call__(luma) -> (D, M)``."""

    def __init__(self, params: dict[str, np.ndarray], lib: K.KernelLibrary, dtype, torch):
        from export.folding import fold_conv_block
        self.t, self.lib, self.dtype = torch, lib, dtype
        self.kdtype = K.F16 if dtype == torch.float16 else K.F32
        cuda = torch.device("cuda")
        cl = torch.channels_last

        def conv(blk):
            """(weight, bias, rest or None, shift, bn [2,C] float32 for the gate) on the GPU."""
            w, b, rest, shift = fold_conv_block(params, blk)
            on = lambda a, dt: torch.from_numpy(np.ascontiguousarray(a)).to(cuda, dt)  # noqa: E731
            return (on(w, dtype).contiguous(memory_format=cl), on(b, dtype),
                    None if np.all(rest == 1) else on(rest[:, None, None], dtype), on(shift[:, None, None], dtype),
                    on(np.stack([rest, shift]), torch.float32))

        self.fe = [conv(b) for b in FEATURE_BLOCKS]
        self.cse = [(torch.from_numpy(params[f"se_{i}.fc.0.weight"]).to(cuda), torch.from_numpy(params[f"se_{i}.fc.2.weight"]).to(cuda))
                    for i in range(4)]
        self.dp = [conv(b) for b in DECISION_BLOCKS]
        self.gate_w = [torch.from_numpy(params[f"se_{i}.fc.0.weight"][0]).to(cuda).contiguous() for i in range(4, 9)]

    def _stream(self) -> int:
        return self.t.cuda.current_stream().cuda_stream

    def _block(self, x, blk):
        """ConvBlock with its BatchNorm: relu(conv') * rest + shift."""
        w, b, rest, shift, _ = blk
        y = self.t.nn.functional.conv2d(x, w, b, padding=1).relu_()
        if rest is not None:
            y.mul_(rest)
        return y.add_(shift)

    def features(self, y):
        """Spec section 3 for one frame [1,1,H,W] -> [1,64,H,W] channels_last."""
        t = self.t
        outs, x = [], y
        for i, blk in enumerate(self.fe):
            f = self._block(x, blk)
            fc1, fc2 = self.cse[i]
            s = t.sigmoid(t.relu(f.mean(dim=(2, 3), dtype=t.float32) @ fc1.T) @ fc2.T)  # float32 squeeze
            outs.append(f.mul_(s.to(f.dtype)[:, :, None, None]))
            x = t.cat(outs, 1) if i < 3 else None
        return t.cat(outs, 1).contiguous(memory_format=t.channels_last)

    def gate(self, x, i, bn=None):
        """GacnSpatialGate: u = relu(x)*rest + shift if ``bn`` else x; u * sigmoid(conv7x7(u))."""
        n, c, h, w = x.shape
        x = x.contiguous(memory_format=self.t.channels_last)
        y = self.t.empty_like(x, memory_format=self.t.channels_last)
        self.lib.spatial_gate(x.data_ptr(), self.gate_w[i].data_ptr(), bn.data_ptr() if bn is not None else 0,
                              int(bn is not None), y.data_ptr(), n, c, h, w, self.kdtype, K.NHWC, self._stream())
        return y

    def __call__(self, luma):
        t = self.t
        k, _, h, w = luma.shape
        x = luma.to(self.dtype).contiguous(memory_format=t.channels_last)
        feats = [self.features(x[i:i + 1]) for i in range(k)]  # one frame at a time: bounded memory
        fa = feats[0]
        fb = t.cat(feats[1:], 0) if k > 2 else feats[1]
        del feats
        bm = t.empty_like(fb, memory_format=t.channels_last)
        self.lib.activity(fa.data_ptr(), fb.data_ptr(), bm.data_ptr(), k - 1, 1, 64, h, w, self.kdtype, K.NHWC, self._stream())
        del fa, fb
        x = self.gate(bm, 0)
        for j, (w_, b_, _, _, bn) in enumerate(self.dp):
            x = self.gate(t.nn.functional.conv2d(x, w_, b_, padding=1), j + 1, bn=bn)
        d4 = x.contiguous()
        d = t.empty((k - 1, 1, h, w), device=luma.device, dtype=t.float32)
        m = t.empty_like(d)
        self.lib.boundary_refine(d4.data_ptr(), luma[:1].data_ptr(), luma[1:].data_ptr(), d.data_ptr(), m.data_ptr(),
               k - 1, 1, h, w, self.kdtype, self._stream())
        return d, m


class TorchCudaRunner(Runner):
    """Device runner: the pipeline writes luma into ``io()``'s buffer, ``enqueue`` fills D and M."""

    name = "torch-cuda"
    on_device = True

    def __init__(self, params, precision: str = "fp32", cuda_graphs: bool = True, device: int = 0):
        if params is None:
            raise BackendError("the torch-cuda backend needs checkpoint parameters (--weights)")
        if precision not in ("fp32", "fp16"):
            raise BackendError(f"unsupported precision '{precision}' (fp32 or fp16)")
        self.params, self.precision, self.cuda_graphs, self.device = params, precision, cuda_graphs, device
        self.net = None
        self._shapes: dict[tuple, dict] = {}
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
        self.net = CudaGacn(self.params, lib, dtype, torch)
        log.info("torch-cuda runner on %s (%s)", torch.cuda.get_device_name(self.device), self.precision)

    def io(self, k: int, h: int, w: int) -> tuple[int, int, int]:
        """Device pointers (luma [k,1,h,w], D, M [k-1,1,h,w], float32) for this shape."""
        key = (k, h, w)
        if key not in self._shapes:
            if len(self._shapes) >= 4:  # a few shapes stay warm; older ones free their graphs
                self._shapes.pop(next(iter(self._shapes)))
            t = self.torch
            luma = t.zeros((k, 1, h, w), device="cuda", dtype=t.float32)
            d = t.zeros((k - 1, 1, h, w), device="cuda", dtype=t.float32)
            self._shapes[key] = {"luma": luma, "d": d, "m": t.zeros_like(d), "graph": None, "runs": 0}
        self._current = self._shapes[key]
        s = self._current
        return s["luma"].data_ptr(), s["d"].data_ptr(), s["m"].data_ptr()

    def enqueue(self, stream) -> None:
        t, s = self.torch, self._current
        with t.cuda.stream(t.cuda.ExternalStream(int(stream))):
            if s["graph"] is not None:
                s["graph"].replay()
                return
            d, m = self.net(s["luma"])
            s["d"].copy_(d)
            s["m"].copy_(m)
            s["runs"] += 1
            if self.cuda_graphs and s["runs"] == 2:  # shape seen twice: capture it
                s["graph"] = self._capture(s)

    def _capture(self, s):
        t = self.torch
        t.cuda.current_stream().synchronize()
        g = t.cuda.CUDAGraph()
        with t.cuda.graph(g):
            d, m = self.net(s["luma"])
            s["d"].copy_(d)
            s["m"].copy_(m)
        return g

    def deactivate(self) -> None:
        self._shapes.clear()
        self.net = None
