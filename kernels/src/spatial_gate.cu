/*
 * spatial_gate.cu: gacn_spatial_gate (spec sections 2 and 5): y = u * sigmoid(conv7x7(u; C->1))
 * with u = BatchNorm(ReLU(x)) applied on the fly.
 *
 * The 7x7 C->1 convolution is 49*C multiply-adds per pixel: 26 G for C = 64 at 3840x2160,
 * about an H100's whole FP32 FMA budget for 1 ms. So FP16 data with C % 16 == 0 (every gate
 * of the network but the last, C = 1) runs on the tensor cores (gate_tc_kernel); everything
 * else runs a plain FP32 FMA kernel (gate_cc_kernel).
 *
 * Tensor-core formulation (WMMA m32n8k16, FP16 inputs, FP32 accumulation):
 *   P[y][x'][dx] = sum_{dy,c} A(c, y+dy-3, x') * W'(c, dy, dx)      M = x', K = (dy, c), N = dx
 *   logit(y, x)  = 2^-k * sum_dx P[y][x+dx-3][dx]  +  sum_{in-image taps} K_shift(dy, dx)
 * where A = relu ? max(x,0) : x is exact in FP16 (it is the FP16 input), the BatchNorm scale
 * is folded into the weights, W' = w*scale*2^k, and the BatchNorm shift, which only counts
 * for taps inside the image, is the per-tap constant K_shift = sum_c w*shift. W' is split
 * into FP16 hi + lo parts (two MMAs); the power-of-two 2^k brings max|W'| to [2^14, 2^15)
 * so that lo stays out of FP16's subnormal range. Products are exact and the tensor cores
 * accumulate in FP32, so the logit carries FP32-level error (about 2^-22 relative to the
 * largest weight from the split, plus FP32 summation) — not the CPU library's bits: the CPU
 * and the FMA kernel sum u*w in (c, dy, dx) order, the tensor cores in their own order.
 *
 * A block computes 12 x 56 outputs: 64 partial columns x' = x0-4 .. x0+59 (two m32 tiles)
 * cover the 56 outputs and their +-3 halo (starting 8-byte aligned in NCHW rows), 18 staged
 * rows cover 12 output rows and theirs. Per chunk of 16 channels the A tile (18 rows x 64
 * columns x 16 channels of FP16) is staged in shared memory in the layout the data comes in,
 * so that staging is a vector copy: [row][channel][x'] (column-major A, 8-byte pieces) for
 * NCHW, [row][x'][channel] (row-major A, 16-byte pieces) for NHWC. Each of the 4 warps owns
 * one m-tile and 6 output rows (6 accumulators) and runs 7 dy x 6 rows x 2 MMAs per chunk.
 * Then the partial sums go through shared memory to the logits and gates, and a last pass
 * re-reads x (hot in L2) to write y = u * gate.
 */
#include <type_traits>

#include "gacn_cuda.h"

#if !defined(GACN_EMU)
#include <cuda_fp16.h>
#include <mma.h>
#endif

