/*
 * gacn_kernels_cpu.cpp: the C ABI of gacn_kernels.h on the host (libgacn_kernels_cpu.so).
 *
 * Plain loops over the per-pixel functions of gacn_math.h, the very functions the CUDA
 * kernels call, with the kernels' summation orders: CI, which has no GPU, tests this library
 * against the PyTorch model, and the kernel emulator against this library. Pointers are host
 * pointers; `stream` is ignored. Built with -ffp-contract=off (see gacn_math.h).
 */
#include <stdint.h>

#include <algorithm>
#include <vector>

#include "../src/gacn_args.h"
#include "../src/gacn_math.h"
#include "gacn_kernels.h"

namespace {

/* Element (c, y, x) of one image in either layout. */
struct Image {
    int layout, C, H, W;
    size_t at(int c, int y, int x) const {
        return layout == GACN_NCHW ? ((size_t)c * H + y) * W + x : ((size_t)y * W + x) * C + c;
    }
    size_t size() const { return (size_t)C * H * W; }
};

/* Zero-padded window sums along x then y, each in tap order from 0 (the kernels' order). */
void box_rows(const float* in, float* out, int H, int W, int r) {
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
            float s = 0.0f;
            for (int d = -r; d <= r; ++d) s = gacn_add(s, (x + d >= 0 && x + d < W) ? in[(size_t)y * W + x + d] : 0.0f);
            out[(size_t)y * W + x] = s;
        }
}
void box_cols(const float* in, float* out, int H, int W, int r) {
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
            float s = 0.0f;
            for (int d = -r; d <= r; ++d) s = gacn_add(s, (y + d >= 0 && y + d < H) ? in[(size_t)(y + d) * W + x] : 0.0f);
            out[(size_t)y * W + x] = s;
        }
}

/* Sum over [i-5, i+5] of a zero-padded line v[0..n) (element t at v[t * stride]) in the
 * activity kernel's order: the 11-blocks [11m-5, 11m+5] are aligned to index 0; the window is
 * the suffix sum (right to left) of the block holding i-5, plus, unless i-5 starts that block,
 * the prefix sum (left to right) of the next block up to i+5. */
float window_sum11(const float* v, int n, size_t stride, int i) {
    constexpr int R = GACN_ACTIVITY_RADIUS, K = 2 * R + 1;
    auto at = [&](int t) { return t >= 0 && t < n ? v[(size_t)t * stride] : 0.0f; };
    const int a = i - R, end = a - i % K + K - 1;  // last index of a's block
    float suf = at(end);
    for (int t = end - 1; t >= a; --t) suf = gacn_add(at(t), suf);
    if (i % K == 0) return suf;
    float pre = at(end + 1);
    for (int t = end + 2; t <= i + R; ++t) pre = gacn_add(pre, at(t));
    return gacn_add(suf, pre);
}

/* gacn_activity_scaled: G(s f) as fl(G(f) * fl(s s)) per frame and channel (scales NULL: s s = 1,
 * an exact multiplication: gacn_activity's bits), input and output in their own types and layouts. */
