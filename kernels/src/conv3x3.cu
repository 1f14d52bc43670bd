/*
 * conv3x3.cu: gacn_conv3x3_c16, the feature blocks' Conv2d 3x3 (cin -> 16, padding 1, bias)
 * + ReLU + BatchNorm in exact FP32 (FFMA, no TF32), with per-block channel sums for the CSE.
 *
 * Register-blocked direct convolution. A block of 256 threads computes a 16-row x 64-column
 * output tile for all 16 output channels; thread (ty, tx) owns the 4 pixels (ty, 4tx..4tx+3)
 * x 16 channels = 64 accumulators. Input channels are staged 8 at a time: the 18 x 72 halo
 * tile of each channel (image columns x0-4 .. x0+67, so that every 16-byte piece of a row
 * is either wholly inside or wholly outside the image when W % 4 == 0) and the chunk's
 * weights, transposed to [channel][tap][16 outputs] so that one LDS.128 broadcast gives 4
 * output channels' weight. Per input channel and thread: 3 rows x (LDS.32 + LDS.128 + LDS.32)
 * inputs, 36 LDS.128 weights, 576 FFMA (92% of the issued instructions are FFMA).
 * Accumulators start at the bias; products are summed in (channel, dy, dx) order with fmaf:
 * not the CPU library's order (which uses gacn_madd), so the two agree to FP32 rounding, not
 * bit for bit.
 */
#include "gacn_cuda.h"