namespace {

using namespace nvcuda;

constexpr int GR = GACN_GATE_RADIUS;
constexpr int TAPS = (2 * GR + 1) * (2 * GR + 1);

// ---- tensor-core kernel (FP16, C % 16 == 0) -------------------------------------------
constexpr int GT_TH = 12;                // output rows per block
constexpr int GT_WP = 64;                // partial columns per block (two m32 tiles)
constexpr int GT_TW = 56;                // output columns per block
constexpr int GT_X0 = 4;                 // partial column 0 is output column -4
constexpr int GT_ROWS = GT_TH + 2 * GR;  // 18 staged rows
constexpr int GT_KC = 16;                // channels per chunk (MMA K)
constexpr int GT_RPW = 6;                // output rows per warp
constexpr int GT_THREADS = 128;
constexpr int GT_WTILE = GT_KC * 8;                 // halves of one B tile (16 x 8)
constexpr int GT_WCHUNK = (2 * GR + 1) * GT_WTILE;  // B tiles of one chunk: 7 dy

/* The A tile of a chunk in shared memory, per layout. NCHW: [row][channel][x'] with rows of
 * 72 halves (144 bytes spread an ldmatrix phase's 8 rows over distinct banks). NHWC:
 * [row][x'][channel], each m-tile a dense 1 KB block, conflict-free as it is. */
template <int LAYOUT>
struct ATile;
template <>
struct ATile<GACN_NCHW> {
    using layout = wmma::col_major;
    static constexpr int LDX = GT_WP + 8, SIZE = GT_ROWS * GT_KC * LDX, LDM = LDX;
    GACN_DEV static int at(int r, int kc, int j) { return (r * GT_KC + kc) * LDX + j; }
    GACN_DEV static int tile(int r, int mt) { return r * GT_KC * LDX + mt * 32; }
};
template <>
struct ATile<GACN_NHWC> {
    using layout = wmma::row_major;
    static constexpr int SIZE = GT_ROWS * GT_WP * GT_KC, LDM = GT_KC;
    GACN_DEV static int at(int r, int kc, int j) { return (r * GT_WP + j) * GT_KC + kc; }
    GACN_DEV static int tile(int r, int mt) { return (r * GT_WP + mt * 32) * GT_KC; }
};

/* relu on FP16 bits: keep positive values, zero the rest (NaN included, like
 * gacn_gate_input's `!(x > 0)`); only the logit sees these, so the sign of a zero is moot. */
GACN_DEV uint16_t relu_bits(uint16_t h) { return (uint16_t)(h - 1u) >= 0x7c00u ? 0 : h; }
GACN_DEV uint32_t relu_pair(uint32_t v) {
#if defined(__CUDA_ARCH__)
    __half2 h = *reinterpret_cast<__half2*>(&v);
    h = __hmax2(h, __float2half2_rn(0.0f));  // HMNMX2; NaN -> 0
    return *reinterpret_cast<uint32_t*>(&h);
#else
    return (uint32_t)relu_bits((uint16_t)(v & 0xffffu)) | ((uint32_t)relu_bits((uint16_t)(v >> 16)) << 16);
#endif
}

template <int LAYOUT>
__global__ __launch_bounds__(GT_THREADS, 4) void gate_tc_kernel(const uint16_t* __restrict__ x,
                                                                const float* __restrict__ weight,
                                                                const float* __restrict__ bn, int relu,
                                                                uint16_t* __restrict__ y, int C, int H, int W,
                                                                int vec) {
    using A = ATile<LAYOUT>;
    // sA: the A tile of a chunk; afterwards the partial sums P [12][64][8] and the gates.
    __shared__ __align__(128) uint16_t sA[A::SIZE];
    __shared__ __align__(128) uint16_t sW[2 * GT_WCHUNK];  // hi tiles, then lo tiles
    __shared__ float sK[TAPS + 1];                          // shift per tap, then their sum
    __shared__ int sExp;
    static_assert(GT_TH * GT_WP * 8 * 4 + GT_TH * GT_TW * 4 <= (int)sizeof(sA), "P and gates fit over sA");
    static_assert(GT_THREADS * 4 <= (int)sizeof(sA), "reduction scratch fits over sA");

    const int t = threadIdx.x, warp = t / 32;
    const int x0 = (int)blockIdx.x * GT_TW, y0 = (int)blockIdx.y * GT_TH, n = (int)blockIdx.z;
    const int has_bn = bn != nullptr;
    const size_t plane = (size_t)H * W, img = (size_t)C * plane;
    const uint16_t* px = x + (size_t)n * img;
    uint16_t* py = y + (size_t)n * img;
    auto offset = [&](int yy, int xx, int c) -> size_t {
        return LAYOUT == GACN_NCHW ? (size_t)c * plane + (size_t)yy * W + xx : ((size_t)yy * W + xx) * C + c;
    };

    // The weight scale 2^k: max |w * bn_scale| over all weights, reduced in shared memory.
    float* red = reinterpret_cast<float*>(sA);
    float mx = 0.0f;
    for (int i = t; i < C * TAPS; i += GT_THREADS) {
        float wv = weight[i];
        if (has_bn) wv = gacn_mul(wv, bn[i / TAPS]);
        mx = fmaxf(mx, fabsf(wv));
    }
    red[t] = mx;
    __syncthreads();
    for (int s = GT_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) red[t] = fmaxf(red[t], red[t + s]);
        __syncthreads();
    }
    if (t == 0) {
        int e = 0;
        frexpf(red[0], &e);  // red[0] = m * 2^e, m in [0.5, 1): 2^(15-e) brings it to [2^14, 2^15)
        const int k = 15 - e;
        sExp = red[0] > 0.0f ? (k < -64 ? -64 : (k > 64 ? 64 : k)) : 0;
    }
    if (has_bn && t < TAPS) {
        float acc = 0.0f;
        for (int c = 0; c < C; ++c) acc = gacn_madd(acc, weight[c * TAPS + t], bn[C + c]);
        sK[t] = acc;
    }
    __syncthreads();
    if (has_bn && t == 0) {  // all taps, in the order the border loop below adds them
        float all = 0.0f;
        for (int i = 0; i < TAPS; ++i) all = gacn_add(all, sK[i]);
        sK[TAPS] = all;
    }
    const int kexp = sExp;