template <typename T, typename TO>
void activity(const T* fa, const T* fb, const float* scale_a, const float* scale_b, TO* bm, int n, int na, int C,
              int H, int W, int in_layout, int out_layout) {
    const Image im{in_layout, C, H, W}, om{out_layout, C, H, W};
    const size_t plane = (size_t)H * W;
    std::vector<float> g(plane), cols(plane);
    for (int b = 0; b < n; ++b) {
        const int a = na == 1 ? 0 : b;
        const T* pa = fa + (size_t)a * im.size();
        const T* pb = fb + (size_t)b * im.size();
        for (int c = 0; c < C; ++c) {
            const float sa = scale_a ? scale_a[(size_t)a * C + c] : 1.0f, sb = scale_b ? scale_b[(size_t)b * C + c] : 1.0f;
            const float sa2 = gacn_mul(sa, sa), sb2 = gacn_mul(sb, sb);
            auto grad = [&](const T* p, int y, int x) {
                const float f = gacn_to_float(p[im.at(c, y, x)]);
                const float left = x > 0 ? gacn_to_float(p[im.at(c, y, x - 1)]) : 0.0f;
                const float up = y > 0 ? gacn_to_float(p[im.at(c, y - 1, x)]) : 0.0f;
                return gacn_grad_sq(f, left, up);
            };
            for (int y = 0; y < H; ++y)
                for (int x = 0; x < W; ++x)
                    g[(size_t)y * W + x] = gacn_sub(gacn_mul(grad(pa, y, x), sa2), gacn_mul(grad(pb, y, x), sb2));
            // Vertical window sums, then horizontal ones (the kernel's order).
            for (int y = 0; y < H; ++y)
                for (int x = 0; x < W; ++x) cols[(size_t)y * W + x] = window_sum11(&g[x], H, W, y);
            for (int y = 0; y < H; ++y)
                for (int x = 0; x < W; ++x)
                    gacn_from_float(gacn_sharp_sigmoid(window_sum11(&cols[(size_t)y * W], W, 1, x)),
                                    bm + (size_t)b * om.size() + om.at(c, y, x));
        }
    }
}

template <typename T>
void spatial_gate(const T* x, const float* weight, const float* bn, int relu, T* y, int n, int C, int H, int W,
                  int layout) {
    constexpr int R = GACN_GATE_RADIUS, K = 2 * R + 1;
    const Image im{layout, C, H, W};
    const size_t plane = (size_t)H * W;
    const int has_bn = bn != nullptr;
    std::vector<float> u((size_t)C * plane), logit(plane), gate(plane);
    for (int b = 0; b < n; ++b) {
        const T* px = x + (size_t)b * im.size();
        T* py = y + (size_t)b * im.size();
        for (int c = 0; c < C; ++c)
            for (int yy = 0; yy < H; ++yy)
                for (int xx = 0; xx < W; ++xx)
                    u[c * plane + (size_t)yy * W + xx] = gacn_gate_input(
                        gacn_to_float(px[im.at(c, yy, xx)]), relu, has_bn, has_bn ? bn[c] : 1.0f, has_bn ? bn[C + c] : 0.0f);
        // Per pixel the products are added in (c, dy, dx) order; taps outside the image add 0.
        std::fill(logit.begin(), logit.end(), 0.0f);
        for (int c = 0; c < C; ++c)
            for (int dy = 0; dy < K; ++dy)
                for (int dx = 0; dx < K; ++dx) {
                    const float wv = weight[(c * K + dy) * K + dx];
                    const int oy = dy - R, ox = dx - R;
                    for (int yy = oy < 0 ? -oy : 0; yy < H && yy + oy < H; ++yy) {
                        const float* src = &u[c * plane + (size_t)(yy + oy) * W];
                        float* dst = &logit[(size_t)yy * W];
                        for (int xx = ox < 0 ? -ox : 0; xx < W && xx + ox < W; ++xx)
                            dst[xx] = gacn_madd(dst[xx], wv, src[xx + ox]);
                    }
                }
        for (size_t i = 0; i < plane; ++i) gate[i] = gacn_sigmoid(logit[i]);
        for (int c = 0; c < C; ++c)
            for (int yy = 0; yy < H; ++yy)
                for (int xx = 0; xx < W; ++xx) {
                    const size_t p = (size_t)yy * W + xx;
                    gacn_from_float(gacn_gate_output(u[c * plane + p], gate[p]), py + im.at(c, yy, xx));
                }
    }
}

