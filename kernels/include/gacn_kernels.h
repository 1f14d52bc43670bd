/*
 * gacn_kernels.h: C ABI of GACN's custom operations (spec sections 1, 4, 2/5, 6, 7, 8).
 *
 * One header for two libraries with identical symbols:
 *   libgacn_kernels.so      CUDA kernels; pointers are device pointers, work is enqueued on
 *                           `stream` (a cudaStream_t; NULL = legacy default stream).
 *   libgacn_kernels_cpu.so  the same arithmetic on the host (same __host__ __device__
 *                           functions); pointers are host pointers, `stream` is ignored.
 * Launchers never allocate and never synchronise, so they can be captured in CUDA graphs.
 * All return 0 on success, GACN_ERR_INVALID (-1) for bad arguments, or a cudaError_t.
 *
 * Tensors are dense 4-D [N, C, H, W] in `layout` order (GACN_NCHW or GACN_NHWC) with
 * `dtype` elements (GACN_F32 or GACN_F16); arithmetic is always float32 (luma: float64).
 * A batch argument `na` of 1 broadcasts the reference frame A over all N pairs.
 */
#ifndef GACN_KERNELS_H
#define GACN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define GACN_API __declspec(dllexport)
#else
#define GACN_API __attribute__((visibility("default")))
#endif

typedef void* gacn_stream_t;

enum { GACN_F32 = 0, GACN_F16 = 1 };
enum { GACN_NCHW = 0, GACN_NHWC = 1 };
enum { GACN_OK = 0, GACN_ERR_INVALID = -1 };

/* Spec section 4. fa [na,C,H,W], fb [N,C,H,W] -> bm [N,C,H,W]:
 * bm = sigmoid(1000 * boxsum11x11(G(fa) - G(fb))), G(i,j) = (F(i,j-1)-F(i,j))^2 + (F(i-1,j)-F(i,j))^2,
 * zero outside the image for both the neighbours and the box. */
GACN_API int gacn_activity(const void* fa, const void* fb, void* bm, int n, int na, int c, int h, int w,
                           int dtype, int layout, gacn_stream_t stream);

/* Spec sections 2 (SSE) and 5, with the preceding ConvBlock's ReLU and BatchNorm fused in.
 * x [N,C,H,W] -> y [N,C,H,W] (y must not alias x):
 *   u = relu ? max(x, 0) : x;  u = bn ? u * bn[c] + bn[C + c] : u;   (bn: [2,C] float32 scale, shift)
 *   y = u * sigmoid(sum_{c,dy,dx} weight[c,dy,dx] * u(c, i+dy-3, j+dx-3))   (u = 0 outside)
 * weight [C,7,7] float32 and bn live where the data lives (device for CUDA, host for CPU). */
GACN_API int gacn_spatial_gate(const void* x, const float* weight, const float* bn, int relu, void* y,
                               int n, int c, int h, int w, int dtype, int layout, gacn_stream_t stream);

/* Spec sections 5 (last line) and 6. d4 [N,1,H,W] of `dtype`; ya [na,1,H,W], yb [N,1,H,W] float32
 * -> d, m [N,1,H,W] float32 (the mask feeds the blend, so it stays float32 in FP16 engines):
 * D = sigmoid(1000 d4); Gaussian 9x9 threshold smoothing; guided filter (r 3, eps 0.1) of D
 * guided by T = ya*D + (1-D)*yb with window means clipped to the image; M = Gf*bd + D*(1-bd).
 * Requires H, W >= 8 (returns GACN_ERR_INVALID otherwise). Single channel: layout-free. */
GACN_API int gacn_boundary_refine(const void* d4, const float* ya, const float* yb, float* d, float* m,
                                  int n, int na, int h, int w, int dtype, gacn_stream_t stream);

/* Spec section 1. Interleaved images [N,H,W,channels] (channels 1 or 3, RGB order) of
 * `bits` 8 (uint8) or 16 (uint16) -> luma [N,1,H,W] of `dtype`:
 * gray: (float)v / (float)max (one correctly rounded float32 division);
 * RGB: with s = 1.0/max in float64, ((R*s)*0.2125 + (G*s)*0.7154) + (B*s)*0.0721 in float64, in that
 * order and without FMA contraction (__dmul_rn/__dadd_rn), rounded to float once (skimage's rgb2gray). */