    const int mt = warp & 1, rg = warp >> 1;
    wmma::fragment<wmma::accumulator, 32, 8, 16, float> acc[GT_RPW];
#pragma unroll
    for (int i = 0; i < GT_RPW; ++i) wmma::fill_fragment(acc[i], 0.0f);

    for (int c0 = 0; c0 < C; c0 += GT_KC) {
        // B tiles of this chunk: [dy][c (16)][dx (8, the 8th zero)], hi and lo.
        for (int e = t; e < GT_WCHUNK; e += GT_THREADS) {
            const int dy = e / GT_WTILE, kc = (e / 8) % GT_KC, dx = e % 8;
            uint16_t hi = 0, lo = 0;
            if (dx <= 2 * GR) {
                const int c = c0 + kc;
                float wv = weight[c * TAPS + dy * (2 * GR + 1) + dx];
                if (has_bn) wv = gacn_mul(wv, bn[c]);
                wv = ldexpf(wv, kexp);
                hi = gacn_f2h(wv);
                lo = gacn_f2h(gacn_sub(wv, gacn_h2f(hi)));
            }
            sW[e] = hi;
            sW[GT_WCHUNK + e] = lo;
        }
        // A tile (zero outside the image): 16-byte pieces of 8 channels (NHWC) or 8-byte
        // pieces of 4 columns (NCHW, W % 4 == 0: a piece is wholly inside or outside).
        if (vec) {
            constexpr int PIECE = LAYOUT == GACN_NHWC ? 8 : 4;
            constexpr int PIECES = GT_ROWS * GT_WP * GT_KC / PIECE;
            for (int e = t; e < PIECES; e += GT_THREADS) {
                int r, kc, j;
                if (LAYOUT == GACN_NHWC) {
                    kc = (e % 2) * 8, j = (e / 2) % GT_WP, r = e / (2 * GT_WP);
                } else {
                    j = (e % (GT_WP / 4)) * 4, kc = (e / (GT_WP / 4)) % GT_KC, r = e / (GT_WP / 4 * GT_KC);
                }
                const int yy = y0 - GR + r, xx = x0 - GT_X0 + j;
                const bool inside = yy >= 0 && yy < H && xx >= 0 && xx < W;
                if (LAYOUT == GACN_NHWC) {
                    uint4 q = make_uint4(0, 0, 0, 0);
                    if (inside) q = *reinterpret_cast<const uint4*>(px + offset(yy, xx, c0 + kc));
                    if (relu) q = make_uint4(relu_pair(q.x), relu_pair(q.y), relu_pair(q.z), relu_pair(q.w));
                    *reinterpret_cast<uint4*>(sA + A::at(r, kc, j)) = q;
                } else {
                    uint2 q = make_uint2(0, 0);
                    if (inside) q = *reinterpret_cast<const uint2*>(px + offset(yy, xx, c0 + kc));
                    if (relu) q = make_uint2(relu_pair(q.x), relu_pair(q.y));
                    *reinterpret_cast<uint2*>(sA + A::at(r, kc, j)) = q;
                }
            }
        } else {
            for (int e = t; e < GT_ROWS * GT_KC * GT_WP; e += GT_THREADS) {
                int r, kc, j;
                if (LAYOUT == GACN_NCHW) {
                    j = e % GT_WP, kc = (e / GT_WP) % GT_KC, r = e / (GT_WP * GT_KC);
                } else {
                    kc = e % GT_KC, j = (e / GT_KC) % GT_WP, r = e / (GT_WP * GT_KC);
                }
                const int yy = y0 - GR + r, xx = x0 - GT_X0 + j;
                uint16_t hv = 0;
                if (yy >= 0 && yy < H && xx >= 0 && xx < W) hv = px[offset(yy, xx, c0 + kc)];
                sA[A::at(r, kc, j)] = relu ? relu_bits(hv) : hv;
            }
        }
        __syncthreads();

#pragma unroll 1  // unrolling dy makes ptxas spill at the 128-register cap of 4 blocks per SM
        for (int dy = 0; dy <= 2 * GR; ++dy) {
            wmma::fragment<wmma::matrix_b, 32, 8, 16, __half, wmma::row_major> b_hi, b_lo;
            wmma::load_matrix_sync(b_hi, reinterpret_cast<const __half*>(sW + dy * GT_WTILE), 8);
            wmma::load_matrix_sync(b_lo, reinterpret_cast<const __half*>(sW + GT_WCHUNK + dy * GT_WTILE), 8);
#pragma unroll
            for (int i = 0; i < GT_RPW; ++i) {
                wmma::fragment<wmma::matrix_a, 32, 8, 16, __half, typename A::layout> a;
                const int r = rg * GT_RPW + i + dy;
                wmma::load_matrix_sync(a, reinterpret_cast<const __half*>(sA + A::tile(r, mt)), A::LDM);
                wmma::mma_sync(acc[i], a, b_hi, acc[i]);
                wmma::mma_sync(acc[i], a, b_lo, acc[i]);
            }
        }
        __syncthreads();
    }