template <typename T>
void boundary_refine(const T* d4, const float* ya, const float* yb, float* d_out, float* m_out, int n, int na, int H,
                     int W) {
    constexpr int GR = GACN_GAUSS_RADIUS, BR = GACN_GF_RADIUS;
    const size_t plane = (size_t)H * W;
    float taps[2 * GR + 1];
    for (int k = 0; k <= 2 * GR; ++k) taps[k] = gacn_gauss_tap(k);
    std::vector<float> dv(plane), tv(plane), tmp(plane), bd(plane), a(plane), b(plane), sa(plane), sb(plane);
    std::vector<float> rows[4], sums[4], prod_ip(plane), prod_ii(plane);
    for (int v = 0; v < 4; ++v) rows[v].resize(plane), sums[v].resize(plane);
    for (int i = 0; i < n; ++i) {
        const T* pd4 = d4 + (size_t)i * plane;
        const float* pya = ya + (size_t)(na == 1 ? 0 : i) * plane;
        const float* pyb = yb + (size_t)i * plane;
        for (size_t p = 0; p < plane; ++p) {
            dv[p] = gacn_sharp_sigmoid(gacn_to_float(pd4[p]));
            tv[p] = gacn_guide(pya[p], pyb[p], dv[p]);
            d_out[(size_t)i * plane + p] = dv[p];
        }
        // Gaussian: horizontal then vertical 9-tap pass, zero padding.
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x) {
                float s = 0.0f;
                for (int k = 0; k <= 2 * GR; ++k) {
                    const int xx = x - GR + k;
                    s = gacn_madd(s, taps[k], xx >= 0 && xx < W ? dv[(size_t)y * W + xx] : 0.0f);
                }
                tmp[(size_t)y * W + x] = s;
            }
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x) {
                float s = 0.0f;
                for (int k = 0; k <= 2 * GR; ++k) {
                    const int yy = y - GR + k;
                    s = gacn_madd(s, taps[k], yy >= 0 && yy < H ? tmp[(size_t)yy * W + x] : 0.0f);
                }
                bd[(size_t)y * W + x] = gacn_boundary_weight(s);
            }
        // Guided filter: window sums (zero outside = the clipped window) of I, p, I*p, I*I.
        for (size_t p = 0; p < plane; ++p) {
            prod_ip[p] = gacn_mul(tv[p], dv[p]);
            prod_ii[p] = gacn_mul(tv[p], tv[p]);
        }
        const float* src[4] = {tv.data(), dv.data(), prod_ip.data(), prod_ii.data()};
        for (int v = 0; v < 4; ++v) {
            box_rows(src[v], rows[v].data(), H, W, BR);
            box_cols(rows[v].data(), sums[v].data(), H, W, BR);
        }
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x) {
                const size_t p = (size_t)y * W + x;
                const float count = (float)(gacn_window_count(y, BR, H) * gacn_window_count(x, BR, W));
                gacn_gf_coeffs(sums[0][p], sums[1][p], sums[2][p], sums[3][p], count, &a[p], &b[p]);
            }
        box_rows(a.data(), rows[0].data(), H, W, BR);
        box_cols(rows[0].data(), sa.data(), H, W, BR);
        box_rows(b.data(), rows[1].data(), H, W, BR);
        box_cols(rows[1].data(), sb.data(), H, W, BR);
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x) {
                const size_t p = (size_t)y * W + x;
                const float count = (float)(gacn_window_count(y, BR, H) * gacn_window_count(x, BR, W));
                m_out[(size_t)i * plane + p] = gacn_mask(sa[p], sb[p], count, tv[p], dv[p], bd[p]);
            }
    }
}

template <typename P, typename T>
void luma(const P* img, T* out, long long pixels, int channels, double maxv) {
    for (long long i = 0; i < pixels; ++i) {
        const P* p = img + i * channels;
        const float v = channels == 1 ? gacn_luma_gray(p[0], (float)maxv) : gacn_luma_rgb(p[0], p[1], p[2], maxv);
        gacn_from_float(v, out + i);
    }
}

