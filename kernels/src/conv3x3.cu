/*
 * conv3x3.cu: gacn_conv3x3_c16, the feature blocks' Conv2d 3x3 (cin -> 16, padding 1, bias)
 * + ReLU + BatchNorm in exact FP32 (FFMA, no TF32), with per-block channel sums for the CSE.
 *
 * Register-blocked direct convolution. A block of 256 threads computes a 16-row x 64-column
 * output tile for all 16 output channels; thread (ty, tx) owns the 4 pixels (ty, 4tx..4tx+3)
 * x 16 channels = 64 accumulators. Input channels are staged 4 at a time into two buffers
 * (cp.async on sm_80+: chunk i+1 loads while chunk i computes): the 18 x 72 halo tile of each
 * channel (image columns x0-4 .. x0+67, so that every 16-byte piece of a row is either wholly
 * inside or wholly outside the image when W % 4 == 0) and the chunk's
 * weights, transposed to [channel][tap][16 outputs] so that one LDS.128 broadcast gives 4
 * output channels' weight. Per input channel and thread: 3 rows x (LDS.32 + LDS.128 + LDS.32)
 * inputs, 36 LDS.128 weights, 576 FFMA (~90% of the loop's instructions; see kernels/README.md).
 * Accumulators start at the bias; products are summed in (channel, dy, dx) order with fmaf:
 * not the CPU library's order (which uses gacn_madd), so the two agree to FP32 rounding, not
 * bit for bit.
 */
#include "gacn_cuda.h"
#include "gacn_cp_async.h"