    float* sP = reinterpret_cast<float*>(sA);  // [GT_TH][GT_WP][8]
    float* sGate = sP + GT_TH * GT_WP * 8;     // [GT_TH][GT_TW]
#pragma unroll
    for (int i = 0; i < GT_RPW; ++i)
        wmma::store_matrix_sync(sP + ((rg * GT_RPW + i) * GT_WP + mt * 32) * 8, acc[i], 8, wmma::mem_row_major);
    __syncthreads();

    for (int p = t; p < GT_TH * GT_TW; p += GT_THREADS) {
        const int i = p / GT_TW, j = p % GT_TW, yy = y0 + i, xx = x0 + j;
        float gate = 0.0f;
        if (yy < H && xx < W) {
            float s = 0.0f;
            // Output column x0+j needs partial columns x0+j-3+dx, i.e. j + dx + 1.
            for (int dx = 0; dx <= 2 * GR; ++dx) s = gacn_add(s, sP[(i * GT_WP + j + dx + GT_X0 - GR) * 8 + dx]);
            float logit = ldexpf(s, -kexp);
            if (has_bn) {
                float ks = 0.0f;
                if (yy >= GR && yy < H - GR && xx >= GR && xx < W - GR) {
                    ks = sK[TAPS];
                } else {
                    for (int dy = -GR; dy <= GR; ++dy)
                        for (int dx = -GR; dx <= GR; ++dx)
                            ks = gacn_add(ks, yy + dy >= 0 && yy + dy < H && xx + dx >= 0 && xx + dx < W
                                                  ? sK[(dy + GR) * (2 * GR + 1) + dx + GR]
                                                  : 0.0f);
                }
                logit = gacn_add(logit, ks);
            }
            gate = gacn_sigmoid(logit);
        }
        sGate[p] = gate;
    }
    __syncthreads();

