"""The GACN ONNX graph, written node by node from a numpy state dict.

Built directly with ``onnx.helper`` rather than traced from PyTorch, so that the runtime can
make it from the official checkpoint on machines without torch, and so every op is chosen
for speed: both sources through feature extraction as one batch, one box sum of
(G_A - G_B), separable box and Gaussian filters, shifts by Pad+Slice, BatchNorm scales
folded into the convolution before the ReLU where they are positive.

Variants (``VARIANTS``), all float32 with dynamic K, H, W:
- ``whole``: ``luma`` [K,1,H,W] (frame 0 is the reference A, frames 1.. are B) ->
  ``decision`` [K-1,1,H,W] (D of each pair (0, k), spec section 5) and ``mask`` [K-1,1,H,W]
  (M, section 6). The CSE means are taken over the whole input: exact for a whole frame.
- ``tile``: ``luma`` and ``cse`` [K,64,1,1] (the CSE scales s_0..s_3 of each frame, 16 each,
  computed over the whole frame by the ``sums`` passes) -> ``decision``, ``mask``: a window of
  a larger frame (engine.tiling), exact in its core.
- ``sums`` of block k (0..3): ``luma``, ``cse`` [K,16k,1,1] (s_0..s_{k-1}; absent for k = 0) and
  ``colmask`` [1,1,1,W] (1 on the columns to count, 0 elsewhere) -> ``sums`` [K,16,H], the row
  sums of block k's output u_k (before its CSE) over the masked columns; the runtime adds the
  rows of the tile's core in float64 to get the whole frame's means pass by pass.
Colour conversion (section 1), the blend and rounding (section 7) and stack selection
(section 8) stay outside: they are cheap elementwise work that the runtime does on the
uint8 planes it already holds.

Targets (``TARGETS``): the same function and I/O written for one runtime's kernels
(``TARGET_REWRITES``, measured in benchmarks/RESULTS.md); ``portable`` (exported files,
TensorRT) is the graph as first written. ``build_model(frames=K)`` fixes K, which lets each
frame's features run alone (OpenVINO's graphs).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.folding import fold_conv_block
from engine.spec import (ACTIVITY_RADIUS, CSE_COUNT, DECISION_BLOCKS, FEATURE_BLOCKS, GAUSS_RADIUS, GF_EPS, GF_RADIUS,
                         SHARPNESS, SSE_CHANNELS, THRESH_HIGH, THRESH_LOW, cse_keys, gaussian_taps, sse_key)
from engine.variants import DECISION_SCOPE

OPSET = 17  # ReduceMean takes axes as an attribute up to opset 17
GRAPH_VERSION = "2"
VARIANTS = ("whole", "tile", "sums")
# The same computation written for each runtime's kernels (GacnGraph documents each rewrite;
# each was kept because it measured faster on that runtime, benchmarks/RESULTS.md); same I/O.
REWRITES = ("diff_first", "gate_rows", "scaled_taps", "vertical_first")
TARGET_REWRITES = {
    "portable": frozenset(),                      # exported files, TensorRT: the graph as first written
    # ONNX Runtime runs the portable graph, so that an exported file and the built graph give
    # bit-identical maps (diff_first measured 5 % faster there)
    "onnxruntime": frozenset(),
    "openvino": frozenset({"diff_first", "gate_rows", "scaled_taps", "vertical_first"}),
}
TARGETS = tuple(TARGET_REWRITES)
CSE_BLOCKS = CSE_COUNT  # feature blocks with a channel SE (spec section 3)
CSE_CHANNELS = 16
SPEC_SECTIONS = "2,3,4,5,6"
PLUGIN_DOMAIN = "ai.onnx.contrib"   # where ONNX Runtime finds custom ops; TensorRT matches op_type


class _Builder:
    """Minimal node/initializer bookkeeping with unique names."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0
        self.scope = ""  # prefix of the node names being emitted (DECISION_SCOPE: see GacnGraph.decision_logits)

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, value, hint="c", dtype=np.float32) -> str:
        n = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), n))
        return n

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, n_out: int = 1, domain: str = "", **attrs):
        outs = [self.name(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.scope + self.name(op_type), domain=domain, **attrs))
        return outs[0] if n_out == 1 else outs