GACN_API int gacn_luma(const void* img, void* luma, int n, int h, int w, int channels, int bits,
                       int dtype, gacn_stream_t stream);

/* Spec section 7. a [na,H,W,ch], b [N,H,W,ch] (same bits), m [N,1,H,W] float32 -> out [N,H,W,ch]:
 * out = rint(clamp(m*A + (1-m)*B, 0, 1) * max) with A = float(a)/max in float32. */
GACN_API int gacn_blend(const void* a, const void* b, const float* m, void* out, int n, int na, int h, int w,
                        int channels, int bits, gacn_stream_t stream);

/* Spec section 8, decision calibration in constant memory. Per pixel, with V_0 = M_1,
 * V_1 = 1 - M_1, V_i = V_0 / (M_i + 1e-4) * (1 - M_i) (float32, in that order), keep the running
 * maximum `best`, its frame `index` (first on ties) and that frame's colour in `out`.
 * first: m1 [H,W] float32, frames 0 and 1 [H,W,ch] -> initialises v0, best, index, out.
 * next:  m_i and frame i (i >= 2) -> updates best, index, out. */
GACN_API int gacn_stack_first(const float* m1, const void* frame0, const void* frame1, float* v0, float* best,
                              int32_t* index, void* out, int h, int w, int channels, int bits, gacn_stream_t stream);
GACN_API int gacn_stack_next(const float* mi, const void* frame, int i, const float* v0, float* best,
                             int32_t* index, void* out, int h, int w, int channels, int bits, gacn_stream_t stream);

/* Spec sections 2-3, a feature ConvBlock (ABI 2): Conv2d 3x3 cin -> 16 (zero padding 1, bias),
 * ReLU, then the inference BatchNorm as an affine map, all float32 (FMA, no TF32), NCHW:
 *   c = conv3x3(x, weight) + bias;  u = max(c, 0);  u = bn ? u * bn[k] + bn[16 + k] : u;  y = u
 * x: channels 0..cin-1 of image b at x + b * x_batch_stride (channel planes H*W apart: the
 * channel prefix of a wider [N,C,H,W] buffer); y: 16 channels at y + b * y_batch_stride (a
 * channel slice of a wider buffer). Strides are in elements, x_batch_stride >= cin*H*W,
 * y_batch_stride >= 16*H*W; y must not overlap the channels read from x.
 * weight [16,cin,3,3], bias [16], bn [2,16] (scale, shift) or NULL, all float32 where the data lives.
 * partial_sums (or NULL): [N, blocks, 16] floats, blocks = gacn_conv3x3_c16_partials(h, w); block
 * b writes the sum of u over its pixels for each output channel, in a fixed order (no atomics,
 * deterministic): sum over blocks = sum of u over the image (for the CSE mean).
 * Fast paths: W % 4 == 0, x and y 16-byte aligned, both strides multiples of 4; any cin >= 1. */
GACN_API int gacn_conv3x3_c16(const float* x, int cin, const float* weight, const float* bias, const float* bn,
                              float* y, float* partial_sums, int n, int h, int w, long long x_batch_stride,
                              long long y_batch_stride, gacn_stream_t stream);
/* Number of blocks (partial sums per image and channel) of gacn_conv3x3_c16 for an h x w image
 * (0 if h or w < 1). */
GACN_API size_t gacn_conv3x3_c16_partials(int h, int w);

/* ---- ABI 3: the feature path without elementwise passes ---------------------------------------
 * The CSE scale of feature block k is never multiplied into the feature buffer: the buffer holds
 * the UNSCALED block outputs u_k, every consumer applies the scales itself (the next blocks' conv
 * folds them into its weights per input channel, the activity into its squared gradients), and
 * the scales s [N, 4, 16] are either computed from the conv's partial sums (gacn_cse_scale) or
 * handed in (tiled execution). See kernels/README.md, "The feature path (ABI 3)". */

/* Algorithms of gacn_feature_conv. */
enum { GACN_CONV_FFMA = 0, GACN_CONV_3XTF32 = 1 };