namespace {

constexpr int CV_K = GACN_CONV_COUT;          // 16 output channels
constexpr int CV_TW = GACN_CONV_TILE_W;       // 64 output columns per block
constexpr int CV_TH = GACN_CONV_TILE_H;       // 16 output rows per block
constexpr int CV_PX = 4;                      // output pixels per thread, along x
constexpr int CV_TX = CV_TW / CV_PX;          // 16 threads per output row
constexpr int CV_THREADS = CV_TX * CV_TH;     // 256
constexpr int CV_CK = 8;                      // input channels per staged chunk
constexpr int CV_ROWS = CV_TH + 2;            // 18 staged rows: y0-1 .. y0+16
constexpr int CV_LDX = CV_TW + 8;             // 72 staged columns: x0-4 .. x0+67 (tile column j = image x0-4+j)
constexpr int CV_PLANE = CV_ROWS * CV_LDX;    // floats per staged channel
constexpr int CV_PIECES = CV_LDX / 4;         // 16-byte pieces per staged row
constexpr int CV_TAPS = 9;
constexpr int CV_WCHUNK = CV_CK * CV_TAPS * CV_K;  // weights of one chunk: [channel][tap][k]

static_assert(CV_THREADS == 256, "launch bounds below");
static_assert(CV_K * CV_THREADS <= CV_CK * CV_PLANE, "the reduction scratch fits over the input tile");

__global__ __launch_bounds__(CV_THREADS, 2) void conv3x3_c16_kernel(
    const float* __restrict__ x, int cin, const float* __restrict__ weight, const float* __restrict__ bias,
    const float* __restrict__ bn, float* __restrict__ y, float* __restrict__ partial_sums, int H, int W,
    long long x_batch_stride, long long y_batch_stride, int vec) {
    __shared__ __align__(16) float sIn[CV_CK * CV_PLANE];
    __shared__ __align__(16) float sW[CV_WCHUNK];

    const int t = threadIdx.x, tx = t % CV_TX, ty = t / CV_TX;
    const int x0 = (int)blockIdx.x * CV_TW, y0 = (int)blockIdx.y * CV_TH, n = (int)blockIdx.z;
    const size_t plane = (size_t)H * W;
    const float* px = x + (size_t)n * (size_t)x_batch_stride;
    float* py = y + (size_t)n * (size_t)y_batch_stride;

    float acc[CV_K][CV_PX];
#pragma unroll
    for (int k = 0; k < CV_K; ++k) {
        const float b = bias[k];
#pragma unroll
        for (int p = 0; p < CV_PX; ++p) acc[k][p] = b;
    }

    // Scalar staging writes only the columns the compute loop reads (3 .. 68); the others are
    // never read. Each thread's inputs of one staged row: columns 4tx+3 .. 4tx+8.
    const float* sx = sIn + ty * CV_LDX + CV_PX * tx + 3;

    for (int c0 = 0; c0 < cin; c0 += CV_CK) {
        const int kn = cin - c0 < CV_CK ? cin - c0 : CV_CK;
        // Weights of the chunk, [kc][tap][k] (coalesced along tap in global memory).
#pragma unroll 1
        for (int e = t; e < kn * CV_TAPS * CV_K; e += CV_THREADS) {
            const int kc = e / (CV_TAPS * CV_K), k = (e / CV_TAPS) % CV_K, tap = e % CV_TAPS;
            sW[(kc * CV_TAPS + tap) * CV_K + k] = weight[((size_t)k * cin + c0 + kc) * CV_TAPS + tap];
        }
        // Input tile of the chunk, zero outside the image.
        if (vec) {
#pragma unroll 1
            for (int e = t; e < kn * CV_ROWS * CV_PIECES; e += CV_THREADS) {
                const int kc = e / (CV_ROWS * CV_PIECES), r = (e / CV_PIECES) % CV_ROWS, j = (e % CV_PIECES) * 4;
                const int yy = y0 - 1 + r, xx = x0 - 4 + j;
                float4 q = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                if (yy >= 0 && yy < H && xx >= 0 && xx < W)  // W % 4 == 0: xx < W implies xx + 3 < W
                    q = *reinterpret_cast<const float4*>(px + (size_t)(c0 + kc) * plane + (size_t)yy * W + xx);
                *reinterpret_cast<float4*>(sIn + kc * CV_PLANE + r * CV_LDX + j) = q;
            }
        } else {
            constexpr int COLS = CV_TW + 2;  // tile columns 3 .. 68 = image x0-1 .. x0+64
#pragma unroll 1
            for (int e = t; e < kn * CV_ROWS * COLS; e += CV_THREADS) {
                const int kc = e / (CV_ROWS * COLS), r = (e / COLS) % CV_ROWS, j = e % COLS;
                const int yy = y0 - 1 + r, xx = x0 - 1 + j;
                float v = 0.0f;
                if (yy >= 0 && yy < H && xx >= 0 && xx < W) v = px[(size_t)(c0 + kc) * plane + (size_t)yy * W + xx];
                sIn[kc * CV_PLANE + r * CV_LDX + j + 3] = v;
            }
        }
        __syncthreads();

#pragma unroll 1
        for (int kc = 0; kc < kn; ++kc) {
            const float* s = sx + kc * CV_PLANE;
            const float4* w4 = reinterpret_cast<const float4*>(sW + kc * CV_TAPS * CV_K);
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
        __syncthreads();
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
        float* red = sIn;                            // [k][256 threads]
        float* red2 = sIn + CV_K * CV_THREADS;       // [k][16 groups]
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

}  // namespace

extern "C" {

GACN_API size_t gacn_conv3x3_c16_partials(int h, int w) {
    if (h < 1 || w < 1) return 0;
    return (size_t)gacn_blocks(w, CV_TW) * gacn_blocks(h, CV_TH);
}

GACN_API int gacn_conv3x3_c16(const float* x, int cin, const float* weight, const float* bias, const float* bn,
                              float* y, float* partial_sums, int n, int h, int w, long long x_batch_stride,
                              long long y_batch_stride, gacn_stream_t stream) {
    if (!gacn_check_conv3x3(x, cin, weight, bias, y, n, h, w, x_batch_stride, y_batch_stride)) return GACN_ERR_INVALID;
    const int vec = w % 4 == 0 && gacn_aligned(x, 16) && gacn_aligned(y, 16) && x_batch_stride % 4 == 0 &&
                    y_batch_stride % 4 == 0;
    const dim3 grid(gacn_blocks(w, CV_TW), gacn_blocks(h, CV_TH), n);
    GACN_LAUNCH(conv3x3_c16_kernel, grid, dim3(CV_THREADS), stream)
    (x, cin, weight, bias, bn, y, partial_sums, h, w, x_batch_stride, y_batch_stride, vec);
    return (int)cudaGetLastError();
}

}  // extern "C"