class GacnGraph:
    """Emits GACN into a ``_Builder``; ``plugins`` swaps four steps for the custom nodes of
    libgacn_plugins.so (the feature convolutions with their CSE, the activity, the spatial
    gates, the boundary step).

    ``fp16`` (plugin graph only) runs the decision path (spec section 5) in float16. Feature
    extraction and the activity step stay float32: the activity multiplies feature differences
    by 1000 before its sigmoid, and float16 features move 0.7-1.6 % of the decision map on flat
    images against the golden outputs, while a float16 decision path moves < 0.01 %.

    ``rewrites`` (``REWRITES``) write the same function for a runtime's kernels:
    - ``diff_first``: the activity's A - B difference before the horizontal box pass (half
      the box work; the box sum is linear).
    - ``gate_rows``: the 7x7 C->1 gate as 1x7 C->7 then 7x1 7->1 (else 7x1 then 1x7).
    - ``scaled_taps`` (per-frame graphs): each part's CSE scale s in the activity's difference
      taps, (s u(j-1) - s u)^2 = s^2 G, so that the pair's difference is one Sub and no pass
      multiplies the planes by s^2.
    - ``vertical_first`` (per-frame graphs): the activity's box sum as the vertical pass, then
      the horizontal one with the 1000x sharpness (OpenVINO: -3 % of a 1-thread run).
    With the frame count fixed (``build_model(frames=K)``, OpenVINO's graphs), each frame's
    features run alone (frame_parts): no batch slicing, per-part convolutions instead of copied
    concatenations, and the CSE scales folded into weights.
    """

    def __init__(self, params: dict[str, np.ndarray], plugins: bool = False, fp16: bool = False,
                 rewrites: frozenset = frozenset(), float64_means: bool = True, feature_algo: int = 1):
        if fp16 and not plugins:
            raise ValueError("float16 is for the TensorRT plugin graph; the portable graph is float32")
        unknown = set(rewrites) - set(REWRITES)
        if unknown:
            raise ValueError(f"unknown graph rewrites {sorted(unknown)}; expected some of {REWRITES}")
        if feature_algo not in (0, 1):
            raise ValueError(f"feature_algo must be 0 (FP32 FMA) or 1 (3xTF32 tensor cores), not {feature_algo!r}")
        self.p, self.plugins, self.b = params, plugins, _Builder()
        self.rw = frozenset(rewrites)
        self.float64_means = float64_means
        self.wtype = np.float16 if fp16 else np.float32  # the decision path's type
        self.feature_algo = feature_algo  # GacnFeatureConv's kernel (plugin graph)
        self.scales = None  # plugin graph: the CSE scales [K, 64] beside the unscaled features
        self.value_info: list[onnx.ValueInfoProto] = []

    def declare(self, name: str, dtype: np.dtype, shape: list) -> str:
        """Type a custom node's output so checkers and shape inference see through it."""
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        self.value_info.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    # -- building blocks (spec section 2) --------------------------------------------------
    def conv(self, x, w, bias=None, pad=(0, 0, 0, 0), group=1, hint="conv", dtype=None):
        dtype = dtype or self.wtype
        ins = [x, self.b.const(w, "w", dtype)] + ([self.b.const(bias, "b", dtype)] if bias is not None else [])
        return self.b.op("Conv", ins, hint, kernel_shape=list(w.shape[2:]), pads=list(pad), group=group)

    def conv_block_raw(self, x, blk, dtype=None):
        """The block's conv with positive BatchNorm scales folded in; returns (y, rest, shift)."""
        w, bias, rest, shift = fold_conv_block(self.p, blk)
        return self.conv(x, w, bias, pad=(1, 1, 1, 1), hint=blk, dtype=dtype), rest, shift

    def conv_block(self, x, blk, dtype=None):
        """Feature-extraction block (always float32 here: see the class docstring)."""
        y, rest, shift = self.conv_block_raw(x, blk, dtype)
        y = self.b.op("Relu", [y])
        if not np.all(rest == 1.0):
            y = self.b.op("Mul", [y, self.b.const(rest.reshape(-1, 1, 1), "s")])
        return self.b.op("Add", [y, self.b.const(shift.reshape(-1, 1, 1), "t", dtype or self.wtype)], f"{blk}_out")

    def channel_se(self, x, i):
        # The mean in float64: this scale multiplies every feature and the activity step
        # amplifies 1000x. ONNX Runtime's float32 means (GlobalAveragePool, or ReduceMean over W
        # then H) move M by 2.5e-4 on the flat clock pair (p99.9 against the golden maps; 8e-5
        # in float64) for 1.5 % more time. TensorRT has no float64: there, W then H in float32.
        b, f32 = self.b, np.float32
        if self.float64_means:
            s = b.op("Cast", [b.op("ReduceMean", [b.op("Cast", [x], to=TensorProto.DOUBLE)], axes=[2, 3])],
                     to=TensorProto.FLOAT)
        else:
            s = b.op("ReduceMean", [b.op("ReduceMean", [x], axes=[3])], axes=[2])
        fc1, fc2 = (self.p[k] for k in cse_keys(i))
        s = b.op("Relu", [self.conv(s, fc1[:, :, None, None], dtype=f32)])
        s = self.sigmoid_exact(self.conv(s, fc2[:, :, None, None], dtype=f32))
        return self.b.op("Mul", [x, s], f"cse{i}")

    def sigmoid_exact(self, x):
        """1 / (1 + exp(-x)): ONNX Runtime's Sigmoid is a polynomial off by up to 1.7e-7."""
        b = self.b
        return b.op("Reciprocal", [b.op("Add", [b.op("Exp", [b.op("Neg", [x])]), b.const(1.0)])])

    def spatial_se(self, x, i):
        """x * sigmoid(conv7x7(x; C -> 1)).

        A convolution with one output channel wastes 15/16 of ONNX Runtime's blocked (NCHWc)
        kernels, so the 7x7 C->1 filter runs as a 7x1 C->7 pass (one output per kernel
        column) followed by a 1x7 7->1 pass that adds the columns: 3.5x faster, same sum.
        (OpenVINO: the plain 7x7 C->1 convolution measured 1.5x slower for the whole network.)
        """
        w = self.p[sse_key(i)][0].astype(np.float32)          # [C, 7, 7]
        c = w.shape[0]
        if c == 1:
            logits = self.conv(x, w[None], pad=(3, 3, 3, 3))
        elif "gate_rows" in self.rw:
            rows = np.ascontiguousarray(w.transpose(1, 0, 2)[:, :, None, :])  # [7 (row), C, 1, 7 (col)]
            pick = np.eye(7, dtype=np.float32)[None, :, :, None]              # [1, 7, 7, 1]
            logits = self.conv(self.conv(x, rows, pad=(0, 3, 0, 3), hint="sse_rows"), pick, pad=(3, 0, 3, 0))
        else:
            cols = np.ascontiguousarray(w.transpose(2, 0, 1)[..., None])      # [7 (col), C, 7 (row), 1]
            pick = np.eye(7, dtype=np.float32)[None, :, None, :]              # [1, 7, 1, 7]
            logits = self.conv(self.conv(x, cols, pad=(3, 0, 3, 0), hint="sse_cols"), pick, pad=(0, 3, 0, 3))
        return self.b.op("Mul", [x, self.b.op("Sigmoid", [logits])], f"sse{i}")

    def box_sum(self, x, channels: int, radius: int):
        """Zero-padded (2r+1)^2 window sum per channel, as two depthwise 1-D convolutions."""
        k = 2 * radius + 1
        ones = np.ones((channels, 1, 1, k), np.float32)
        x = self.conv(x, ones, pad=(0, radius, 0, radius), group=channels, hint="boxh")
        return self.conv(x, ones.transpose(0, 1, 3, 2), pad=(radius, 0, radius, 0), group=channels, hint="boxv")

    def slice(self, x, start, end, axis):
        b = self.b
        return b.op("Slice", [x, b.const([start], "st", np.int64), b.const([end], "en", np.int64),
                              b.const([axis], "ax", np.int64)])

    # -- the network ---------------------------------------------------------------------------
    def features(self, y, cse=None, until=None):
        """Spec section 3, always float32 (see the class docstring): the four 16-channel parts
        f0..f3 of F.

        ``cse``: the name of an input holding every frame's CSE scales [K,16*i,1,1] in place of
        the in-graph means (tiled execution). ``until`` = k stops at block k's output u_k, before
        its CSE (the ``sums`` variant), and returns it. The plugin graph returns one part, the
        four blocks' unscaled outputs (features_plugin)."""
        if self.plugins:
            return [self.features_plugin(y, cse)]
        blocks, f32, b = FEATURE_BLOCKS, np.float32, self.b
        parts: list[str] = []
        for i, blk in enumerate(blocks):
            u = self.conv_block(parts[0] if i == 1 else self.concat(parts) if i else y, blk, f32)
            if i == until:
                return u
            if cse is None:
                f = self.channel_se(u, i)
            else:
                scale = self.slice(cse, CSE_CHANNELS * i, CSE_CHANNELS * (i + 1), 1)
                f = b.op("Mul", [u, scale], f"cse{i}")
            parts.append(f)
        return parts

    def features_plugin(self, y, cse=None):
        """Spec section 3 as four GacnFeatureConv nodes (kernel ABI 3): each block reads the UNSCALED
        outputs of the earlier blocks with their CSE scales as an input (folded into its weights)
        and returns its own unscaled output u_k and scale s_k; no elementwise pass touches the
        feature maps. Returns U = concat(u_0..u_3) [K,64,H,W]; S = concat(s_0..s_3) [K,64] goes
        to ``self.scales`` for the activity. With ``cse`` (a tile: the whole frame's scales as an
        input [K,64,1,1]) the blocks read those scales and the ones the plugins compute over the
        window are left unused."""
        b, f32 = self.b, np.float32
        given = None if cse is None else b.op("Flatten", [cse], "cse_flat", axis=1)
        frames = self.slice(b.op("Shape", [y]), 0, 1, 0)
        shape = b.op("Concat", [frames, b.const([1], "one", np.int64)], axis=0)
        ones = b.op("ConstantOfShape", [shape], "ones", value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]))
        x, sc = y, ones  # block 0 reads the luma, unscaled
        for i, blk in enumerate(FEATURE_BLOCKS):
            w, bias, rest, shift = fold_conv_block(self.p, blk)
            fc1, fc2 = (self.p[k] for k in cse_keys(i))
            ins = [x, b.const(w, "w"), b.const(bias, "b"), b.const(np.stack([rest, shift]), "bn"),
                   b.const(fc1, "fc1"), b.const(fc2, "fc2"), sc]
            u, s = b.op("GacnFeatureConv", ins, f"u{i}", n_out=2, domain=PLUGIN_DOMAIN, algo=self.feature_algo,
                        plugin_version="1", plugin_namespace="")
            self.declare(u, f32, ["frames", 16, "height", "width"])
            self.declare(s, f32, ["frames", 16])
            x = u if i == 0 else b.op("Concat", [x, u], f"u0{i}", axis=1)
            if given is not None:
                sc = self.slice(given, 0, CSE_CHANNELS * (i + 1), 1)
            else:
                sc = s if i == 0 else b.op("Concat", [sc, s], f"s0{i}", axis=1)
        self.scales = sc
        return x

    # -- the network with the frame count fixed (``per_frame``) ---------------------------------------
    def frame_scales(self, cse: str, frames: int, channels: int) -> list[list[str]]:
        """The ``cse`` input [K,channels,1,1] as each frame's list of 16-channel scales, by Split
        (which OpenVINO keeps as it is: its Slices become fused VariadicSplits, which lose the
        bfloat16 runs' precision marks)."""
        b, parts = self.b, channels // CSE_CHANNELS
        per_frame = b.op("Split", [cse, b.const([1] * frames, "split", np.int64)], "cse_k", n_out=frames, axis=0)
        per_frame = [per_frame] if frames == 1 else per_frame
        return [[f] if parts == 1 else list(b.op("Split", [f, b.const([CSE_CHANNELS] * parts, "split", np.int64)],
                                                "cse_i", n_out=parts, axis=1)) for f in per_frame]

    def frame_parts(self, y, cse=None, until=None):
        """Spec section 3 for one frame alone (y: its luma [1,1,H,W]): the unscaled parts u_i and
        their CSE scales s_i [1,16,1,1], computed, or given (``cse``: the frame's list from
        frame_scales). The scales never multiply the features: they scale the
        weights of the convolutions that read them and the activity's squared differences
        (conv(s * u, W) = conv(u, W * s); G(s * u) = s^2 G(u)), which saves a pass over every
        feature plane. ``until`` returns block ``until``'s u alone."""
        f32, b = np.float32, self.b
        us, ss = [], []
        for i, blk in enumerate(FEATURE_BLOCKS):
            if i == 0:
                u = self.conv_block(y, blk, f32)
            else:
                w, bias, rest, shift = fold_conv_block(self.p, blk)
                acc = None
                for j, (uj, sj) in enumerate(zip(us, ss)):
                    wj = self.shared(f"{blk}.w{j}", w[:, CSE_CHANNELS * j:CSE_CHANNELS * (j + 1)])
                    ins = [uj, b.op("Mul", [wj, sj], "wscaled")] + ([self.shared(f"{blk}.b", bias)] if j == 0 else [])
                    c = b.op("Conv", ins, blk, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
                    acc = c if acc is None else b.op("Add", [acc, c])
                u = b.op("Relu", [acc])
                if not np.all(rest == 1.0):
                    u = b.op("Mul", [u, self.shared(f"{blk}.rest", rest.reshape(-1, 1, 1))])
                u = b.op("Add", [u, self.shared(f"{blk}.shift", shift.reshape(-1, 1, 1))], f"{blk}_out")
            if i == until:
                return u
            us.append(u)
            ss.append(self.cse_scale(u, i) if cse is None else cse[i])
        return us, ss

    def shared(self, key: str, value) -> str:
        """One initializer per key, shared by every frame's nodes."""
        names = self.__dict__.setdefault("_shared", {})
        if key not in names:
            names[key] = self.b.const(value, "w")
        return names[key]

    def cse_scale(self, u, i):
        """s_i [1,16,1,1] of block i's output u (the channel SE without its multiply)."""
        b = self.b
        # Written as OpenVINO runs it (one reduction over H, W; the sigmoid's negation in fc2's
        # weights, which is exact), so that no node here is replaced by a fused one that loses
        # its precision mark (engine/backends/openvino_bf16.py)
        m = b.op("ReduceMean", [u], axes=[2, 3])
        k1, k2 = cse_keys(i)
        fc1 = self.shared(f"se_{i}.fc1", self.p[k1][:, :, None, None])
        neg_fc2 = self.shared(f"se_{i}.-fc2", -self.p[k2][:, :, None, None])
        h = b.op("Relu", [b.op("Conv", [m, fc1], "fc1", kernel_shape=[1, 1])])
        neg_logits = b.op("Conv", [h, neg_fc2], "fc2", kernel_shape=[1, 1])
        return b.op("Reciprocal", [b.op("Add", [b.op("Exp", [neg_logits]), b.const(1.0)])])

    def frame_grads(self, us, ss=None):
        """G = (u(j-1) - u)^2 + (u(i-1) - u)^2 of each unscaled part (spec section 4); with the
        parts' scales ``ss`` (``scaled_taps``), s^2 G, the scale in the difference taps."""
        taps = np.tile(np.array([1, -1], np.float32), (CSE_CHANNELS, 1, 1, 1))  # [16, 1, 1, 2]
        wx, wy, two = self.shared("dx", taps), self.shared("dy", taps.transpose(0, 1, 3, 2)), self.shared("two", 2.0)
        out = []
        for i, u in enumerate(us):
            if ss is not None:
                s = self.b.op("Reshape", [ss[i], self.b.const([CSE_CHANNELS, 1, 1, 1], "shape", np.int64)])
                wx, wy = self.b.op("Mul", [self.shared("dx", taps), s]), self.b.op("Mul", [self.shared("dy", taps.transpose(0, 1, 3, 2)), s])
            dx = self.b.op("Conv", [u, wx], "dx", kernel_shape=[1, 2], pads=[0, 1, 0, 0], group=CSE_CHANNELS)
            dy = self.b.op("Conv", [u, wy], "dy", kernel_shape=[2, 1], pads=[1, 0, 0, 0], group=CSE_CHANNELS)
            # Pow(x, 2) rather than x * x: OpenVINO fuses it into the depthwise convolution
            out.append(self.b.op("Add", [self.b.op("Pow", [dx, two]), self.b.op("Pow", [dy, two])], "g"))
        return out

    def pair_activity(self, ga, sa, gb, sb):
        """Bm [1,64,H,W] of one pair from the parts' G and scales: the box sum of
        s_A^2 G_A - s_B^2 G_B, horizontal then vertical with the 1000x sharpness (or the other
        way round: vertical_first), then a sigmoid."""
        b = self.b
        out = []
        for g0, s0, g1, s1 in zip(ga, sa, gb, sb):
            if "scaled_taps" in self.rw:
                diff = b.op("Sub", [g0, g1])
            else:
                diff = b.op("Sub", [b.op("Mul", [g0, b.op("Mul", [s0, s0])]), b.op("Mul", [g1, b.op("Mul", [s1, s1])])])
            first, second = ("boxv", "boxh") if "vertical_first" in self.rw else ("boxh", "boxv")
            rows = self.box_pass(diff, first, 1.0)
            sums = self.box_pass(rows, second, SHARPNESS)
            out.append(b.op("Sigmoid", [sums], "bm"))
        return self.concat(out, "bm")

    def box_pass(self, x, hint: str, tap: float):
        """One 16-channel pass of the activity's 11-tap window sum (boxh: along x, boxv: along y)."""
        k, r = 2 * ACTIVITY_RADIUS + 1, ACTIVITY_RADIUS
        shape, pads = ((1, k), [0, r, 0, r]) if hint == "boxh" else ((k, 1), [r, 0, r, 0])
        w = self.shared(f"{hint}{tap}", np.full((CSE_CHANNELS, 1, *shape), tap, np.float32))
        return self.b.op("Conv", [x, w], hint, kernel_shape=list(shape), pads=pads, group=CSE_CHANNELS)

    def concat(self, parts, hint="concat"):
        return self.b.op("Concat", list(parts), hint, axis=1)

    def activity(self, parts):
        """Spec section 4: Bm [K-1,64,H,W] from the parts of F."""
        if self.plugins:
            # unscaled features with their scales; in an FP16 graph Bm leaves the plugin as FP16
            # (out_half: the FP32 arithmetic's result rounded once, no Cast layer after it)
            (feats,) = parts
            fa, fb = self.slice(feats, 0, 1, 0), self.slice(feats, 1, 2 ** 62, 0)
            sa, sb = self.slice(self.scales, 0, 1, 0), self.slice(self.scales, 1, 2 ** 62, 0)
            half = int(self.wtype == np.float16)
            bm = self.b.op("GacnActivity", [fa, fb, sa, sb], "bm", domain=PLUGIN_DOMAIN, scaled=1, out_half=half,
                           plugin_version="1", plugin_namespace="")
            return self.declare(bm, self.wtype, ["pairs", 64, "height", "width"])
        return self.activity_of(self.concat(parts, "features"), CSE_CHANNELS * len(parts))

    def activity_of(self, feats, ch):
        """Bm of ``ch`` feature channels."""
        b = self.b
        # G = (F(j-1) - F)^2 + (F(i-1) - F)^2: each difference is one depthwise 2-tap conv.
        dx = self.conv(feats, np.tile(np.array([1, -1], np.float32).reshape(1, 1, 1, 2), (ch, 1, 1, 1)), pad=(0, 1, 0, 0), group=ch, hint="dx")
        dy = self.conv(feats, np.tile(np.array([1, -1], np.float32).reshape(1, 1, 2, 1), (ch, 1, 1, 1)), pad=(1, 0, 0, 0), group=ch, hint="dy")
        g = b.op("Add", [b.op("Mul", [dx, dx]), b.op("Mul", [dy, dy])])
        # The box sum is linear: a horizontal pass, the A - B difference (before it with
        # diff_first, else after it over all frames), then a vertical pass with the 1000x
        # sharpness folded into its taps.
        k = 2 * ACTIVITY_RADIUS + 1
        ones = np.ones((ch, 1, 1, k), np.float32)
        hpad = (0, ACTIVITY_RADIUS, 0, ACTIVITY_RADIUS)
        if "diff_first" in self.rw:
            diff = self.conv(b.op("Sub", [self.slice(g, 0, 1, 0), self.slice(g, 1, 2 ** 62, 0)]), ones, pad=hpad,
                             group=ch, hint="boxh")
        else:
            rows = self.conv(g, ones, pad=hpad, group=ch, hint="boxh")
            diff = b.op("Sub", [self.slice(rows, 0, 1, 0), self.slice(rows, 1, 2 ** 62, 0)])
        s = self.conv(diff, np.full((ch, 1, k, 1), SHARPNESS, np.float32), pad=(ACTIVITY_RADIUS, 0, ACTIVITY_RADIUS, 0),
                      group=ch, hint="boxv")
        return b.op("Sigmoid", [s], "bm")

    def gated(self, x, blk, sse_index):
        """ConvBlock followed by its spatial SE (spec section 5)."""
        if self.plugins:
            y, scale, shift = self.conv_block_raw(x, blk)
            return self.spatial_gate_plugin(y, sse_index, scale, shift)
        return self.spatial_se(self.conv_block(x, blk), sse_index)

    def spatial_gate_plugin(self, x, i, scale=None, shift=None):
        """GacnSpatialGate(x, weight[C,7,7], bn[2,C]; relu): u = bn(relu(x)), u * sigmoid(conv7x7(u)).

        The gate takes the preceding ConvBlock's ReLU and BatchNorm, so the block's output
        never makes a round trip through memory before the gate reads it.
        """
        w = self.p[sse_key(i)][0].astype(np.float32)
        c = w.shape[0]
        relu = scale is not None
        if not relu:
            scale, shift = np.ones(c), np.zeros(c)
        bn = np.stack([scale, shift]).astype(np.float32)
        y = self.b.op("GacnSpatialGate", [x, self.b.const(w, "gate_w"), self.b.const(bn, "gate_bn")], f"sse{i}",
                      domain=PLUGIN_DOMAIN, relu=int(relu), plugin_version="1", plugin_namespace="")
        return self.declare(y, self.wtype, ["pairs", c, "height", "width"])

    def decision_logits(self, bm):
        """Spec section 5: the gated convolutions from Bm to the logits; their node names start
        with DECISION_SCOPE (OpenVINO's bfloat16 decision path finds them by it)."""
        self.b.scope = DECISION_SCOPE
        try:
            x = self.spatial_gate_plugin(bm, 4) if self.plugins else self.spatial_se(bm, 4)
            for blk, i in zip(DECISION_BLOCKS, list(SSE_CHANNELS)[1:]):
                x = self.gated(x, blk, i)
        finally:
            self.b.scope = ""
        return x

    def boundary_refine(self, d4, ya, yb):
        b = self.b
        if self.plugins:
            d, m = b.op("GacnBoundaryRefine", [d4, ya, yb], "dm", n_out=2, domain=PLUGIN_DOMAIN,
                        plugin_version="1", plugin_namespace="")
            return tuple(self.declare(t, np.float32, ["pairs", 1, "height", "width"]) for t in (d, m))
        one = b.const(1.0)
        d = b.op("Sigmoid", [b.op("Mul", [d4, b.const(SHARPNESS)])], "d")
        g = gaussian_taps().astype(np.float32)
        r = GAUSS_RADIUS
        bl = self.conv(self.conv(d, g.reshape(1, 1, 1, -1), pad=(0, r, 0, r)), g.reshape(1, 1, -1, 1), pad=(r, 0, r, 0), hint="bl")
        m1 = b.op("Cast", [b.op("Greater", [bl, b.const(THRESH_HIGH)])], to=TensorProto.FLOAT)
        m2 = b.op("Cast", [b.op("Less", [bl, b.const(THRESH_LOW)])], to=TensorProto.FLOAT)
        m3 = b.op("Add", [b.op("Mul", [m1, bl]), b.op("Mul", [m2, b.op("Sub", [one, bl])])])
        # 2*(Bl*m3 + 0.5*(1-m3)) - 1 == m3 * (2*Bl - 1)
        two_bl_1 = b.op("Sub", [b.op("Mul", [bl, b.const(2.0)]), one])
        bd = b.op("Sub", [one, b.op("Abs", [b.op("Mul", [m3, two_bl_1])])], "bd")
        guide = b.op("Add", [b.op("Mul", [ya, d]), b.op("Mul", [b.op("Sub", [one, d]), yb])], "guide")
        # Guided filter: four box sums in one grouped pass, then two.
        count = self.box_sum(b.op("ConstantOfShape", [b.op("Shape", [ya])], value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])), 1, GF_RADIUS)
        inv_n = b.op("Reciprocal", [count])
        stacked = b.op("Concat", [guide, d, b.op("Mul", [guide, d]), b.op("Mul", [guide, guide])], axis=1)
        means = b.op("Mul", [self.box_sum(stacked, 4, GF_RADIUS), inv_n])
        mi, mp, mip, mii = b.op("Split", [means, b.const([1] * 4, "split", np.int64)], "means", n_out=4, axis=1)
        cov = b.op("Sub", [mip, b.op("Mul", [mi, mp])])
        var = b.op("Sub", [mii, b.op("Mul", [mi, mi])])
        a = b.op("Div", [cov, b.op("Add", [var, b.const(GF_EPS)])])
        bb = b.op("Sub", [mp, b.op("Mul", [a, mi])])
        mab = b.op("Mul", [self.box_sum(b.op("Concat", [a, bb], axis=1), 2, GF_RADIUS), inv_n])
        ma, mb = b.op("Split", [mab, b.const([1, 1], "split", np.int64)], "mab", n_out=2, axis=1)
        q = b.op("Add", [b.op("Mul", [ma, guide]), mb])
        m = b.op("Add", [b.op("Mul", [q, bd]), b.op("Mul", [d, b.op("Sub", [one, bd])])], "m")
        return d, m


