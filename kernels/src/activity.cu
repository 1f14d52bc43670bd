/*
 * activity.cu: gacn_activity (spec section 4), Bm = sigmoid(1000 * boxsum11(G_A - G_B)).
 *
 * One read of F_A and F_B, one write of Bm. Every thread owns a PAIR of adjacent elements,
 * the unit of the vector loads and stores: two channels of one pixel (NHWC: a warp reads 4
 * pixels x 16 channels = four whole 32-byte sectors per instruction) or two columns of one
 * plane (NCHW: a warp reads 64 contiguous columns). A block owns a strip of TX output columns
 * (times CG channels) and ACT_TH output rows and walks down it in steps of 11 rows:
 *   1. column pass: each thread reads its pair of F_A and F_B for the step's 11 rows (loaded
 *      one step ahead into registers), the left neighbours from the neighbouring lane
 *      (__shfl_up_sync; the warp's first lanes load theirs, L1 hits), the upper ones from its
 *      own registers, and forms the vertical window sums V of G_A - G_B in registers, written
 *      to shared memory as one float2 per row;
 *   2. segment pass: a thread takes one image-aligned 11-column block of outputs (times one
 *      channel pair in NHWC), reads the 21 V values it needs, forms the block's suffix sums
 *      and the next block's prefix sums in registers and applies the sigmoid; NHWC stores
 *      the pairs directly (coalesced), NCHW goes through a shared output tile
 *   3. (NCHW only) store pass: the output tile is written as pairs of columns.
 *
 * Window sums (gacn_window_sum11 in the CPU library spells out the same order): a window of
 * 11 spans at most two of the blocks [11m-5, 11m+5] aligned to the image origin, so it is the
 * suffix sum (right to left) of the block holding its first element plus the prefix sum (left
 * to right) of the next block, or a whole block's suffix sum. That is 3 additions per output
 * and direction instead of 10, exactly reproducible on the host, and FP32 throughout; the
 * blocks are aligned because strips and row bands start at multiples of 11.
 *
 * ABI 3 (gacn_activity_scaled): the features arrive unscaled with per-channel scales s, and
 * G(s f) is evaluated as fl(G(f) * fl(s s)) (scales NULL: s s = 1, the same bits as before); the
 * output has its own element type, and NCHW input can be written as NHWC output (the FP16 decision
 * path's channels-last layout) through a third tile, MIXED: 8 channels x 64 columns of NCHW input,
 * an output tile of 11 rows x 44 pixels x 8 channels in shared memory, stored as 8-channel pieces.
 */
#include "gacn_cuda.h"