template <typename P>
void blend(const P* a, const P* b, const float* m, P* out, long long pixels, long long pixels_a, int channels,
           float maxv) {
    for (long long i = 0; i < pixels; ++i)
        for (int k = 0; k < channels; ++k)
            out[i * channels + k] =
                (P)gacn_blend_value(m[i], a[(i % pixels_a) * channels + k], b[i * channels + k], maxv);
}

template <typename P>
void stack_first(const float* m1, const P* f0, const P* f1, float* v0, float* best, int32_t* index, P* out,
                 long long pixels, int channels) {
    for (long long i = 0; i < pixels; ++i) {
        const float va = m1[i], vb = gacn_sub(1.0f, va);
        const bool second = vb > va;
        v0[i] = va;
        best[i] = second ? vb : va;
        index[i] = second ? 1 : 0;
        const P* src = (second ? f1 : f0) + i * channels;
        for (int k = 0; k < channels; ++k) out[i * channels + k] = src[k];
    }
}

template <typename P>
void stack_next(const float* mi, const P* frame, int fi, const float* v0, float* best, int32_t* index, P* out,
                long long pixels, int channels) {
    for (long long i = 0; i < pixels; ++i) {
        const float v = gacn_stack_volume(v0[i], mi[i]);
        if (v > best[i]) {
            best[i] = v;
            index[i] = fi;
            for (int k = 0; k < channels; ++k) out[i * channels + k] = frame[i * channels + k];
        }
    }
}

/* The partial sums of the conv kernels' block tiles for one output channel plane, each summed in
 * row-major order (not the kernels' order: they agree to FP32 rounding). */
void conv_partials(const float* yk, int k, float* partials, int H, int W) {
    constexpr int K = GACN_CONV_COUT, TW = GACN_CONV_TILE_W, TH = GACN_CONV_TILE_H;
    const int bx = (W + TW - 1) / TW, by = (H + TH - 1) / TH;
    for (int b = 0; b < bx * by; ++b) {
        const int i0 = (b / bx) * TH, j0 = (b % bx) * TW;
        float s = 0.0f;
        for (int i = i0; i < std::min(H, i0 + TH); ++i)
            for (int j = j0; j < std::min(W, j0 + TW); ++j) s = gacn_add(s, yk[(size_t)i * W + j]);
        partials[(size_t)b * K + k] = s;
    }
}

/* Weights with the input's per-channel scale folded in: w' = fl(w * s) (s NULL: w). */
std::vector<float> fold_weights(const float* weight, const float* scale, int cin) {
    std::vector<float> w(weight, weight + (size_t)GACN_CONV_COUT * cin * 9);
    if (scale)
        for (size_t i = 0; i < w.size(); ++i) w[i] = gacn_mul(w[i], scale[(i / 9) % cin]);
    return w;
}

/* The tensor-core kernel's arithmetic (conv3x3_tc.cu), bit for bit with the emulated kernel: x split
 * as gacn_split_x, w' as gacn_split_w; per output, acc = bias, then for each chunk of 8 input
 * channels (zeros beyond cin), each tap (dy, dx) and each product of the kernel's order (x_lo*w_hi,
 * x_hi*w_lo, x_hi*w_hi) the 8 channels' exact TF32 products are added one at a time in FP32 (the
 * emulator's model of mma.sync). Then ReLU/BatchNorm as gacn_gate_input. */