    // y = u * gate, re-reading x.
    auto out = [&](float v, int c, float gate) {
        return gacn_gate_output(gacn_gate_input(v, relu, has_bn, has_bn ? bn[c] : 1.0f, has_bn ? bn[C + c] : 0.0f),
                                gate);
    };
    if (LAYOUT == GACN_NHWC && vec) {
        // 8 channels per item; the BatchNorm scale and shift of those 8 channels in four 16-byte
        // loads when bn is 16-byte aligned (C % 16 == 0 here), L1 hits.
        const int groups = C / 8;
        const bool bn16 = has_bn && ((uintptr_t)bn % 16) == 0;
#pragma unroll 2
        for (int e = t; e < GT_TH * GT_TW * groups; e += GT_THREADS) {
            const int p = e / groups, c = (e % groups) * 8, yy = y0 + p / GT_TW, xx = x0 + p % GT_TW;
            if (yy >= H || xx >= W) continue;
            float v[8], o[8], sc[8], sh[8];
            gacn_load8(px + offset(yy, xx, c), v);
            if (bn16) {
                gacn_load8(bn + c, sc);
                gacn_load8(bn + C + c, sh);
            } else {
#pragma unroll
                for (int i = 0; i < 8; ++i) sc[i] = has_bn ? bn[c + i] : 1.0f, sh[i] = has_bn ? bn[C + c + i] : 0.0f;
            }
            const float gate = sGate[p];
#pragma unroll
            for (int i = 0; i < 8; ++i) o[i] = gacn_gate_output(gacn_gate_input(v[i], relu, has_bn, sc[i], sh[i]), gate);
            gacn_store8(py + offset(yy, xx, c), o);
        }
    } else if (LAYOUT == GACN_NCHW && vec) {
        constexpr int QUADS = GT_TW / 4;
        for (int e = t; e < C * GT_TH * QUADS; e += GT_THREADS) {
            const int j = 4 * (e % QUADS), i = (e / QUADS) % GT_TH, c = e / (QUADS * GT_TH);
            const int yy = y0 + i, xx = x0 + j;
            if (yy >= H || xx >= W) continue;  // W % 4 == 0: xx < W implies xx + 3 < W
            const size_t o = offset(yy, xx, c);
            const uint2 v = *reinterpret_cast<const uint2*>(px + o);
            const uint32_t w4[2] = {v.x, v.y};
            uint32_t r4[2];
#pragma unroll
            for (int q = 0; q < 2; ++q) {
                const float g0 = sGate[i * GT_TW + j + 2 * q], g1 = sGate[i * GT_TW + j + 2 * q + 1];
                r4[q] = (uint32_t)gacn_f2h(out(gacn_h2f((uint16_t)(w4[q] & 0xffffu)), c, g0)) |
                        ((uint32_t)gacn_f2h(out(gacn_h2f((uint16_t)(w4[q] >> 16)), c, g1)) << 16);
            }
            *reinterpret_cast<uint2*>(py + o) = make_uint2(r4[0], r4[1]);
        }
    } else {
        for (int e = t; e < C * GT_TH * GT_TW; e += GT_THREADS) {
            int c, p;
            if (LAYOUT == GACN_NCHW) {
                p = e % (GT_TH * GT_TW), c = e / (GT_TH * GT_TW);
            } else {
                c = e % C, p = e / C;
            }
            const int yy = y0 + p / GT_TW, xx = x0 + p % GT_TW;
            if (yy >= H || xx >= W) continue;
            const size_t o = offset(yy, xx, c);
            py[o] = gacn_f2h(out(gacn_h2f(px[o]), c, sGate[p]));
        }
    }
}