def build_model(params: dict[str, np.ndarray], *, plugins: bool = False, fp16: bool = False,
                variant: str = "whole", block: int | None = None,
                metadata: dict[str, str] | None = None, target: str = "portable",
                rewrites=None, frames: int | None = None, feature_algo: int = 1) -> onnx.ModelProto:
    """One GACN graph variant (see the module docstring for I/O); ``block`` is the sums pass.

    ``target``: the runtime the graph is written for (``TARGETS``); every target computes the
    same function with the same inputs and outputs. ``rewrites`` overrides the target's set
    (``REWRITES``; A/B measurements). ``frames``: K fixed at build time, which lets each frame's
    features run alone and the CSE scales fold into weights (GacnGraph.frame_parts); None keeps
    K dynamic. ``feature_algo`` (plugin graph): GacnFeatureConv's kernel, 1 = 3xTF32 tensor cores
    (FP32-level accuracy), 0 = FP32 FMA. The CSE means are float64 where the runtime computes
    float64 (ONNX Runtime: the portable and onnxruntime targets without plugins), float32 for
    TensorRT and OpenVINO (neither computes float64)."""
    if frames is not None and (plugins or frames < 2):
        raise ValueError("a fixed frame count (>= 2) is for the portable graph")
    if target not in TARGET_REWRITES:
        raise ValueError(f"unknown graph target {target!r}; expected one of {TARGETS}")
    rewrites = TARGET_REWRITES[target] if rewrites is None else frozenset(rewrites)
    if variant not in VARIANTS:
        raise ValueError(f"unknown graph variant {variant!r}; expected one of {VARIANTS}")
    if (variant == "sums") != (block is not None) or (block is not None and not 0 <= block < CSE_BLOCKS):
        raise ValueError("the sums variant takes block = 0..3, the others none")
    g = GacnGraph(params, plugins=plugins and variant != "sums", fp16=fp16 and variant != "sums", rewrites=rewrites,
                  float64_means=not plugins and target != "openvino", feature_algo=feature_algo)
    b = g.b
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("luma", f32, ["frames", 1, "height", "width"])]
    cse_channels = CSE_CHANNELS * (CSE_BLOCKS if variant == "tile" else block or 0)
    cse = None
    if cse_channels:
        cse = "cse"
        inputs.append(helper.make_tensor_value_info(cse, f32, ["frames", cse_channels, 1, 1]))
    if frames is not None:
        inputs[0] = helper.make_tensor_value_info("luma", f32, [frames, 1, "height", "width"])
        if cse:
            inputs[1] = helper.make_tensor_value_info(cse, f32, [frames, cse_channels, 1, 1])
        ys = b.op("Split", ["luma", b.const([1] * frames, "split", np.int64)], "y", n_out=frames, axis=0)
        ys = [ys] if frames == 1 else list(ys)
        scales = g.frame_scales(cse, frames, cse_channels) if cse else [None] * frames
    if variant == "sums" and frames is not None:
        inputs.append(helper.make_tensor_value_info("colmask", f32, [1, 1, 1, "width"]))
        rows = [b.op("ReduceSum", [b.op("Mul", [g.frame_parts(y, scales[k], until=block), "colmask"]),
                                   b.const([3], "axes", np.int64)], keepdims=0) for k, y in enumerate(ys)]
        b.nodes.append(helper.make_node("Concat", rows, ["sums"], name="out_sums", axis=0))
        outputs = [helper.make_tensor_value_info("sums", f32, [frames, CSE_CHANNELS, "height"])]
    elif frames is not None:
        feats = [g.frame_parts(y, scales[k]) for k, y in enumerate(ys)]
        grads = [g.frame_grads(us, ss if "scaled_taps" in g.rw else None) for us, ss in feats]
        bms = [g.pair_activity(grads[0], feats[0][1], grads[k], feats[k][1]) for k in range(1, frames)]
        d4 = g.decision_logits(bms[0] if frames == 2 else b.op("Concat", bms, "bm", axis=0))
        yb = ys[1] if frames == 2 else b.op("Concat", ys[1:], "yb", axis=0)
        d, m = g.boundary_refine(d4, ys[0], yb)
        b.nodes.append(helper.make_node("Identity", [d], ["decision"], name="out_decision"))
        b.nodes.append(helper.make_node("Identity", [m], ["mask"], name="out_mask"))
        outputs = [helper.make_tensor_value_info(n, f32, [frames - 1, 1, "height", "width"]) for n in ("decision", "mask")]
    elif variant == "sums":
        inputs.append(helper.make_tensor_value_info("colmask", f32, [1, 1, 1, "width"]))
        u = b.op("Mul", [g.features("luma", cse, until=block), "colmask"])
        axes = b.const([3], "axes", np.int64)
        if g.float64_means:  # row sums in float64, rounded once (the host adds the rows in float64)
            sums = b.op("Cast", [b.op("ReduceSum", [b.op("Cast", [u], to=TensorProto.DOUBLE), axes], keepdims=0)],
                        to=TensorProto.FLOAT)
        else:
            sums = b.op("ReduceSum", [u, axes], keepdims=0)
        b.nodes.append(helper.make_node("Identity", [sums], ["sums"], name="out_sums"))
        outputs = [helper.make_tensor_value_info("sums", f32, ["frames", CSE_CHANNELS, "height"])]
    else:
        bm = g.activity(g.features("luma", cse))
        d4 = g.decision_logits(bm)
        ya, yb = g.slice("luma", 0, 1, 0), g.slice("luma", 1, 2 ** 62, 0)
        d, m = g.boundary_refine(d4, ya, yb)
        b.nodes.append(helper.make_node("Identity", [d], ["decision"], name="out_decision"))
        b.nodes.append(helper.make_node("Identity", [m], ["mask"], name="out_mask"))
        outputs = [helper.make_tensor_value_info(n, f32, ["pairs", 1, "height", "width"]) for n in ("decision", "mask")]
    graph = helper.make_graph(b.nodes, "gacn", inputs, outputs, initializer=b.inits, value_info=g.value_info)
    opsets = [helper.make_opsetid("", OPSET)]
    if g.plugins:
        opsets.append(helper.make_opsetid(PLUGIN_DOMAIN, 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="gacn-engine", producer_version=GRAPH_VERSION)
    model.ir_version = 8
    io = {"whole": "luma[K,1,H,W] float32 (frame 0 = A) -> decision, mask [K-1,1,H,W]",
          "tile": "luma[K,1,H,W], cse[K,64,1,1] -> decision, mask [K-1,1,H,W]",
          "sums": f"luma[K,1,H,W], cse[K,{cse_channels},1,1], colmask[1,1,1,W] -> sums[K,16,H] of block {block}"}
    meta = {"gacn.graph_version": GRAPH_VERSION, "gacn.spec_sections": SPEC_SECTIONS, "gacn.io": io[variant],
            "gacn.variant": variant if block is None else f"sums{block}",
            "gacn.plugins": "1" if g.plugins else "0", "gacn.target": target,
            "gacn.rewrites": ",".join(sorted(rewrites)) if not g.plugins else "", "gacn.precision": "fp16" if g.wtype == np.float16 else "fp32",
            **(metadata or {})}
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=str(v))
    return model