void conv3x3_tc(const float* x, int cin, const float* weight, const float* bias, const float* bn, float* y,
                float* partials, int H, int W) {
    constexpr int K = GACN_CONV_COUT;
    const int chunks = (cin + 7) / 8, cpad = 8 * chunks, PW = W + 2;
    const size_t plane = (size_t)H * W, pplane = (size_t)(H + 2) * PW;
    // Zero-padded split input planes [part][channel][(H+2) x (W+2)]; channels beyond cin are zero.
    std::vector<float> xs(2 * cpad * pplane, 0.0f);
    for (int c = 0; c < cin; ++c)
        for (int i = 0; i < H; ++i)
            for (int j = 0; j < W; ++j) {
                const size_t q = (size_t)c * pplane + (size_t)(i + 1) * PW + j + 1;
                gacn_split_x(x[(size_t)c * plane + (size_t)i * W + j], &xs[cpad * pplane + q], &xs[q]);  // [0] lo, [1] hi
            }
    std::vector<float> ws(2 * (size_t)K * cpad * 9, 0.0f);  // [part][k][channel][tap]
    for (int k = 0; k < K; ++k)
        for (int c = 0; c < cin; ++c)
            for (int tap = 0; tap < 9; ++tap) {
                const size_t q = ((size_t)k * cpad + c) * 9 + tap;
                gacn_split_w(weight[((size_t)k * cin + c) * 9 + tap], &ws[(size_t)K * cpad * 9 + q], &ws[q]);
            }
    const int parts[3][2] = {{0, 1}, {1, 0}, {1, 1}};  // (x part, w part): lo*hi, hi*lo, hi*hi
    std::vector<float> acc(plane);
    for (int k = 0; k < K; ++k) {
        std::fill(acc.begin(), acc.end(), bias[k]);
        for (int c0 = 0; c0 < cpad; c0 += 8)
            for (int tap = 0; tap < 9; ++tap) {
                const int dy = tap / 3, dx = tap % 3;
                for (const auto& pr : parts)
                    for (int kk = 0; kk < 8; ++kk) {
                        const float wv = ws[(size_t)pr[1] * K * cpad * 9 + ((size_t)k * cpad + c0 + kk) * 9 + tap];
                        const float* xp = &xs[(size_t)pr[0] * cpad * pplane + (size_t)(c0 + kk) * pplane];
                        for (int i = 0; i < H; ++i) {
                            const float* row = xp + (size_t)(i + dy) * PW + dx;
                            float* out = acc.data() + (size_t)i * W;
                            for (int j = 0; j < W; ++j) out[j] = gacn_add(out[j], gacn_mul(row[j], wv));
                        }
                    }
            }
        const int has_bn = bn != nullptr;
        const float sc = has_bn ? bn[k] : 1.0f, sh = has_bn ? bn[K + k] : 0.0f;
        float* yk = y + (size_t)k * plane;
        for (size_t i = 0; i < plane; ++i) yk[i] = gacn_gate_input(acc[i], 1, has_bn, sc, sh);
        if (partials) conv_partials(yk, k, partials, H, W);
    }
}

/* gacn_cse_scale for one image, in the kernel's order: lane l (0..15) adds blocks l, l+16, ... in
 * float64, then the 16 lane sums are added in lane order. */
void cse_scale(const float* p, int blocks, long long count, const float* fc1, const float* fc2, float* s) {
    constexpr int K = GACN_CONV_COUT, LANES = 16;
    double mean[K];
    for (int k = 0; k < K; ++k) {
        double lanes[LANES];
        for (int l = 0; l < LANES; ++l) {
            double acc = 0.0;
            for (int b = l; b < blocks; b += LANES) acc = gacn_dadd(acc, (double)p[(size_t)b * K + k]);
            lanes[l] = acc;
        }
        double sum = 0.0;
        for (int l = 0; l < LANES; ++l) sum = gacn_dadd(sum, lanes[l]);
        mean[k] = sum / (double)count;
    }
    for (int k = 0; k < K; ++k) s[k] = gacn_cse_mlp(mean, fc1, fc2, k);
}

/* Conv2d 3x3 cin -> 16 + ReLU + BatchNorm (gacn_conv3x3_c16), one image. Per output channel a
 * float plane starts at the bias and adds gacn_mul(w, x) in (channel, dy, dx) order (the CUDA
 * kernel uses fmaf in the same order: the two agree to FP32 rounding, not bit for bit). The
 * partial sums cover the kernel's block tiles, each summed in row-major order. */
