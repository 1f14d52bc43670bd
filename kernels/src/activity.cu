/*
 * activity.cu: gacn_activity (spec section 4), Bm = sigmoid(1000 * boxsum11(G_A - G_B)).
 *
 * One read of F_A and F_B, one write of Bm. A block owns a strip of TW columns (times CG
 * channels) and ACT_TH output rows and walks down it in steps of 11 rows:
 *   1. column pass: each thread owns one column (pixel x channel) of the strip plus its
 *      5-column halo, reads its features straight from global memory, one step ahead into
 *      registers (the left neighbour then hits L1, the upper one stays in a register), and
 *      forms the vertical window sums V of G_A - G_B in registers;
 *   2. row pass: per row, the prefix and suffix sums of V inside each 11-column block;
 *   3. output pass: S = suffix + prefix, Bm = sigmoid(1000 S), written coalesced.
 *
 * Window sums (gacn_window_sum11 in the CPU library spells out the same order): a window of
 * 11 spans at most two of the blocks [11m-5, 11m+5] aligned to the image origin, so it is the
 * suffix sum (right to left) of the block holding its first element plus the prefix sum (left
 * to right) of the next block, or a whole block's suffix sum. That is 3 additions per output
 * and direction instead of 10, exactly reproducible on the host, and FP32 throughout; the
 * blocks are aligned because strips and row bands start at multiples of 11.
 */
#include "gacn_cuda.h"

