/* activity_parts.cpp: see activity_parts.h. The innermost loops run over the 16 channels of a
   pixel (one AVX-512 vector, two AVX2 ones), written for the compiler's vectoriser and compiled
   for x86-64-v4, v3 and the baseline (target_clones picks at load time). */
#include "activity_parts.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define GACN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define GACN_CLONES
#endif

namespace gacn_ov {
namespace {

constexpr int R = 5, K = 2 * R + 1, C = 16, BAND = 32;
constexpr float SHARPNESS = 1000.0f;

/* Cephes' expf: x = k ln2 + r, |r| <= ln2/2, a degree-6 polynomial, 2^k by the exponent bits.
   Clamped so that k stays a normal exponent; above the top it returns inf (the sigmoid's 0). */
inline float exp_poly(float x) {
    const float xc = std::min(std::max(x, -87.33654f), 88.72283f);
    const float k = std::floor(xc * 1.44269504088896341f + 0.5f);
    float r = xc - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float e = p * r * r + r + 1.0f;
    const float scale = __builtin_bit_cast(float, (static_cast<int32_t>(k) + 127) << 23);
    return x > 88.72283f ? INFINITY : e * scale;
}

inline float grad(float f, float left, float up) {
    const float dl = left - f, du = up - f;
    return dl * dl + du * du;
}

/* d of image row y (0 <= y < H) of one part: out[x*16 + c]. */
GACN_CLONES void d_row(const float* __restrict ua, const float* __restrict ub, const float* __restrict sa2,
                       const float* __restrict sb2, int y, int W, float* __restrict out) {
    const size_t ld = (size_t)W * C;
    const float* a = ua + y * ld;
    const float* b = ub + y * ld;
    const float* au = y > 0 ? a - ld : nullptr;
    const float* bu = y > 0 ? b - ld : nullptr;
    for (int x = 0; x < W; ++x) {
        const float* ax = a + (size_t)x * C;
        const float* bx = b + (size_t)x * C;
        float* o = out + (size_t)x * C;
        if (x > 0 && au) {
            for (int c = 0; c < C; ++c)
                o[c] = grad(ax[c], ax[c - C], au[(size_t)x * C + c]) * sa2[c] - grad(bx[c], bx[c - C], bu[(size_t)x * C + c]) * sb2[c];
        } else {
            for (int c = 0; c < C; ++c) {
                const float la = x > 0 ? ax[c - C] : 0.0f, lb = x > 0 ? bx[c - C] : 0.0f;
                const float pa = au ? au[(size_t)x * C + c] : 0.0f, pb = bu ? bu[(size_t)x * C + c] : 0.0f;
                o[c] = grad(ax[c], la, pa) * sa2[c] - grad(bx[c], lb, pb) * sb2[c];
            }
        }
    }
}

/* One output row: the vertical 11-tap sums of d rows d[0..K) (stride ld floats) into the
   zero-padded row hp (pixel x at hp[(R + x) * 16]), then the horizontal ones, the sharp sigmoid,
   and Bm's pixels (stride `stride` floats). */
GACN_CLONES void bm_row(const float* __restrict d, size_t ld, int W, float* __restrict hp, float* __restrict out,
                        size_t stride) {
    float* col = hp + (size_t)R * C;
    const size_t n = (size_t)W * C;
    for (size_t i = 0; i < n; ++i) col[i] = d[i];
    for (int t = 1; t < K; ++t) {
        const float* __restrict row = d + t * ld;
        for (size_t i = 0; i < n; ++i) col[i] += row[i];
    }
    for (int x = 0; x < W; ++x) {
        float s[C];
        const float* h = hp + (size_t)x * C;
        for (int c = 0; c < C; ++c) s[c] = h[c];
        for (int t = 1; t < K; ++t)
            for (int c = 0; c < C; ++c) s[c] += h[t * C + c];
        float* o = out + (size_t)x * stride;
        for (int c = 0; c < C; ++c) o[c] = 1.0f / (1.0f + exp_poly(-(SHARPNESS * s[c])));
    }
}

}  // namespace

float activity_exp(float x) { return exp_poly(x); }

size_t activity_tasks(const ActivityParts& a) { return (size_t)a.parts * ((a.H + BAND - 1) / BAND); }

void activity_task(const ActivityParts& a, size_t i) {
    const int bands = (a.H + BAND - 1) / BAND;
    const int part = (int)(i / bands), y0 = (int)(i % bands) * BAND;
    const int H = a.H, W = a.W, y1 = std::min(H, y0 + BAND);
    const size_t ld = (size_t)W * C;
    float sa2[C], sb2[C];
    for (int c = 0; c < C; ++c) {
        sa2[c] = a.sa[part][c] * a.sa[part][c];
        sb2[c] = a.sb[part][c] * a.sb[part][c];
    }
    thread_local std::vector<float> d, hp;
    d.resize((size_t)(BAND + 2 * R) * ld);
    hp.assign((size_t)(W + 2 * R) * C, 0.0f);
    // buffer row r holds image row y0 - R + r (zero outside the image)
    for (int r = 0; r < y1 - y0 + 2 * R; ++r) {
        const int y = y0 - R + r;
        if (y < 0 || y >= H)
            std::fill_n(&d[r * ld], ld, 0.0f);
        else
            d_row(a.ua[part], a.ub[part], sa2, sb2, y, W, &d[r * ld]);
    }
    const size_t stride = (size_t)C * a.parts;
    for (int y = y0; y < y1; ++y)
        bm_row(&d[(size_t)(y - y0) * ld], ld, W, hp.data(), a.bm + (size_t)y * W * stride + (size_t)part * C, stride);
}

}  // namespace gacn_ov