/* A feature ConvBlock on an unscaled input: gacn_conv3x3_c16 with the input's per-channel scale
 * folded into the weights, w'[k][c][t] = fl(weight[k][c][t] * in_scale[b][c]) (in_scale NULL:
 * w' = weight), then c = conv3x3(x, w') + bias, u = max(c, 0), u = bn ? u*bn[k] + bn[16+k] : u.
 * in_scale: image b's cin scales at in_scale + b * scale_batch_stride (float32, where the data
 * lives). Strides, slices, partial sums (same block tiling: gacn_conv3x3_c16_partials) and the
 * fast-path conditions as gacn_conv3x3_c16.
 * algo GACN_CONV_FFMA: the FP32 FMA kernel of gacn_conv3x3_c16 (any GPU).
 * algo GACN_CONV_3XTF32: tensor cores (mma.sync m16n8k8 TF32, sm_80+) at FP32-level accuracy:
 * x = x_hi + x_lo and w' = w_hi + w_lo (each part rounded to TF32 with cvt.rna), the products
 * x_lo*w_hi + x_hi*w_lo + x_hi*w_hi accumulated in FP32 (error bound in kernels/README.md).
 * It needs cin >= 8 and a GPU with compute capability >= 8.0 and >= 101,888 bytes of shared
 * memory per block (A100, H100, H200, ...); otherwise the FFMA kernel runs (same results to FP32
 * rounding). Inputs must be finite. Any other algo: GACN_ERR_INVALID. */
GACN_API int gacn_feature_conv(const float* x, int cin, const float* in_scale, long long scale_batch_stride,
                               const float* weight, const float* bias, const float* bn, float* y, float* partial_sums,
                               int n, int h, int w, long long x_batch_stride, long long y_batch_stride, int algo,
                               gacn_stream_t stream);

/* Which kernel gacn_feature_conv runs for (cin, algo) on the current device: GACN_CONV_FFMA or
 * GACN_CONV_3XTF32 (the CPU library answers for its own twin: algo itself). */
GACN_API int gacn_feature_conv_algo(int cin, int algo);

/* The CSE scale (spec section 2) of one feature block from gacn_conv3x3_c16's partial sums
 * [N, blocks, 16]: mean = (sum over blocks, in float64, fixed order) / count, then in float64
 * s = sigmoid(fc2 @ relu(fc1 @ mean)), rounded to float32 once. fc1 [2,16], fc2 [16,2] float32.
 * Image b's 16 scales go to s + b * s_batch_stride (e.g. the [N, 4, 16] scale tensor's block slot). */
GACN_API int gacn_cse_scale(const float* partial_sums, int n, int blocks, long long count, const float* fc1,
                            const float* fc2, float* s, long long s_batch_stride, gacn_stream_t stream);

/* gacn_activity on unscaled features with per-channel scales, and with its own output type and
 * layout. F_A = scale_a[a] * fa (scale_a [na, C], NULL = 1), F_B = scale_b[b] * fb ([N, C]):
 * bm = sigmoid(1000 * boxsum11(G(F_A) - G(F_B))), where each G(F) is evaluated as
 * fl(G(f) * fl(s*s)) (G(s f) = s^2 G(f); the order keeps G's FP32 error relative to G itself; with
 * NULL scales the result is bit-identical to gacn_activity). fa, fb: in_dtype, in_layout;
 * bm: out_dtype, out_layout. out_layout == in_layout, or in NCHW -> out NHWC (the FP16 decision
 * path's channels-last input, written directly); NHWC -> NCHW is GACN_ERR_INVALID. */
GACN_API int gacn_activity_scaled(const void* fa, const void* fb, const float* scale_a, const float* scale_b,
                                  void* bm, int n, int na, int c, int h, int w, int in_dtype, int in_layout,
                                  int out_dtype, int out_layout, gacn_stream_t stream);

/* Library identity for checks: "cuda" or "cpu", and the ABI version (bumped on any change). */
GACN_API const char* gacn_backend(void);
GACN_API int gacn_abi_version(void);

#ifdef __cplusplus
}
#endif
#endif /* GACN_KERNELS_H */