namespace {

constexpr int ACT_K = 2 * GACN_ACTIVITY_RADIUS + 1;  // 11: window, block and step size
constexpr int ACT_TH = 11 * ACT_K;                   // output rows per block (multiple of 11)

/* NCHW: one plane, 242 contiguous columns (+10 halo = 252 threads of 256). NHWC: 16 channels
 * (32 bytes of FP16: whole memory sectors) times 22 pixels (+10 halo: 32 x 16 = 512 threads). */
template <int LAYOUT>
struct ActTile;
template <>
struct ActTile<GACN_NCHW> {
    static constexpr int CG = 1, TW = 22 * ACT_K, THREADS = 256, MIN_BLOCKS = 4;
};
template <>
struct ActTile<GACN_NHWC> {
    static constexpr int CG = 16, TW = 2 * ACT_K, THREADS = 512, MIN_BLOCKS = 2;
};

/* One row of a column's features of A and B, held between the load and its use a step later
 * (two FP16 values packed in one register). */
template <typename T>
struct FeaturePair;
template <>
struct FeaturePair<uint16_t> {
    uint32_t v = 0;
    GACN_DEV void load(const uint16_t* a, const uint16_t* b) { v = (uint32_t)*a | ((uint32_t)*b << 16); }
    GACN_DEV float a() const { return gacn_h2f((uint16_t)(v & 0xffffu)); }
    GACN_DEV float b() const { return gacn_h2f((uint16_t)(v >> 16)); }
};
template <>
struct FeaturePair<float> {
    float va = 0.0f, vb = 0.0f;
    GACN_DEV void load(const float* a, const float* b) { va = *a, vb = *b; }
    GACN_DEV float a() const { return va; }
    GACN_DEV float b() const { return vb; }
};

template <typename T, int LAYOUT>
__global__ __launch_bounds__(ActTile<LAYOUT>::THREADS, ActTile<LAYOUT>::MIN_BLOCKS) void activity_kernel(
    const T* __restrict__ fa, const T* __restrict__ fb, T* __restrict__ bm, int na, int C, int H, int W, int cgroups,
    int pair_store) {
    constexpr int CG = ActTile<LAYOUT>::CG, TW = ActTile<LAYOUT>::TW, THREADS = ActTile<LAYOUT>::THREADS;
    constexpr int R = GACN_ACTIVITY_RADIUS;
    constexpr int GW = TW + 2 * R;      // V columns: x0-5 .. x0+TW+4
    constexpr int GWC = GW * CG;        // ... times channels: one per column-pass thread
    constexpr int NB = TW / ACT_K + 1;  // 11-column blocks covering them
    static_assert(GWC <= THREADS && TW % ACT_K == 0, "tile");
    // V, overwritten in place by the block suffix sums, and the block prefix sums.
    __shared__ float sSuf[ACT_K * GWC];
    __shared__ float sPre[ACT_K * GWC];

    const int t = threadIdx.x;
    const int c0 = (int)(blockIdx.x % cgroups) * CG, x0 = (int)(blockIdx.x / cgroups) * TW;
    const int y0 = (int)blockIdx.y * ACT_TH, n = (int)blockIdx.z;
    const int y_end = y0 + ACT_TH < H ? y0 + ACT_TH : H;
    const int steps = (y_end - 1 - y0 + ACT_K - 1) / ACT_K + 1;
    const size_t img_size = (size_t)C * H * W;
    const T* pa = fa + (size_t)(na == 1 ? 0 : n) * img_size;
    const T* pb = fb + (size_t)n * img_size;
    T* pbm = bm + (size_t)n * img_size;
    auto offset = [&](int y, int x, int c) -> size_t {
        return LAYOUT == GACN_NCHW ? ((size_t)(c0 + c) * H + y) * W + x : ((size_t)y * W + x) * C + c0 + c;
    };
    const size_t row_stride = LAYOUT == GACN_NCHW ? (size_t)W : (size_t)W * C;
    const size_t left = LAYOUT == GACN_NCHW ? 1 : (size_t)C;

    // This thread's column in the column pass.
    const int jc = t / CG, cc = t % CG, px = x0 - R + jc;
    const bool col_ok = t < GWC && px >= 0 && px < W && c0 + cc < C;
    const bool left_ok = col_ok && px > 0;
    const T* ca = pa + (col_ok ? offset(0, px, cc) : 0);
    const T* cb = pb + (col_ok ? offset(0, px, cc) : 0);
    float up_a = 0.0f, up_b = 0.0f;  // features of the row above the current one
    if (col_ok && y0 - R - 1 >= 0) {
        up_a = gacn_to_float(ca[(size_t)(y0 - R - 1) * row_stride]);
        up_b = gacn_to_float(cb[(size_t)(y0 - R - 1) * row_stride]);
    }
    float suf[ACT_K];  // suffix sums of G over the previous 11-row block
#pragma unroll
    for (int k = 0; k < ACT_K; ++k) suf[k] = 0.0f;
    // The column's features for the next 11 rows, loaded one step ahead so that their latency
    // hides behind the row and output passes (the left neighbours then hit L1).
    FeaturePair<T> next[ACT_K];
    auto prefetch = [&](int first_row) {
#pragma unroll
        for (int k = 0; k < ACT_K; ++k) {
            const int y = first_row + k;
            if (col_ok && y >= 0 && y < H) next[k].load(ca + (size_t)y * row_stride, cb + (size_t)y * row_stride);
        }
    };
    prefetch(y0 - R);

    for (int s = 0; s < steps; ++s) {
        const int g0 = y0 - R + ACT_K * s;  // first G row of this block; outputs g0-5 .. g0+5
        // 1. Column pass: G rows g0..g0+10, V of output rows g0+k-5 into sSuf[k].
        float g[ACT_K];
        float pre = 0.0f;
#pragma unroll
        for (int k = 0; k < ACT_K; ++k) {
            const int y = g0 + k;
            float gv = 0.0f;
            if (col_ok && y >= 0 && y < H) {
                const size_t o = (size_t)y * row_stride;
                const float fa_c = next[k].a(), fb_c = next[k].b();
                const float fa_l = left_ok ? gacn_to_float(ca[o - left]) : 0.0f;
                const float fb_l = left_ok ? gacn_to_float(cb[o - left]) : 0.0f;
                gv = gacn_sub(gacn_grad_sq(fa_c, fa_l, up_a), gacn_grad_sq(fb_c, fb_l, up_b));
                up_a = fa_c;
                up_b = fb_c;
            } else {
                up_a = up_b = 0.0f;
            }
            g[k] = gv;
            pre = k == 0 ? gv : gacn_add(pre, gv);
            if (k < ACT_K - 1 && t < GWC) sSuf[k * GWC + t] = gacn_add(suf[k + 1], pre);  // used from s = 1 on
        }
        suf[ACT_K - 1] = g[ACT_K - 1];
#pragma unroll
        for (int k = ACT_K - 2; k >= 0; --k) suf[k] = gacn_add(g[k], suf[k + 1]);
        if (t < GWC) sSuf[(ACT_K - 1) * GWC + t] = suf[0];  // output row g0+5: the whole block
        if (s + 1 < steps) prefetch(g0 + ACT_K);
        __syncthreads();

        // Output rows of this step: g0+k-5 for k = 0..10, but only k = 10 at s = 0.
        const int k_first = s == 0 ? ACT_K - 1 : 0;

        // 2. Row pass: per (row, 11-column block, channel), prefix and suffix sums of V. The
        // first block's prefix and the last block's suffix are never used.
        for (int e = t; e < ACT_K * NB * CG; e += THREADS) {
            const int c = e % CG, b = (e / CG) % NB, k = e / (CG * NB);
            if (k < k_first) continue;
            float v[ACT_K];
#pragma unroll
            for (int i = 0; i < ACT_K; ++i) {
                const int j = ACT_K * b + i;
                v[i] = j < GW ? sSuf[k * GWC + j * CG + c] : 0.0f;
            }
            if (b > 0) {
                float p = v[0];
                sPre[k * GWC + ACT_K * b * CG + c] = p;
#pragma unroll
                for (int i = 1; i < ACT_K; ++i) {
                    p = gacn_add(p, v[i]);
                    if (ACT_K * b + i < GW) sPre[k * GWC + (ACT_K * b + i) * CG + c] = p;
                }
            }
            if (b < NB - 1) {
                float q = v[ACT_K - 1];
                sSuf[k * GWC + (ACT_K * b + ACT_K - 1) * CG + c] = q;
#pragma unroll
                for (int i = ACT_K - 2; i >= 0; --i) {
                    q = gacn_add(v[i], q);
                    sSuf[k * GWC + (ACT_K * b + i) * CG + c] = q;
                }
            }
        }
        __syncthreads();

        // 3. Output pass, two outputs per thread along the contiguous dimension (x in NCHW,
        // the channel in NHWC), stored together when both exist and `pair_store` allows.
        constexpr int PX = LAYOUT == GACN_NCHW ? 2 : 1, PC = 2 / PX;  // pair extent in x and c
        constexpr int ITEMS = ACT_K * (TW / PX) * (CG / PC);
        for (int e = k_first * (ITEMS / ACT_K) + t; e < ITEMS; e += THREADS) {
            const int c = (e % (CG / PC)) * PC, ox = ((e / (CG / PC)) % (TW / PX)) * PX, k = e / (ITEMS / ACT_K);
            const int o = g0 + k - R, x = x0 + ox;
            if (o >= y_end || x >= W || c0 + c >= C) continue;
            float bmv[2];
#pragma unroll
            for (int q = 0; q < 2; ++q) {
                const int oxq = ox + q * (PX - 1), cq = c + q * (PC - 1);
                const float sv = sSuf[k * GWC + oxq * CG + cq];
                const float sum = oxq % ACT_K == 0 ? sv : gacn_add(sv, sPre[k * GWC + (oxq + 2 * R) * CG + cq]);
                bmv[q] = gacn_sharp_sigmoid(sum);
            }
            T* dst = pbm + offset(o, x, c);
            const bool second = LAYOUT == GACN_NCHW ? x + 1 < W : c0 + c + 1 < C;
            if (pair_store && second) {
                gacn_store2(dst, bmv);
            } else {
                gacn_from_float(bmv[0], dst);
                if (second) gacn_from_float(bmv[1], dst + 1);  // the next x (NCHW) or channel (NHWC)
            }
        }
        __syncthreads();  // the next column pass overwrites sSuf
    }
}

template <typename T, int LAYOUT>
int launch_activity(const void* fa, const void* fb, void* bm, int n, int na, int c, int h, int w,
                    gacn_stream_t stream) {
    using Tile = ActTile<LAYOUT>;
    const int cgroups = (c + Tile::CG - 1) / Tile::CG;
    const dim3 grid(gacn_blocks(w, Tile::TW) * cgroups, gacn_blocks(h, ACT_TH), n);
    // Pairs start at even x (NCHW) or even channels (NHWC), so an even row length keeps them
    // aligned to their own size.
    const int pair_store = (LAYOUT == GACN_NCHW ? w % 2 == 0 : c % 2 == 0) && gacn_aligned(bm, 2 * sizeof(T));
    auto kernel = activity_kernel<T, LAYOUT>;
    GACN_LAUNCH(kernel, grid, dim3(Tile::THREADS), stream)
    (static_cast<const T*>(fa), static_cast<const T*>(fb), static_cast<T*>(bm), na, c, h, w, cgroups, pair_store);
    return (int)cudaGetLastError();
}

}  // namespace

extern "C" GACN_API int gacn_activity(const void* fa, const void* fb, void* bm, int n, int na, int c, int h, int w,
                                      int dtype, int layout, gacn_stream_t stream) {
    if (!gacn_check_activity(fa, fb, bm, n, na, c, h, w, dtype, layout)) return GACN_ERR_INVALID;
    if (dtype == GACN_F32)
        return layout == GACN_NCHW ? launch_activity<float, GACN_NCHW>(fa, fb, bm, n, na, c, h, w, stream)
                                   : launch_activity<float, GACN_NHWC>(fa, fb, bm, n, na, c, h, w, stream);
    return layout == GACN_NCHW ? launch_activity<uint16_t, GACN_NCHW>(fa, fb, bm, n, na, c, h, w, stream)
                               : launch_activity<uint16_t, GACN_NHWC>(fa, fb, bm, n, na, c, h, w, stream);
}