// ---- FP32 FMA kernel (any dtype, any C) ------------------------------------------------
constexpr int GC_TH = 16, GC_TW = 32;  // outputs per block
constexpr int GC_OX = 4;               // outputs per thread along x
constexpr int GC_KC = 4;               // channels per staged chunk
constexpr int GC_ROWS = GC_TH + 2 * GR, GC_COLS = GC_TW + 2 * GR;
constexpr int GC_THREADS = GC_TH * GC_TW / GC_OX;  // 128

template <typename T, int LAYOUT>
__global__ __launch_bounds__(GC_THREADS) void gate_cc_kernel(const T* __restrict__ x, const float* __restrict__ weight,
                                                             const float* __restrict__ bn, int relu,
                                                             T* __restrict__ y, int C, int H, int W) {
    __shared__ float sU[GC_KC * GC_ROWS * GC_COLS];
    __shared__ float sWc[GC_KC * TAPS];
    __shared__ float sGate[GC_TH * GC_TW];

    const int t = threadIdx.x, ty = t / (GC_TW / GC_OX), tx = (t % (GC_TW / GC_OX)) * GC_OX;
    const int x0 = (int)blockIdx.x * GC_TW, y0 = (int)blockIdx.y * GC_TH, n = (int)blockIdx.z;
    const int has_bn = bn != nullptr;
    const size_t plane = (size_t)H * W, img = (size_t)C * plane;
    const T* px = x + (size_t)n * img;
    T* py = y + (size_t)n * img;
    auto offset = [&](int yy, int xx, int c) -> size_t {
        return LAYOUT == GACN_NCHW ? (size_t)c * plane + (size_t)yy * W + xx : ((size_t)yy * W + xx) * C + c;
    };
    auto input = [&](int yy, int xx, int c) {
        return gacn_gate_input(gacn_to_float(px[offset(yy, xx, c)]), relu, has_bn, has_bn ? bn[c] : 1.0f,
                               has_bn ? bn[C + c] : 0.0f);
    };

    float acc[GC_OX];
#pragma unroll
    for (int o = 0; o < GC_OX; ++o) acc[o] = 0.0f;

    for (int c0 = 0; c0 < C; c0 += GC_KC) {
        const int kn = C - c0 < GC_KC ? C - c0 : GC_KC;
        for (int e = t; e < GC_KC * GC_ROWS * GC_COLS; e += GC_THREADS) {
            int kc, r, j;
            if (LAYOUT == GACN_NCHW) {
                j = e % GC_COLS, r = (e / GC_COLS) % GC_ROWS, kc = e / (GC_COLS * GC_ROWS);
            } else {
                kc = e % GC_KC, j = (e / GC_KC) % GC_COLS, r = e / (GC_KC * GC_COLS);
            }
            const int yy = y0 - GR + r, xx = x0 - GR + j;
            float u = 0.0f;
            if (kc < kn && yy >= 0 && yy < H && xx >= 0 && xx < W) u = input(yy, xx, c0 + kc);
            sU[(kc * GC_ROWS + r) * GC_COLS + j] = u;
        }
        for (int e = t; e < GC_KC * TAPS; e += GC_THREADS) sWc[e] = e / TAPS < kn ? weight[c0 * TAPS + e] : 0.0f;
        __syncthreads();
        for (int kc = 0; kc < kn; ++kc)
            for (int dy = 0; dy <= 2 * GR; ++dy) {
                float u[GC_OX + 2 * GR];
#pragma unroll
                for (int q = 0; q < GC_OX + 2 * GR; ++q) u[q] = sU[(kc * GC_ROWS + ty + dy) * GC_COLS + tx + q];
#pragma unroll
                for (int dx = 0; dx <= 2 * GR; ++dx) {
                    const float wv = sWc[kc * TAPS + dy * (2 * GR + 1) + dx];
#pragma unroll
                    for (int o = 0; o < GC_OX; ++o) acc[o] = fmaf(wv, u[o + dx], acc[o]);
                }
            }
        __syncthreads();
    }
#pragma unroll
    for (int o = 0; o < GC_OX; ++o) sGate[ty * GC_TW + tx + o] = gacn_sigmoid(acc[o]);
    __syncthreads();

    for (int e = t; e < C * GC_TH * GC_TW; e += GC_THREADS) {
        int c, p;
        if (LAYOUT == GACN_NCHW) {
            p = e % (GC_TH * GC_TW), c = e / (GC_TH * GC_TW);
        } else {
            c = e % C, p = e / C;
        }
        const int yy = y0 + p / GC_TW, xx = x0 + p % GC_TW;
        if (yy >= H || xx >= W) continue;
        gacn_from_float(gacn_gate_output(input(yy, xx, c), sGate[p]), py + offset(yy, xx, c));
    }
}

