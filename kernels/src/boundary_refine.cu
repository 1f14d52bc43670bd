/*
 * boundary_refine.cu: gacn_boundary_refine (spec sections 5, last line, and 6) in one
 * kernel without workspace. A block computes a 32x32 tile of D and M from a 44x44 input
 * tile (halo 6 = the guided filter's two radius-3 boxes; the Gaussian needs only 4), all in
 * shared memory:
 *   1. D = sigmoid(1000 d4) and the guide T on 44x44 (zero outside the image);
 *   2. Gaussian 9x9 as a horizontal then a vertical 9-tap pass -> Bl -> bd (registers);
 *   3. horizontal then vertical 7-sums of T, D, T*D, T*T -> a, b on the 38x38 ring around
 *      the tile (zero outside the image, which removes them from the clipped second box);
 *   4. horizontal then vertical 7-sums of a, b -> q -> M.
 * Each sum runs in tap order from 0 (zeros added for out-of-image taps), the same order as
 * the CPU library, so D and M agree with it bit for bit apart from expf rounding in D.
 */
#include "gacn_cuda.h"

namespace {

constexpr int RF_TILE = 32;
constexpr int RF_HALO = 2 * GACN_GF_RADIUS;      // 6
constexpr int RF_IN = RF_TILE + 2 * RF_HALO;    // 44
constexpr int RF_AB = RF_TILE + 2 * GACN_GF_RADIUS;  // 38: where a and b are needed
constexpr int RF_GAUSS_ROWS = RF_TILE + 2 * GACN_GAUSS_RADIUS;  // 40
constexpr int RF_THREADS = 256;
constexpr int RF_PER_THREAD = RF_TILE * RF_TILE / RF_THREADS;  // 4 outputs per thread
constexpr int RF_WORK = 4 * RF_IN * RF_AB;                     // the largest intermediate: 4 row sums

/* The 9 Gaussian taps, computed once on the host by gacn_gauss_tap (so the CPU library and
 * the kernel use the same floats) and passed by value. */
struct GaussTaps {
    float v[2 * GACN_GAUSS_RADIUS + 1];
};

template <typename T>
__global__ __launch_bounds__(RF_THREADS) void boundary_refine_kernel(const T* __restrict__ d4,
                                                                     const float* __restrict__ ya,
                                                                     const float* __restrict__ yb,
                                                                     float* __restrict__ d_out,
                                                                     float* __restrict__ m_out, int na, int H, int W,
                                                                     const GaussTaps taps) {
    constexpr int GR = GACN_GAUSS_RADIUS, BR = GACN_GF_RADIUS;
    // sD/sT hold D and T, then (after stage 3's row sums) a and b on the 38x38 ring.
    __shared__ float sD[RF_IN * RF_IN];
    __shared__ float sT[RF_IN * RF_IN];
    __shared__ float work[RF_WORK];

    const int t = threadIdx.x;
    const int x0 = (int)blockIdx.x * RF_TILE, y0 = (int)blockIdx.y * RF_TILE, n = (int)blockIdx.z;
    const size_t plane = (size_t)H * W;
    const T* pd4 = d4 + (size_t)n * plane;
    const float* pya = ya + (size_t)(na == 1 ? 0 : n) * plane;
    const float* pyb = yb + (size_t)n * plane;

    // 1. D and T on the input tile; D of the tile itself is an output.
    for (int e = t; e < RF_IN * RF_IN; e += RF_THREADS) {
        const int r = e / RF_IN, c = e % RF_IN, y = y0 - RF_HALO + r, x = x0 - RF_HALO + c;
        float dv = 0.0f, tv = 0.0f;
        if (y >= 0 && y < H && x >= 0 && x < W) {
            const size_t o = (size_t)y * W + x;
            dv = gacn_sharp_sigmoid(gacn_to_float(pd4[o]));
            tv = gacn_guide(pya[o], pyb[o], dv);
            if (r >= RF_HALO && r < RF_HALO + RF_TILE && c >= RF_HALO && c < RF_HALO + RF_TILE)
                d_out[(size_t)n * plane + o] = dv;
        }
        sD[e] = dv;
        sT[e] = tv;
    }
    __syncthreads();

    // 2. Gaussian: rows of the tile +-4, columns of the tile.
    for (int e = t; e < RF_GAUSS_ROWS * RF_TILE; e += RF_THREADS) {
        const int r = RF_HALO - GR + e / RF_TILE, c = RF_HALO + e % RF_TILE;
        float acc = 0.0f;
        for (int k = 0; k <= 2 * GR; ++k) acc = gacn_madd(acc, taps.v[k], sD[r * RF_IN + c - GR + k]);
        work[e] = acc;
    }
    __syncthreads();
    float bd[RF_PER_THREAD], dc[RF_PER_THREAD], tc[RF_PER_THREAD];
#pragma unroll
    for (int q = 0; q < RF_PER_THREAD; ++q) {
        const int p = t + q * RF_THREADS, i = p / RF_TILE, j = p % RF_TILE;
        float bl = 0.0f;
        for (int k = 0; k <= 2 * GR; ++k) bl = gacn_madd(bl, taps.v[k], work[(i + k) * RF_TILE + j]);
        bd[q] = gacn_boundary_weight(bl);
        dc[q] = sD[(RF_HALO + i) * RF_IN + RF_HALO + j];
        tc[q] = sT[(RF_HALO + i) * RF_IN + RF_HALO + j];
    }
    __syncthreads();

    // 3. Row sums of I = T, p = D, I*p, I*I for all 44 rows and the 38 columns of the ring.
    constexpr int PLANE3 = RF_IN * RF_AB;
    for (int e = t; e < PLANE3; e += RF_THREADS) {
        const int r = e / RF_AB, c = BR + e % RF_AB;
        float si = 0.0f, sp = 0.0f, sip = 0.0f, sii = 0.0f;
        for (int k = -BR; k <= BR; ++k) {
            const float iv = sT[r * RF_IN + c + k], pv = sD[r * RF_IN + c + k];
            si = gacn_add(si, iv);
            sp = gacn_add(sp, pv);
            sip = gacn_add(sip, gacn_mul(iv, pv));
            sii = gacn_add(sii, gacn_mul(iv, iv));
        }
        work[e] = si;
        work[PLANE3 + e] = sp;
        work[2 * PLANE3 + e] = sip;
        work[3 * PLANE3 + e] = sii;
    }
    __syncthreads();
    // Column sums -> a, b at the 38x38 positions (into sD = a, sT = b).
    for (int e = t; e < RF_AB * RF_AB; e += RF_THREADS) {
        const int r = e / RF_AB, c = e % RF_AB;  // ring position (BR + r, BR + c) of the input tile
        const int y = y0 - BR + r, x = x0 - BR + c;
        float av = 0.0f, bv = 0.0f;
        if (y >= 0 && y < H && x >= 0 && x < W) {
            float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int k = 0; k <= 2 * BR; ++k)
                for (int v = 0; v < 4; ++v) s[v] = gacn_add(s[v], work[v * PLANE3 + (r + k) * RF_AB + c]);
            const float count = (float)(gacn_window_count(y, BR, H) * gacn_window_count(x, BR, W));
            gacn_gf_coeffs(s[0], s[1], s[2], s[3], count, &av, &bv);
        }
        sD[e] = av;
        sT[e] = bv;
    }
    __syncthreads();