namespace {

constexpr int ACT_K = 2 * GACN_ACTIVITY_RADIUS + 1;  // 11: window, block and step size
constexpr int ACT_R = GACN_ACTIVITY_RADIUS;
constexpr int ACT_TH = 11 * ACT_K;  // output rows per block (multiple of 11)

/* Tiles. NHWC: 16 channels (8 pairs) x 32 columns (22 outputs + 10 halo) = 256 threads, V tile
 * 11 x 32 x 16 floats (22.5 KB). NCHW: 256 pairs = 512 columns (x0-6 .. x0+505) cover 484
 * outputs (44 blocks of 11, x0 even and a multiple of 11) and their halo; V tile 11 x 512 and
 * output tile 11 x 484 floats (43.8 KB). */
enum { ACT_NCHW = GACN_NCHW, ACT_NHWC = GACN_NHWC, ACT_MIXED = 2 };  // tiles: in -> out layout

template <int TILE>
struct ActTile;
template <>
struct ActTile<ACT_NHWC> {
    static constexpr int CG = 16, NP = CG / 2, THREADS = 256, GW = THREADS / NP, TX = GW - 2 * ACT_R;
    static constexpr int VX0 = ACT_R;   // V tile column j is image column x0 - VX0 + j
    static constexpr int SHIFT = NP;    // lanes between a pair and its left neighbour's pair
    static constexpr int GWC = GW * CG;  // floats of one V row
    static constexpr int CS = 1;        // (MIXED only: V tile channel stride)
    static constexpr int OUT_TILE = 1;  // unused
};
template <>
struct ActTile<ACT_NCHW> {
    static constexpr int CG = 1, NP = 1, THREADS = 256, GW = 2 * THREADS, TX = 44 * ACT_K;
    static constexpr int VX0 = ACT_R + 1;  // even, so that the pairs are aligned
    static constexpr int SHIFT = 1;
    static constexpr int GWC = GW;
    static constexpr int CS = 1;
    static constexpr int OUT_TILE = ACT_K * TX;
};
/* NCHW in, NHWC out: warp w is the row of channel c0 + w (32 column pairs = 64 columns, x0-6 ..
 * x0+57) for 44 outputs; V rows hold the 8 channels 68 floats apart (68 = 4 mod 32: the segment
 * pass's lanes, 8 channels x 4 blocks, hit 32 banks); the output tile is [row][pixel][8 channels]. */
template <>
struct ActTile<ACT_MIXED> {
    static constexpr int CG = 8, NP = 1, THREADS = 256, GW = 64, TX = 4 * ACT_K;
    static constexpr int VX0 = ACT_R + 1;
    static constexpr int SHIFT = 1;
    static constexpr int CS = 68;  // V tile channel stride
    static constexpr int GWC = CG * CS;
    static constexpr int OUT_TILE = ACT_K * TX * CG;
};

/* Two adjacent stored elements (e1 right after e0 in memory). */
template <typename T>
struct Raw2;
template <>
struct Raw2<uint16_t> {
    uint32_t v = 0;  // e0 in the low half
    GACN_DEV float e0() const { return gacn_h2f((uint16_t)(v & 0xffffu)); }
    GACN_DEV float e1() const { return gacn_h2f((uint16_t)(v >> 16)); }
    GACN_DEV void load(const uint16_t* p, bool vec, bool ok0, bool ok1) {
        if (vec) {
            v = ok0 ? *reinterpret_cast<const uint32_t*>(p) : 0u;
        } else {
            v = (ok0 ? (uint32_t)p[0] : 0u) | (ok1 ? (uint32_t)p[1] << 16 : 0u);
        }
    }
};
/* The left neighbours' pairs of both frames from `delta` lanes below (one 64-bit shuffle). */
GACN_DEV void shfl_up(Raw2<uint16_t>& a, Raw2<uint16_t>& b, int delta) {
    const unsigned long long q = __shfl_up_sync(0xffffffffu, (unsigned long long)a.v | (unsigned long long)b.v << 32, delta);
    a.v = (uint32_t)q, b.v = (uint32_t)(q >> 32);
}
template <>
struct Raw2<float> {
    float a = 0.0f, b = 0.0f;
    GACN_DEV float e0() const { return a; }
    GACN_DEV float e1() const { return b; }
    GACN_DEV void load(const float* p, bool vec, bool ok0, bool ok1) {
        if (vec) {
            float2 q = make_float2(0.0f, 0.0f);
            if (ok0) q = *reinterpret_cast<const float2*>(p);
            a = q.x, b = q.y;
        } else {
            a = ok0 ? p[0] : 0.0f;
            b = ok1 ? p[1] : 0.0f;
        }
    }
};
GACN_DEV void shfl_up(Raw2<float>& a, Raw2<float>& b, int delta) {
    unsigned long long qa, qb;  // a pair as 64 bits (memcpy: a register move)
    memcpy(&qa, &a.a, 4), memcpy(reinterpret_cast<char*>(&qa) + 4, &a.b, 4);
    memcpy(&qb, &b.a, 4), memcpy(reinterpret_cast<char*>(&qb) + 4, &b.b, 4);
    qa = __shfl_up_sync(0xffffffffu, qa, delta);
    qb = __shfl_up_sync(0xffffffffu, qb, delta);
    memcpy(&a.a, &qa, 4), memcpy(&a.b, reinterpret_cast<const char*>(&qa) + 4, 4);
    memcpy(&b.a, &qb, 4), memcpy(&b.b, reinterpret_cast<const char*>(&qb) + 4, 4);
}

/* E consecutive floats of shared memory (one 8-byte load for E = 2). */
template <int E>
GACN_DEV void load_e(const float* p, float* v) {
    if (E == 2) {
        const float2 q = *reinterpret_cast<const float2*>(p);
        v[0] = q.x, v[1] = q.y;
    } else {
        v[0] = p[0];
    }
}

/* Writes the pair v at p (one 4- or 8-byte store when `pair`), or only e0 when !ok1. */
template <typename T>
GACN_DEV void store_pair(T* p, const float* v, bool pair, bool ok1) {
    if (pair && ok1) {
        gacn_store2(p, v);
    } else {
        gacn_from_float(v[0], p);
        if (ok1) gacn_from_float(v[1], p + 1);
    }
}

template <typename T, typename TO, int TILE, bool VEC>
__global__ __launch_bounds__(ActTile<TILE>::THREADS, 2) void activity_kernel(
    const T* __restrict__ fa, const T* __restrict__ fb, const float* __restrict__ scale_a,
    const float* __restrict__ scale_b, TO* __restrict__ bm, int na, int C, int H, int W, int cgroups, int pair_store) {
    using Tile = ActTile<TILE>;
    constexpr int CG = Tile::CG, NP = Tile::NP, THREADS = Tile::THREADS, GW = Tile::GW, TX = Tile::TX;
    constexpr int VX0 = Tile::VX0, SHIFT = Tile::SHIFT, GWC = Tile::GWC;
    constexpr int NSEG = TX / ACT_K;   // output blocks of 11 per row
    constexpr bool COLS = TILE != ACT_NHWC;  // pairs of columns of one channel plane (NCHW input)
    static_assert(TX % ACT_K == 0 && GW * CG == 2 * THREADS, "tile");
    static_assert(ACT_K * (NSEG - 1) + 2 * ACT_K - 2 + (VX0 - ACT_R) < GW, "segments read inside the V tile");
    constexpr int E = TILE == ACT_NHWC ? 2 : 1;  // elements of a segment item (channels)
    __shared__ __align__(16) float sV[ACT_K * GWC];
    __shared__ __align__(16) float sO[Tile::OUT_TILE];

    const int t = threadIdx.x, lane = t % 32;
    const int c0 = (int)(blockIdx.x % cgroups) * CG, x0 = (int)(blockIdx.x / cgroups) * TX;
    const int y0 = (int)blockIdx.y * ACT_TH, n = (int)blockIdx.z;
    const int y_end = y0 + ACT_TH < H ? y0 + ACT_TH : H;
    const int steps = (y_end - 1 - y0 + ACT_K - 1) / ACT_K + 1;
    const size_t img_size = (size_t)C * H * W;
    const T* pa = fa + (size_t)(na == 1 ? 0 : n) * img_size;
    const T* pb = fb + (size_t)n * img_size;
    TO* pbm = bm + (size_t)n * img_size;
    const size_t row_stride = COLS ? (size_t)W : (size_t)W * C;

    // This thread's pair in the column pass: image column px (NCHW, MIXED: px, px + 1), channel
    // cc (NHWC: cc, cc + 1); the left neighbours' pair starts `left` elements before it.
    const int jt = TILE == ACT_NCHW ? 2 * t : TILE == ACT_MIXED ? 2 * (t % 32) : t / NP;  // V tile column of e0
    const int px = x0 - VX0 + jt;
    const int cc = TILE == ACT_NCHW ? c0 : TILE == ACT_MIXED ? c0 + t / 32 : c0 + 2 * (t % NP);
    const int lx = COLS ? px - 2 : px - 1;  // column of the left pair's e0
    const int vcol = TILE == ACT_MIXED ? (t / 32) * Tile::CS + jt : 2 * t;  // sV offset of the pair in a row
    bool ok0, ok1, lok0, lok1;                              // elements inside the image
    if (COLS) {
        const bool ch = cc < C;
        ok0 = ch && px >= 0 && px < W, ok1 = ch && px + 1 >= 0 && px + 1 < W;
        lok0 = ch && lx >= 0 && lx < W, lok1 = ch && lx + 1 >= 0 && lx + 1 < W;
    } else {
        const bool in = px >= 0 && px < W, lin = lx >= 0 && lx < W;
        ok0 = in && cc < C, ok1 = in && cc + 1 < C;
        lok0 = lin && cc < C, lok1 = lin && cc + 1 < C;
    }
    const bool own_load = ok0 || ok1, left_load = lane < SHIFT && (lok0 || lok1);
    auto col_offset = [&](int x) -> size_t {
        const int cl = cc < C ? cc : 0;  // (MIXED channel tail: never dereferenced)
        return COLS ? (size_t)cl * H * W + (size_t)(x < 0 ? 0 : x) : (size_t)(x < 0 ? 0 : x) * C + cc;
    };
    // Squared scales of the pair's two channels (G(s f) = s^2 G(f)); 1 without scales.
    float sa0 = 1.0f, sa1 = 1.0f, sb0 = 1.0f, sb1 = 1.0f;
    {
        const float* qa = scale_a != nullptr ? scale_a + (size_t)(na == 1 ? 0 : n) * C : nullptr;
        const float* qb = scale_b != nullptr ? scale_b + (size_t)n * C : nullptr;
        const int e1 = COLS ? cc : cc + 1;  // channel of the pair's e1
        if (qa != nullptr && cc < C) sa0 = gacn_mul(qa[cc], qa[cc]);
        if (qb != nullptr && cc < C) sb0 = gacn_mul(qb[cc], qb[cc]);
        if (qa != nullptr && e1 < C) sa1 = gacn_mul(qa[e1], qa[e1]);
        if (qb != nullptr && e1 < C) sb1 = gacn_mul(qb[e1], qb[e1]);
    }
    const T* ca = pa + col_offset(px);
    const T* cb = pb + col_offset(px);
    const T* la = pa + col_offset(lx);
    const T* lb = pb + col_offset(lx);

    // Features of the row above the current one, per element.
    float up_a0 = 0.0f, up_a1 = 0.0f, up_b0 = 0.0f, up_b1 = 0.0f;
    if (y0 - ACT_R - 1 >= 0) {
        Raw2<T> ua, ub;
        const size_t o = (size_t)(y0 - ACT_R - 1) * row_stride;
        ua.load(ca + o, VEC, ok0, ok1);
        ub.load(cb + o, VEC, ok0, ok1);
        up_a0 = ua.e0(), up_a1 = ua.e1(), up_b0 = ub.e0(), up_b1 = ub.e1();
    }
    float suf0[ACT_K], suf1[ACT_K];  // suffix sums of G over the previous 11-row block
#pragma unroll
    for (int k = 0; k < ACT_K; ++k) suf0[k] = suf1[k] = 0.0f;
    // The pair's features for the next 11 rows, loaded one step ahead.
    Raw2<T> next_a[ACT_K], next_b[ACT_K];
    auto prefetch = [&](int first_row) {
        const T* qa = ca + (ptrdiff_t)first_row * (ptrdiff_t)row_stride;  // dereferenced only inside
        const T* qb = cb + (ptrdiff_t)first_row * (ptrdiff_t)row_stride;
#pragma unroll
        for (int k = 0; k < ACT_K; ++k) {
            const bool row_ok = own_load && (unsigned)(first_row + k) < (unsigned)H;
            next_a[k].load(qa, VEC, row_ok && ok0, row_ok && ok1);
            next_b[k].load(qb, VEC, row_ok && ok0, row_ok && ok1);
            qa += row_stride, qb += row_stride;
        }
    };
    prefetch(y0 - ACT_R);

    for (int s = 0; s < steps; ++s) {
        const int g0 = y0 - ACT_R + ACT_K * s;  // first G row of this block; outputs g0-5 .. g0+5
        // 1. Column pass: G rows g0..g0+10, V of output rows g0+k-5 into sV row k.
        Raw2<T> left_a[ACT_K], left_b[ACT_K];
        {
            const T* qa = la + (ptrdiff_t)g0 * (ptrdiff_t)row_stride;
            const T* qb = lb + (ptrdiff_t)g0 * (ptrdiff_t)row_stride;
#pragma unroll
            for (int k = 0; k < ACT_K; ++k) {
                const bool row_ok = left_load && (unsigned)(g0 + k) < (unsigned)H;
                left_a[k].load(qa, VEC, row_ok && lok0, row_ok && lok1);
                left_b[k].load(qb, VEC, row_ok && lok0, row_ok && lok1);
                qa += row_stride, qb += row_stride;
            }
        }
        float g0v[ACT_K], g1v[ACT_K];
        float pre0 = 0.0f, pre1 = 0.0f;
#pragma unroll
        for (int k = 0; k < ACT_K; ++k) {
            const bool row_in = (unsigned)(g0 + k) < (unsigned)H;
            Raw2<T> sa = next_a[k], sb = next_b[k];
            shfl_up(sa, sb, SHIFT);
            if (lane < SHIFT) sa = left_a[k], sb = left_b[k];
            const float a0 = next_a[k].e0(), a1 = next_a[k].e1(), b0 = next_b[k].e0(), b1 = next_b[k].e1();
            float la0, la1, lb0, lb1;
            if (COLS) {
                la0 = sa.e1(), la1 = a0, lb0 = sb.e1(), lb1 = b0;
            } else {
                la0 = sa.e0(), la1 = sa.e1(), lb0 = sb.e0(), lb1 = sb.e1();
            }
            // Computed for every lane, then selected (no branch): G is zero outside the image.
            const float d0 = gacn_sub(gacn_mul(gacn_grad_sq(a0, la0, up_a0), sa0), gacn_mul(gacn_grad_sq(b0, lb0, up_b0), sb0));
            const float d1 = gacn_sub(gacn_mul(gacn_grad_sq(a1, la1, up_a1), sa1), gacn_mul(gacn_grad_sq(b1, lb1, up_b1), sb1));
            const float gv0 = row_in && ok0 ? d0 : 0.0f, gv1 = row_in && ok1 ? d1 : 0.0f;
            up_a0 = a0, up_a1 = a1, up_b0 = b0, up_b1 = b1;  // zero outside the image
            g0v[k] = gv0, g1v[k] = gv1;
            pre0 = k == 0 ? gv0 : gacn_add(pre0, gv0);
            pre1 = k == 0 ? gv1 : gacn_add(pre1, gv1);
            if (k < ACT_K - 1)  // used from s = 1 on
                *reinterpret_cast<float2*>(&sV[k * GWC + vcol]) =
                    make_float2(gacn_add(suf0[k + 1], pre0), gacn_add(suf1[k + 1], pre1));
        }
        suf0[ACT_K - 1] = g0v[ACT_K - 1];
        suf1[ACT_K - 1] = g1v[ACT_K - 1];
#pragma unroll
        for (int k = ACT_K - 2; k >= 0; --k) {
            suf0[k] = gacn_add(g0v[k], suf0[k + 1]);
            suf1[k] = gacn_add(g1v[k], suf1[k + 1]);
        }
        // Output row g0+5: the whole block.
        *reinterpret_cast<float2*>(&sV[(ACT_K - 1) * GWC + vcol]) = make_float2(suf0[0], suf1[0]);
        if (s + 1 < steps) prefetch(g0 + ACT_K);
        __syncthreads();

        // 2. Segment pass. Output rows of this step: g0+k-5 for k = 0..10, but only k = 10 at s = 0.
        // An item is one 11-column output block of one row, times one channel pair (NHWC).
        const int k_first = s == 0 ? ACT_K - 1 : 0;
        constexpr int PER_ROW = TILE == ACT_MIXED ? NSEG * CG : NSEG * NP;  // items per output row
        for (int e = k_first * PER_ROW + t; e < ACT_K * PER_ROW; e += THREADS) {
            // NHWC: p = channel pair; MIXED: p = channel (fastest: the lanes' V reads hit 32 banks)
            const int p = TILE == ACT_MIXED ? e % CG : e % NP, m = (e / (PER_ROW / NSEG)) % NSEG, k = e / PER_ROW;
            const int o = g0 + k - ACT_R, xs = x0 + ACT_K * m;  // output row, first output column
            if (o >= y_end || xs >= W) continue;
            // Column xs-5+i of the V tile (i = 0..20): v[i * VS], times E channels.
            constexpr int VS = TILE == ACT_NHWC ? CG : 1;
            const float* v = TILE == ACT_MIXED ? sV + k * GWC + p * Tile::CS + (ACT_K * m + VX0 - ACT_R)
                                               : sV + k * GWC + (ACT_K * m + VX0 - ACT_R) * CG + 2 * p;
            float sf[ACT_K][E];  // suffix sums of the block [xs-5, xs+5] from each column
            load_e<E>(v + (ACT_K - 1) * VS, sf[ACT_K - 1]);
#pragma unroll
            for (int i = ACT_K - 2; i >= 0; --i) {
                float q[E];
                load_e<E>(v + i * VS, q);
#pragma unroll
                for (int c = 0; c < E; ++c) sf[i][c] = gacn_add(q[c], sf[i + 1][c]);
            }
            float pr[E];  // prefix sums of the next block
            const int nx = W - xs < ACT_K ? W - xs : ACT_K, ch = c0 + 2 * p;
            const bool fast = nx == ACT_K && ch + 1 < C && pair_store;  // 11 paired stores
            TO* dst = pbm + (TILE == ACT_NHWC ? ((size_t)o * W + xs) * C + ch : 0);
#pragma unroll
            for (int i = 0; i < ACT_K; ++i) {
                float r[2] = {0.0f, 0.0f};
                if (i > 0) {
                    float q[E];
                    load_e<E>(v + (ACT_K - 1 + i) * VS, q);
#pragma unroll
                    for (int c = 0; c < E; ++c) pr[c] = i == 1 ? q[c] : gacn_add(pr[c], q[c]);
                }
#pragma unroll
                for (int c = 0; c < E; ++c) r[c] = gacn_sharp_sigmoid(i == 0 ? sf[0][c] : gacn_add(sf[i][c], pr[c]));
                if (TILE == ACT_NHWC) {
                    if (fast) {
                        gacn_store2(dst, r);
                    } else if (i < nx && ch < C) {
                        store_pair(dst, r, pair_store, ch + 1 < C);
                    }
                    dst += C;
                } else if (TILE == ACT_MIXED) {
                    sO[(k * TX + ACT_K * m + i) * CG + p] = r[0];
                } else {
                    sO[k * TX + ACT_K * m + i] = r[0];
                }
            }
        }
        __syncthreads();  // (NHWC) the next column pass overwrites sV

        // 3. MIXED: store pass, the 8 channels of one pixel per item (one 16-byte FP16 store, or
        // two FP32 ones, when C % 8 == 0 and bm is 16-byte aligned: pair_store).
        if (TILE == ACT_MIXED) {
            for (int e = k_first * TX + t; e < ACT_K * TX; e += THREADS) {
                const int ox = e % TX, k = e / TX;
                const int o = g0 + k - ACT_R, x = x0 + ox;
                if (o >= y_end || x >= W) continue;
                const float* q = &sO[(k * TX + ox) * CG];
                TO* dst = pbm + ((size_t)o * W + x) * C + c0;
                if (pair_store) {
                    gacn_store8(dst, q);
                } else {
                    for (int c = 0; c < CG && c0 + c < C; ++c) gacn_from_float(q[c], dst + c);
                }
            }
        }
        // 3. NCHW: store pass, two columns per item.
        if (TILE == ACT_NCHW) {
            for (int e = k_first * (TX / 2) + t; e < ACT_K * (TX / 2); e += THREADS) {
                const int ox = 2 * (e % (TX / 2)), k = e / (TX / 2);
                const int o = g0 + k - ACT_R, x = x0 + ox;
                if (o >= y_end || x >= W) continue;
                const float2 q = *reinterpret_cast<const float2*>(&sO[k * TX + ox]);
                const float r[2] = {q.x, q.y};
                store_pair(pbm + (size_t)c0 * H * W + (size_t)o * W + x, r, pair_store, x + 1 < W);
            }
            // sO is next written after the next column pass's barrier.
        }
    }
}

template <typename T, typename TO, int TILE>
int launch_activity(const void* fa, const void* fb, const float* scale_a, const float* scale_b, void* bm, int n,
                    int na, int c, int h, int w, gacn_stream_t stream) {
    using Tile = ActTile<TILE>;
    const int cgroups = (c + Tile::CG - 1) / Tile::CG;
    const dim3 grid(gacn_blocks(w, Tile::TX) * cgroups, gacn_blocks(h, ACT_TH), n);
    // Pairs start at even x (NCHW, MIXED) or even channels (NHWC), so an even row length keeps
    // them aligned to their own size. MIXED stores 8 channels at a time.
    const bool even = TILE == ACT_NHWC ? c % 2 == 0 : w % 2 == 0;
    const int pair_store = TILE == ACT_MIXED ? c % 8 == 0 && gacn_aligned(bm, 16)
                                             : (TILE == ACT_NHWC ? c % 2 == 0 : w % 2 == 0) && gacn_aligned(bm, 2 * sizeof(TO));
    const bool vec = even && gacn_aligned(fa, 2 * sizeof(T)) && gacn_aligned(fb, 2 * sizeof(T));
    auto kernel = vec ? activity_kernel<T, TO, TILE, true> : activity_kernel<T, TO, TILE, false>;
    GACN_LAUNCH(kernel, grid, dim3(Tile::THREADS), stream)
    (static_cast<const T*>(fa), static_cast<const T*>(fb), scale_a, scale_b, static_cast<TO*>(bm), na, c, h, w,
     cgroups, pair_store);
    return (int)cudaGetLastError();
}

template <typename T, typename TO>
int launch_layouts(const void* fa, const void* fb, const float* scale_a, const float* scale_b, void* bm, int n,
                   int na, int c, int h, int w, int in_layout, int out_layout, gacn_stream_t stream) {
    if (in_layout == GACN_NHWC) return launch_activity<T, TO, ACT_NHWC>(fa, fb, scale_a, scale_b, bm, n, na, c, h, w, stream);
    if (out_layout == GACN_NHWC) return launch_activity<T, TO, ACT_MIXED>(fa, fb, scale_a, scale_b, bm, n, na, c, h, w, stream);
    return launch_activity<T, TO, ACT_NCHW>(fa, fb, scale_a, scale_b, bm, n, na, c, h, w, stream);
}

}  // namespace