namespace {

constexpr int CV_K = GACN_CONV_COUT;          // 16 output channels
constexpr int CV_TW = GACN_CONV_TILE_W;       // 64 output columns per block
constexpr int CV_TH = GACN_CONV_TILE_H;       // 16 output rows per block
constexpr int CV_PX = 4;                      // output pixels per thread, along x
constexpr int CV_TX = CV_TW / CV_PX;          // 16 threads per output row
constexpr int CV_THREADS = CV_TX * CV_TH;     // 256
constexpr int CV_CK = 4;                      // input channels per staged chunk (two buffers)
constexpr int CV_ROWS = CV_TH + 2;            // 18 staged rows: y0-1 .. y0+16
constexpr int CV_LDX = CV_TW + 8;             // 72 staged columns: x0-4 .. x0+67 (tile column j = image x0-4+j)
constexpr int CV_PLANE = CV_ROWS * CV_LDX;    // floats per staged channel
constexpr int CV_PIECES = CV_LDX / 4;         // 16-byte pieces per staged row
constexpr int CV_TAPS = 9;
constexpr int CV_WCHUNK = CV_CK * CV_TAPS * CV_K;  // weights of one chunk: [channel][tap][k]

static_assert(CV_THREADS == 256, "launch bounds below");
static_assert(CV_K * CV_THREADS + CV_K * 16 <= 2 * CV_CK * CV_PLANE, "the reduction scratch fits over the input tiles");

__global__ __launch_bounds__(CV_THREADS, 2) void conv3x3_c16_kernel(
    const float* __restrict__ x, int cin, const float* __restrict__ in_scale, long long scale_batch_stride,
    const float* __restrict__ weight, const float* __restrict__ bias, const float* __restrict__ bn,
    float* __restrict__ y, float* __restrict__ partial_sums, int H, int W, long long x_batch_stride,
    long long y_batch_stride, int vec) {
    __shared__ __align__(16) float sIn[2][CV_CK * CV_PLANE];  // two chunk buffers
    __shared__ __align__(16) float sW[2][CV_WCHUNK];

    const int t = threadIdx.x, tx = t % CV_TX, ty = t / CV_TX;
    const int x0 = (int)blockIdx.x * CV_TW, y0 = (int)blockIdx.y * CV_TH, n = (int)blockIdx.z;
    const size_t plane = (size_t)H * W;
    const float* px = x + (size_t)n * (size_t)x_batch_stride;
    float* py = y + (size_t)n * (size_t)y_batch_stride;
    const float* scale = in_scale != nullptr ? in_scale + (size_t)n * (size_t)scale_batch_stride : nullptr;

    float acc[CV_K][CV_PX];
#pragma unroll
    for (int k = 0; k < CV_K; ++k) {
        const float b = bias[k];
#pragma unroll
        for (int p = 0; p < CV_PX; ++p) acc[k][p] = b;
    }

    // Per-thread staging slots, the same for every chunk (only the channel moves): the vector
    // path's 16-byte pieces e = t + 256 s (324 per channel) and the weights e = t + 256 s of a
    // chunk (576), as shared-memory and global offsets computed once.
    constexpr int VSLOTS = (CV_ROWS * CV_PIECES + CV_THREADS - 1) / CV_THREADS;  // 2
    constexpr int WSLOTS = (CV_WCHUNK + CV_THREADS - 1) / CV_THREADS;             // 3
    int v_s[VSLOTS];        // shared offset within a channel's tile, -1: no piece
    long long v_g[VSLOTS];  // global offset within a channel plane, -1: outside the image
#pragma unroll
    for (int i = 0; i < VSLOTS; ++i) {
        const int e = t + i * CV_THREADS, r = e / CV_PIECES, j = (e % CV_PIECES) * 4;
        const int yy = y0 - 1 + r, xx = x0 - 4 + j;
        v_s[i] = e < CV_ROWS * CV_PIECES ? r * CV_LDX + j : -1;
        v_g[i] = (yy >= 0 && yy < H && xx >= 0 && xx < W) ? (long long)yy * W + xx : -1;  // W % 4 == 0: whole piece
    }
    int w_s[WSLOTS], w_g[WSLOTS], w_kc[WSLOTS];
#pragma unroll
    for (int i = 0; i < WSLOTS; ++i) {
        const int e = t + i * CV_THREADS, kc = e / (CV_TAPS * CV_K), k = (e / CV_TAPS) % CV_K, tap = e % CV_TAPS;
        w_kc[i] = e < CV_WCHUNK ? kc : CV_CK;  // copied when w_kc < kn
        w_s[i] = (kc * CV_TAPS + tap) * CV_K + k;
        w_g[i] = (k * cin + kc) * CV_TAPS + tap;  // + c0 * 9
    }

    // Stages chunk c0 into buffer `buf`: weights as [kc][tap][k], the input tile zero outside
    // the image. Scalar staging writes only the columns the compute loop reads (3 .. 68).
    auto stage = [&](int c0, int buf) {
        const int kn = cin - c0 < CV_CK ? cin - c0 : CV_CK;
        float* sw = sW[buf];
        float* si = sIn[buf];
        // Weights: copied as they are, or folded with the input's per-channel scale on the way
        // (w' = fl(w * s); a plain load: three per thread and chunk).
#pragma unroll
        for (int i = 0; i < WSLOTS; ++i)
            if (w_kc[i] < kn) {
                const float* g = weight + (size_t)c0 * CV_TAPS + w_g[i];
                if (scale != nullptr)
                    sw[w_s[i]] = gacn_mul(*g, scale[c0 + w_kc[i]]);
                else
                    cv_copy4(sw + w_s[i], g, true);
            }
        if (vec) {
            const float* pc = px + (size_t)c0 * plane;
#pragma unroll 1
            for (int kc = 0; kc < kn; ++kc, pc += plane) {
#pragma unroll
                for (int i = 0; i < VSLOTS; ++i)
                    if (v_s[i] >= 0) cv_copy16(si + kc * CV_PLANE + v_s[i], v_g[i] >= 0 ? pc + v_g[i] : px, v_g[i] >= 0);
            }
        } else {
            constexpr int COLS = CV_TW + 2;  // tile columns 3 .. 68 = image x0-1 .. x0+64
#pragma unroll 1
            for (int e = t; e < kn * CV_ROWS * COLS; e += CV_THREADS) {
                const int kc = e / (CV_ROWS * COLS), r = (e / COLS) % CV_ROWS, j = e % COLS;
                const int yy = y0 - 1 + r, xx = x0 - 1 + j;
                const bool inside = yy >= 0 && yy < H && xx >= 0 && xx < W;
                cv_copy4(si + kc * CV_PLANE + r * CV_LDX + j + 3,
                         inside ? px + (size_t)(c0 + kc) * plane + (size_t)yy * W + xx : px, inside);
            }
        }
        cv_commit();
    };

    // Double buffering: chunk i+1's copies are in flight while chunk i is computed.
    stage(0, 0);
    for (int c0 = 0, buf = 0; c0 < cin; c0 += CV_CK, buf ^= 1) {
        const int kn = cin - c0 < CV_CK ? cin - c0 : CV_CK;
        const bool next = c0 + CV_CK < cin;
        if (next) stage(c0 + CV_CK, buf ^ 1);
        cv_wait(next ? 1 : 0);
        __syncthreads();

        // Each thread's inputs of one staged row: columns 4tx+3 .. 4tx+8.
        const float* sx = sIn[buf] + ty * CV_LDX + CV_PX * tx + 3;
        const float4* sw4 = reinterpret_cast<const float4*>(sW[buf]);
#pragma unroll 1
        for (int kc = 0; kc < kn; ++kc) {
            const float* s = sx + kc * CV_PLANE;
            const float4* w4 = sw4 + kc * CV_TAPS * (CV_K / 4);
#pragma unroll
            for (int dy = 0; dy < 3; ++dy) {
                float v[CV_PX + 2];
                v[0] = s[dy * CV_LDX];
                const float4 q = *reinterpret_cast<const float4*>(s + dy * CV_LDX + 1);
                v[1] = q.x, v[2] = q.y, v[3] = q.z, v[4] = q.w;
                v[5] = s[dy * CV_LDX + 5];
#pragma unroll
                for (int dx = 0; dx < 3; ++dx) {
#pragma unroll
                    for (int kq = 0; kq < CV_K / 4; ++kq) {
                        const float4 wq = w4[(dy * 3 + dx) * (CV_K / 4) + kq];
                        const float wk[4] = {wq.x, wq.y, wq.z, wq.w};
#pragma unroll
                        for (int i = 0; i < 4; ++i)
#pragma unroll
                            for (int p = 0; p < CV_PX; ++p)
                                acc[4 * kq + i][p] = fmaf(wk[i], v[p + dx], acc[4 * kq + i][p]);
                    }
                }
            }
        }
        __syncthreads();  // buffer `buf` is staged again two chunks on
    }

    // Epilogue: u = relu(c) (* scale + shift), stored; per-thread sums of u over its pixels.
    const int yy = y0 + ty, xb = x0 + CV_PX * tx;
    const bool row_in = yy < H;
    const int has_bn = bn != nullptr;
    float sum[CV_K];
#pragma unroll
    for (int k = 0; k < CV_K; ++k) {
        const float sc = has_bn ? bn[k] : 1.0f, sh = has_bn ? bn[CV_K + k] : 0.0f;
        float u[CV_PX];
        float s = 0.0f;
#pragma unroll
        for (int p = 0; p < CV_PX; ++p) {
            u[p] = gacn_gate_input(acc[k][p], 1, has_bn, sc, sh);
            if (row_in && xb + p < W) s = gacn_add(s, u[p]);
        }
        sum[k] = s;
        if (row_in) {
            float* o = py + (size_t)k * plane + (size_t)yy * W + xb;
            if (vec) {
                if (xb < W) *reinterpret_cast<float4*>(o) = make_float4(u[0], u[1], u[2], u[3]);
            } else {
#pragma unroll
                for (int p = 0; p < CV_PX; ++p)
                    if (xb + p < W) o[p] = u[p];
            }
        }
    }

    if (partial_sums != nullptr) {  // block sums in a fixed order: deterministic
        float* red = &sIn[0][0];                 // [k][256 threads]
        float* red2 = red + CV_K * CV_THREADS;   // [k][16 groups]
#pragma unroll
        for (int k = 0; k < CV_K; ++k) red[k * CV_THREADS + t] = sum[k];
        __syncthreads();
        {
            const int k = t / 16, g = t % 16;
            float s = 0.0f;
            for (int i = 0; i < 16; ++i) s = gacn_add(s, red[k * CV_THREADS + g * 16 + i]);
            red2[k * 16 + g] = s;
        }
        __syncthreads();
        if (t < CV_K) {
            float s = 0.0f;
            for (int g = 0; g < 16; ++g) s = gacn_add(s, red2[t * 16 + g]);
            const size_t block = (size_t)blockIdx.y * gridDim.x + blockIdx.x;
            partial_sums[((size_t)n * gridDim.x * gridDim.y + block) * CV_K + t] = s;
        }
    }
}


/* gacn_cse_scale: one block of 256 threads per image. Thread (lane l = t / 16, channel k = t % 16)
 * adds blocks l, l + 16, l + 32, ... in increasing order in float64; channel k's 16 lane sums are
 * then added l = 0..15 (the CPU library spells out the same order). */
constexpr int CSE_THREADS = 256, CSE_LANES = CSE_THREADS / CV_K;

__global__ __launch_bounds__(CSE_THREADS) void cse_scale_kernel(const float* __restrict__ partial_sums, int blocks,
                                                                 long long count, const float* __restrict__ fc1,
                                                                 const float* __restrict__ fc2, float* __restrict__ s,
                                                                 long long s_batch_stride) {
    __shared__ double red[CSE_LANES][CV_K];
    __shared__ double mean[CV_K];
    const int t = threadIdx.x, k = t % CV_K, l = t / CV_K, n = (int)blockIdx.x;
    const float* p = partial_sums + (size_t)n * blocks * CV_K;
    double acc = 0.0;
    for (int b = l; b < blocks; b += CSE_LANES) acc = gacn_dadd(acc, (double)p[(size_t)b * CV_K + k]);
    red[l][k] = acc;
    __syncthreads();
    if (t < CV_K) {
        double sum = 0.0;
        for (int i = 0; i < CSE_LANES; ++i) sum = gacn_dadd(sum, red[i][t]);
        mean[t] = sum / (double)count;
    }
    __syncthreads();
    if (t < CV_K) {
        float* out = s + (size_t)n * (size_t)s_batch_stride;
        out[t] = gacn_cse_mlp(mean, fc1, fc2, t);
    }
}

}  // namespace