    // 4. Row sums of a and b for the 38 ring rows and the tile's 32 columns.
    constexpr int PLANE4 = RF_AB * RF_TILE;
    for (int e = t; e < PLANE4; e += RF_THREADS) {
        const int r = e / RF_TILE, c = e % RF_TILE;
        float sa = 0.0f, sb = 0.0f;
        for (int k = 0; k <= 2 * BR; ++k) {
            sa = gacn_add(sa, sD[r * RF_AB + c + k]);
            sb = gacn_add(sb, sT[r * RF_AB + c + k]);
        }
        work[e] = sa;
        work[PLANE4 + e] = sb;
    }
    __syncthreads();
#pragma unroll
    for (int q = 0; q < RF_PER_THREAD; ++q) {
        const int p = t + q * RF_THREADS, i = p / RF_TILE, j = p % RF_TILE, y = y0 + i, x = x0 + j;
        if (y >= H || x >= W) continue;
        float sa = 0.0f, sb = 0.0f;
        for (int k = 0; k <= 2 * BR; ++k) {
            sa = gacn_add(sa, work[(i + k) * RF_TILE + j]);
            sb = gacn_add(sb, work[PLANE4 + (i + k) * RF_TILE + j]);
        }
        const float count = (float)(gacn_window_count(y, BR, H) * gacn_window_count(x, BR, W));
        m_out[(size_t)n * plane + (size_t)y * W + x] = gacn_mask(sa, sb, count, tc[q], dc[q], bd[q]);
    }
}

template <typename T>
int launch_refine(const void* d4, const float* ya, const float* yb, float* d, float* m, int n, int na, int h, int w,
                  gacn_stream_t stream) {
    static const GaussTaps taps = [] {
        GaussTaps g;
        for (int k = 0; k <= 2 * GACN_GAUSS_RADIUS; ++k) g.v[k] = gacn_gauss_tap(k);
        return g;
    }();
    const dim3 grid(gacn_blocks(w, RF_TILE), gacn_blocks(h, RF_TILE), n);
    auto kernel = boundary_refine_kernel<T>;
    GACN_LAUNCH(kernel, grid, dim3(RF_THREADS), stream)(static_cast<const T*>(d4), ya, yb, d, m, na, h, w, taps);
    return (int)cudaGetLastError();
}

}  // namespace

extern "C" GACN_API int gacn_boundary_refine(const void* d4, const float* ya, const float* yb, float* d, float* m,
                                             int n, int na, int h, int w, int dtype, gacn_stream_t stream) {
    if (!gacn_check_boundary_refine(d4, ya, yb, d, m, n, na, h, w, dtype)) return GACN_ERR_INVALID;
    return dtype == GACN_F32 ? launch_refine<float>(d4, ya, yb, d, m, n, na, h, w, stream)
                             : launch_refine<uint16_t>(d4, ya, yb, d, m, n, na, h, w, stream);
}