extern "C" GACN_API int gacn_activity_scaled(const void* fa, const void* fb, const float* scale_a, const float* scale_b,
                                             void* bm, int n, int na, int c, int h, int w, int in_dtype, int in_layout,
                                             int out_dtype, int out_layout, gacn_stream_t stream) {
    if (!gacn_check_activity_scaled(fa, fb, bm, n, na, c, h, w, in_dtype, in_layout, out_dtype, out_layout))
        return GACN_ERR_INVALID;
    if (in_dtype == GACN_F32)
        return out_dtype == GACN_F32
                   ? launch_layouts<float, float>(fa, fb, scale_a, scale_b, bm, n, na, c, h, w, in_layout, out_layout, stream)
                   : launch_layouts<float, uint16_t>(fa, fb, scale_a, scale_b, bm, n, na, c, h, w, in_layout, out_layout, stream);
    return out_dtype == GACN_F32
               ? launch_layouts<uint16_t, float>(fa, fb, scale_a, scale_b, bm, n, na, c, h, w, in_layout, out_layout, stream)
               : launch_layouts<uint16_t, uint16_t>(fa, fb, scale_a, scale_b, bm, n, na, c, h, w, in_layout, out_layout, stream);
}

extern "C" GACN_API int gacn_activity(const void* fa, const void* fb, void* bm, int n, int na, int c, int h, int w,
                                      int dtype, int layout, gacn_stream_t stream) {
    if (!gacn_check_activity(fa, fb, bm, n, na, c, h, w, dtype, layout)) return GACN_ERR_INVALID;
    return gacn_activity_scaled(fa, fb, nullptr, nullptr, bm, n, na, c, h, w, dtype, layout, dtype, layout, stream);
}