/* The tensor-core kernel (conv3x3_tc.cu). */
bool gacn_conv_tc_available();
int gacn_conv_tc_launch(const float* x, int cin, const float* in_scale, long long scale_batch_stride,
                        const float* weight, const float* bias, const float* bn, float* y, float* partial_sums, int n,
                        int h, int w, long long x_batch_stride, long long y_batch_stride, gacn_stream_t stream);

static int launch_ffma(const float* x, int cin, const float* in_scale, long long scale_batch_stride,
                       const float* weight, const float* bias, const float* bn, float* y, float* partial_sums, int n,
                       int h, int w, long long x_batch_stride, long long y_batch_stride, gacn_stream_t stream) {
    const int vec = w % 4 == 0 && gacn_aligned(x, 16) && gacn_aligned(y, 16) && x_batch_stride % 4 == 0 &&
                    y_batch_stride % 4 == 0;
    const dim3 grid(gacn_blocks(w, CV_TW), gacn_blocks(h, CV_TH), n);
    GACN_LAUNCH(conv3x3_c16_kernel, grid, dim3(CV_THREADS), stream)
    (x, cin, in_scale, scale_batch_stride, weight, bias, bn, y, partial_sums, h, w, x_batch_stride, y_batch_stride,
     vec);
    return (int)cudaGetLastError();
}