void conv3x3_c16(const float* x, int cin, const float* weight, const float* bias, const float* bn, float* y,
                 float* partials, int H, int W) {
    constexpr int K = GACN_CONV_COUT;
    const size_t plane = (size_t)H * W;
    std::vector<float> acc(plane);
    for (int k = 0; k < K; ++k) {
        std::fill(acc.begin(), acc.end(), bias[k]);
        for (int c = 0; c < cin; ++c) {
            const float* xc = x + (size_t)c * plane;
            for (int dy = 0; dy < 3; ++dy)
                for (int dx = 0; dx < 3; ++dx) {
                    const float wv = weight[((size_t)k * cin + c) * 9 + dy * 3 + dx];
                    for (int i = 0; i < H; ++i) {
                        const int yy = i + dy - 1;
                        if (yy < 0 || yy >= H) continue;
                        const float* row = xc + (size_t)yy * W;
                        float* out = acc.data() + (size_t)i * W;
                        const int j0 = dx == 0 ? 1 : 0, j1 = dx == 2 ? W - 1 : W;  // xx = j + dx - 1 inside
                        for (int j = j0; j < j1; ++j) out[j] = gacn_add(out[j], gacn_mul(wv, row[j + dx - 1]));
                    }
                }
        }
        const int has_bn = bn != nullptr;
        const float sc = has_bn ? bn[k] : 1.0f, sh = has_bn ? bn[K + k] : 0.0f;
        float* yk = y + (size_t)k * plane;
        for (size_t i = 0; i < plane; ++i) yk[i] = gacn_gate_input(acc[i], 1, has_bn, sc, sh);
        if (partials) conv_partials(yk, k, partials, H, W);
    }
}

}  // namespace