template <int LAYOUT>
int launch_gate_tc(const void* x, const float* weight, const float* bn, int relu, void* y, int n, int c, int h, int w,
                   gacn_stream_t stream) {
    int vec;
    if (LAYOUT == GACN_NHWC)
        vec = gacn_aligned(x, 16) && gacn_aligned(y, 16);
    else
        vec = w % 4 == 0 && gacn_aligned(x, 8) && gacn_aligned(y, 8);
    const dim3 grid(gacn_blocks(w, GT_TW), gacn_blocks(h, GT_TH), n);
    auto kernel = gate_tc_kernel<LAYOUT>;
    GACN_LAUNCH(kernel, grid, dim3(GT_THREADS), stream)
    (static_cast<const uint16_t*>(x), weight, bn, relu, static_cast<uint16_t*>(y), c, h, w, vec);
    return (int)cudaGetLastError();
}

template <typename T, int LAYOUT>
int launch_gate_cc(const void* x, const float* weight, const float* bn, int relu, void* y, int n, int c, int h, int w,
                   gacn_stream_t stream) {
    const dim3 grid(gacn_blocks(w, GC_TW), gacn_blocks(h, GC_TH), n);
    auto kernel = gate_cc_kernel<T, LAYOUT>;
    GACN_LAUNCH(kernel, grid, dim3(GC_THREADS), stream)
    (static_cast<const T*>(x), weight, bn, relu, static_cast<T*>(y), c, h, w);
    return (int)cudaGetLastError();
}

}  // namespace

extern "C" GACN_API int gacn_spatial_gate(const void* x, const float* weight, const float* bn, int relu, void* y,
                                          int n, int c, int h, int w, int dtype, int layout, gacn_stream_t stream) {
    if (!gacn_check_spatial_gate(x, weight, y, n, c, h, w, dtype, layout)) return GACN_ERR_INVALID;
    relu = relu != 0;
    if (dtype == GACN_F16 && c % GT_KC == 0)
        return layout == GACN_NCHW ? launch_gate_tc<GACN_NCHW>(x, weight, bn, relu, y, n, c, h, w, stream)
                                   : launch_gate_tc<GACN_NHWC>(x, weight, bn, relu, y, n, c, h, w, stream);
    if (dtype == GACN_F16)
        return layout == GACN_NCHW ? launch_gate_cc<uint16_t, GACN_NCHW>(x, weight, bn, relu, y, n, c, h, w, stream)
                                   : launch_gate_cc<uint16_t, GACN_NHWC>(x, weight, bn, relu, y, n, c, h, w, stream);
    return layout == GACN_NCHW ? launch_gate_cc<float, GACN_NCHW>(x, weight, bn, relu, y, n, c, h, w, stream)
                               : launch_gate_cc<float, GACN_NHWC>(x, weight, bn, relu, y, n, c, h, w, stream);
}