extern "C" {

GACN_API size_t gacn_conv3x3_c16_partials(int h, int w) {
    if (h < 1 || w < 1) return 0;
    return (size_t)gacn_blocks(w, CV_TW) * gacn_blocks(h, CV_TH);
}

GACN_API int gacn_conv3x3_c16(const float* x, int cin, const float* weight, const float* bias, const float* bn,
                              float* y, float* partial_sums, int n, int h, int w, long long x_batch_stride,
                              long long y_batch_stride, gacn_stream_t stream) {
    if (!gacn_check_conv3x3(x, cin, weight, bias, y, n, h, w, x_batch_stride, y_batch_stride)) return GACN_ERR_INVALID;
    return launch_ffma(x, cin, nullptr, 0, weight, bias, bn, y, partial_sums, n, h, w, x_batch_stride,
                       y_batch_stride, stream);
}

GACN_API int gacn_feature_conv_algo(int cin, int algo) {
    return gacn_feature_conv_uses_tc(cin, algo) && gacn_conv_tc_available() ? GACN_CONV_3XTF32 : GACN_CONV_FFMA;
}

GACN_API int gacn_feature_conv(const float* x, int cin, const float* in_scale, long long scale_batch_stride,
                               const float* weight, const float* bias, const float* bn, float* y, float* partial_sums,
                               int n, int h, int w, long long x_batch_stride, long long y_batch_stride, int algo,
                               gacn_stream_t stream) {
    if (!gacn_check_feature_conv(x, cin, weight, bias, y, n, h, w, x_batch_stride, y_batch_stride, algo))
        return GACN_ERR_INVALID;
    if (gacn_feature_conv_algo(cin, algo) == GACN_CONV_3XTF32)
        return gacn_conv_tc_launch(x, cin, in_scale, scale_batch_stride, weight, bias, bn, y, partial_sums, n, h, w,
                                   x_batch_stride, y_batch_stride, stream);
    return launch_ffma(x, cin, in_scale, scale_batch_stride, weight, bias, bn, y, partial_sums, n, h, w,
                       x_batch_stride, y_batch_stride, stream);
}

GACN_API int gacn_cse_scale(const float* partial_sums, int n, int blocks, long long count, const float* fc1,
                            const float* fc2, float* s, long long s_batch_stride, gacn_stream_t stream) {
    if (!gacn_check_cse_scale(partial_sums, n, blocks, count, fc1, fc2, s, s_batch_stride)) return GACN_ERR_INVALID;
    GACN_LAUNCH(cse_scale_kernel, dim3(n), dim3(CSE_THREADS), stream)
    (partial_sums, blocks, count, fc1, fc2, s, s_batch_stride);
    return (int)cudaGetLastError();
}

}  // extern "C"