extern "C" {

GACN_API size_t gacn_conv3x3_c16_partials(int h, int w) {
    if (h < 1 || w < 1) return 0;
    return (size_t)((w + GACN_CONV_TILE_W - 1) / GACN_CONV_TILE_W) * ((h + GACN_CONV_TILE_H - 1) / GACN_CONV_TILE_H);
}

GACN_API int gacn_conv3x3_c16(const float* x, int cin, const float* weight, const float* bias, const float* bn,
                              float* y, float* partial_sums, int n, int h, int w, long long x_batch_stride,
                              long long y_batch_stride, gacn_stream_t) {
    if (!gacn_check_conv3x3(x, cin, weight, bias, y, n, h, w, x_batch_stride, y_batch_stride)) return GACN_ERR_INVALID;
    const size_t blocks = gacn_conv3x3_c16_partials(h, w);
    for (int b = 0; b < n; ++b)
        conv3x3_c16(x + (size_t)b * x_batch_stride, cin, weight, bias, bn, y + (size_t)b * y_batch_stride,
                    partial_sums ? partial_sums + (size_t)b * blocks * GACN_CONV_COUT : nullptr, h, w);
    return GACN_OK;
}

GACN_API int gacn_feature_conv_algo(int cin, int algo) {
    return gacn_feature_conv_uses_tc(cin, algo) ? GACN_CONV_3XTF32 : GACN_CONV_FFMA;
}

GACN_API int gacn_feature_conv(const float* x, int cin, const float* in_scale, long long scale_batch_stride,
                               const float* weight, const float* bias, const float* bn, float* y, float* partial_sums,
                               int n, int h, int w, long long x_batch_stride, long long y_batch_stride, int algo,
                               gacn_stream_t) {
    if (!gacn_check_feature_conv(x, cin, weight, bias, y, n, h, w, x_batch_stride, y_batch_stride, algo))
        return GACN_ERR_INVALID;
    const size_t blocks = gacn_conv3x3_c16_partials(h, w);
    const bool tc = gacn_feature_conv_algo(cin, algo) == GACN_CONV_3XTF32;
    for (int b = 0; b < n; ++b) {
        const std::vector<float> wf =
            fold_weights(weight, in_scale ? in_scale + (size_t)b * scale_batch_stride : nullptr, cin);
        float* ps = partial_sums ? partial_sums + (size_t)b * blocks * GACN_CONV_COUT : nullptr;
        (tc ? conv3x3_tc : conv3x3_c16)(x + (size_t)b * x_batch_stride, cin, wf.data(), bias, bn,
                                        y + (size_t)b * y_batch_stride, ps, h, w);
    }
    return GACN_OK;
}

GACN_API int gacn_cse_scale(const float* partial_sums, int n, int blocks, long long count, const float* fc1,
                            const float* fc2, float* s, long long s_batch_stride, gacn_stream_t) {
    if (!gacn_check_cse_scale(partial_sums, n, blocks, count, fc1, fc2, s, s_batch_stride)) return GACN_ERR_INVALID;
    for (int b = 0; b < n; ++b)
        cse_scale(partial_sums + (size_t)b * blocks * GACN_CONV_COUT, blocks, count, fc1, fc2,
                  s + (size_t)b * s_batch_stride);
    return GACN_OK;
}

GACN_API int gacn_activity_scaled(const void* fa, const void* fb, const float* scale_a, const float* scale_b,
                                  void* bm, int n, int na, int c, int h, int w, int in_dtype, int in_layout,
                                  int out_dtype, int out_layout, gacn_stream_t) {
    if (!gacn_check_activity_scaled(fa, fb, bm, n, na, c, h, w, in_dtype, in_layout, out_dtype, out_layout))
        return GACN_ERR_INVALID;
    const auto *f32a = (const float*)fa, *f32b = (const float*)fb;
    const auto *f16a = (const uint16_t*)fa, *f16b = (const uint16_t*)fb;
    if (in_dtype == GACN_F32 && out_dtype == GACN_F32)
        activity(f32a, f32b, scale_a, scale_b, (float*)bm, n, na, c, h, w, in_layout, out_layout);
    if (in_dtype == GACN_F32 && out_dtype == GACN_F16)
        activity(f32a, f32b, scale_a, scale_b, (uint16_t*)bm, n, na, c, h, w, in_layout, out_layout);
    if (in_dtype == GACN_F16 && out_dtype == GACN_F32)
        activity(f16a, f16b, scale_a, scale_b, (float*)bm, n, na, c, h, w, in_layout, out_layout);
    if (in_dtype == GACN_F16 && out_dtype == GACN_F16)
        activity(f16a, f16b, scale_a, scale_b, (uint16_t*)bm, n, na, c, h, w, in_layout, out_layout);
    return GACN_OK;
}

GACN_API int gacn_activity(const void* fa, const void* fb, void* bm, int n, int na, int c, int h, int w, int dtype,
                           int layout, gacn_stream_t stream) {
    if (!gacn_check_activity(fa, fb, bm, n, na, c, h, w, dtype, layout)) return GACN_ERR_INVALID;
    return gacn_activity_scaled(fa, fb, nullptr, nullptr, bm, n, na, c, h, w, dtype, layout, dtype, layout, stream);
}

GACN_API int gacn_spatial_gate(const void* x, const float* weight, const float* bn, int relu, void* y, int n, int c,
                               int h, int w, int dtype, int layout, gacn_stream_t) {
    if (!gacn_check_spatial_gate(x, weight, y, n, c, h, w, dtype, layout)) return GACN_ERR_INVALID;
    relu = relu != 0;
    if (dtype == GACN_F32)
        spatial_gate((const float*)x, weight, bn, relu, (float*)y, n, c, h, w, layout);
    else
        spatial_gate((const uint16_t*)x, weight, bn, relu, (uint16_t*)y, n, c, h, w, layout);
    return GACN_OK;
}

GACN_API int gacn_boundary_refine(const void* d4, const float* ya, const float* yb, float* d, float* m, int n, int na,
                                  int h, int w, int dtype, gacn_stream_t) {
    if (!gacn_check_boundary_refine(d4, ya, yb, d, m, n, na, h, w, dtype)) return GACN_ERR_INVALID;
    if (dtype == GACN_F32)
        boundary_refine((const float*)d4, ya, yb, d, m, n, na, h, w);
    else
        boundary_refine((const uint16_t*)d4, ya, yb, d, m, n, na, h, w);
    return GACN_OK;
}

GACN_API int gacn_luma(const void* img, void* out, int n, int h, int w, int channels, int bits, int dtype,
                       gacn_stream_t) {
    if (!gacn_check_luma(img, out, n, h, w, channels, bits, dtype)) return GACN_ERR_INVALID;
    const long long pixels = (long long)n * h * w;
    const double maxv = bits == 8 ? 255.0 : 65535.0;
    if (bits == 8 && dtype == GACN_F32) luma((const uint8_t*)img, (float*)out, pixels, channels, maxv);
    if (bits == 8 && dtype == GACN_F16) luma((const uint8_t*)img, (uint16_t*)out, pixels, channels, maxv);
    if (bits == 16 && dtype == GACN_F32) luma((const uint16_t*)img, (float*)out, pixels, channels, maxv);
    if (bits == 16 && dtype == GACN_F16) luma((const uint16_t*)img, (uint16_t*)out, pixels, channels, maxv);
    return GACN_OK;
}

GACN_API int gacn_blend(const void* a, const void* b, const float* m, void* out, int n, int na, int h, int w,
                        int channels, int bits, gacn_stream_t) {
    if (!gacn_check_blend(a, b, m, out, n, na, h, w, channels, bits)) return GACN_ERR_INVALID;
    const long long pixels = (long long)n * h * w, pixels_a = (long long)na * h * w;
    if (bits == 8)
        blend((const uint8_t*)a, (const uint8_t*)b, m, (uint8_t*)out, pixels, pixels_a, channels, 255.0f);
    else
        blend((const uint16_t*)a, (const uint16_t*)b, m, (uint16_t*)out, pixels, pixels_a, channels, 65535.0f);
    return GACN_OK;
}

GACN_API int gacn_stack_first(const float* m1, const void* frame0, const void* frame1, float* v0, float* best,
                              int32_t* index, void* out, int h, int w, int channels, int bits, gacn_stream_t) {
    if (!gacn_check_stack(m1, frame0, v0, best, index, out, h, w, channels, bits) || !frame1) return GACN_ERR_INVALID;
    const long long pixels = (long long)h * w;
    if (bits == 8)
        stack_first(m1, (const uint8_t*)frame0, (const uint8_t*)frame1, v0, best, index, (uint8_t*)out, pixels, channels);
    else
        stack_first(m1, (const uint16_t*)frame0, (const uint16_t*)frame1, v0, best, index, (uint16_t*)out, pixels,
                    channels);
    return GACN_OK;
}

GACN_API int gacn_stack_next(const float* mi, const void* frame, int i, const float* v0, float* best, int32_t* index,
                             void* out, int h, int w, int channels, int bits, gacn_stream_t) {
    if (!gacn_check_stack(mi, frame, v0, best, index, out, h, w, channels, bits) || i < 2) return GACN_ERR_INVALID;
    const long long pixels = (long long)h * w;
    if (bits == 8)
        stack_next(mi, (const uint8_t*)frame, i, v0, best, index, (uint8_t*)out, pixels, channels);
    else
        stack_next(mi, (const uint16_t*)frame, i, v0, best, index, (uint16_t*)out, pixels, channels);
    return GACN_OK;
}

GACN_API const char* gacn_backend(void) { return "cpu"; }

GACN_API int gacn_abi_version(void) { return 3; }

}  // extern "C"
