/*
 * gacn_math.h: the per-pixel arithmetic of GACN's custom operations, written once for the
 * CUDA kernels (device), the CPU reference library (host) and the kernel emulator (host).
 *
 * Exactness rules (the CPU tests check the kernels' arithmetic through this file):
 *  - Every product that feeds a sum goes through gacn_mul/gacn_add/gacn_sub, which are
 *    __fmul_rn/__fadd_rn/__fsub_rn on the device: nvcc never contracts those into FMAs, so a
 *    device expression rounds exactly like the host one (the host side is built with
 *    -ffp-contract=off). Division and sqrt are IEEE-rounded on both sides (no fast math).
 *  - The only device/host difference left is expf in gacn_sigmoid (CUDA: max 2 ulp; glibc:
 *    correctly rounded). The Gaussian taps are computed on the host for both.
 *  - FP16 conversions round to nearest even on both sides (own bit manipulation on the host,
 *    so the CPU library needs no CUDA header).
 */
#ifndef GACN_MATH_H
#define GACN_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define GACN_HD __host__ __device__
#else
#define GACN_HD
#endif

/* Constants of spec sections 4-8 (same names as export/model.py). */
#define GACN_SHARPNESS 1000.0f
#define GACN_ACTIVITY_RADIUS 5
#define GACN_GATE_RADIUS 3
#define GACN_GAUSS_RADIUS 4
#define GACN_GF_RADIUS 3
#define GACN_GF_EPS 0.1f
#define GACN_THRESH_HIGH 0.8f
#define GACN_THRESH_LOW 0.1f
#define GACN_STACK_EPS 1e-4f

/* ---- rounding-exact elementary operations ------------------------------------------- */
GACN_HD inline float gacn_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
GACN_HD inline float gacn_add(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
GACN_HD inline float gacn_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}
/* acc + a*b with the product rounded first (never an FMA). */
GACN_HD inline float gacn_madd(float acc, float a, float b) { return gacn_add(acc, gacn_mul(a, b)); }

GACN_HD inline double gacn_dmul(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}
GACN_HD inline double gacn_dadd(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dadd_rn(a, b);
#else
    return a + b;
#endif
}

/* ---- FP16 <-> FP32/FP64 (IEEE binary16 bits in a uint16_t) --------------------------- */
GACN_HD inline float gacn_h2f(uint16_t h) {
#if defined(__CUDA_ARCH__)
    return __half2float(__ushort_as_half(h));
#else
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: mant * 2^-24, renormalised */
            uint32_t e = 113;
            while (!(mant & 0x400u)) {
                mant <<= 1;
                --e;
            }
            bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
#endif
}

GACN_HD inline uint16_t gacn_f2h(float f) {
#if defined(__CUDA_ARCH__)
    return __half_as_ushort(__float2half_rn(f));
#else
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);      /* NaN */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);     /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) {                                       /* below 2^-14: subnormal */
        if (ax <= 0x33000000u) return sign;                       /* <= 2^-25 rounds to 0 */
        uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - (ax >> 23);                       /* 14..24 */
        uint32_t r = mant >> shift, rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) ++r;
        return (uint16_t)(sign | r);
    }
    uint32_t r = (ax >> 13) - (112u << 10), rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return (uint16_t)(sign | r);
#endif
}

/* Element access for the two storage types: float (GACN_F32) and FP16 bits (GACN_F16). */
GACN_HD inline float gacn_to_float(float v) { return v; }
GACN_HD inline float gacn_to_float(uint16_t v) { return gacn_h2f(v); }
GACN_HD inline void gacn_from_float(float v, float* out) { *out = v; }
GACN_HD inline void gacn_from_float(float v, uint16_t* out) { *out = gacn_f2h(v); }

/* ---- spec sections 4 and 5: sigmoid and the activity gradient ------------------------ */
/* 1/(1+e^-t) with the accurate expf (device: max 2 ulp, no __expf). Saturates exactly to 0/1. */
GACN_HD inline float gacn_sigmoid(float t) { return 1.0f / (1.0f + expf(-t)); }

/* sigmoid(1000 t): the "sharp" sigmoid of Bm and D. */
GACN_HD inline float gacn_sharp_sigmoid(float t) { return gacn_sigmoid(gacn_mul(GACN_SHARPNESS, t)); }

/* G of spec section 4 at one pixel: (left - f)^2 + (up - f)^2, as export.model.squared_gradient. */
GACN_HD inline float gacn_grad_sq(float f, float left, float up) {
    float dl = gacn_sub(left, f), du = gacn_sub(up, f);
    return gacn_add(gacn_mul(dl, dl), gacn_mul(du, du));
}

/* ---- spec section 2 (SSE) with the preceding ReLU and BatchNorm ---------------------- */
/* u = relu ? max(x,0) : x, then u*scale + shift when has_bn (ConvBlock: ReLU before BN). */
GACN_HD inline float gacn_gate_input(float x, int relu, int has_bn, float scale, float shift) {
    float u = (relu && !(x > 0.0f)) ? 0.0f : x;
    return has_bn ? gacn_add(gacn_mul(u, scale), shift) : u;
}
/* y = u * gate with gate = gacn_sigmoid(logit), computed once per pixel for all channels. */
GACN_HD inline float gacn_gate_output(float u, float gate) { return gacn_mul(u, gate); }

/* ---- spec section 6 -------------------------------------------------------------------- */
/* Tap k (0..8) of the normalised 1-D Gaussian (sigma 8, radius 4) whose outer product is the
 * 9x9 kernel: exp(-x^2/128) / sum in float64, then rounded to float, as
 * export.model.gaussian_taps().astype(float32). The sum is added in numpy's pairwise order. */
GACN_HD inline double gacn_gauss_weight(int k) {
    double x = (double)(k - GACN_GAUSS_RADIUS);
    return exp(-(x * x) / 128.0);
}
GACN_HD inline float gacn_gauss_tap(int k) {
    double sum = (((gacn_gauss_weight(0) + gacn_gauss_weight(1)) + (gacn_gauss_weight(2) + gacn_gauss_weight(3))) +
                  ((gacn_gauss_weight(4) + gacn_gauss_weight(5)) + (gacn_gauss_weight(6) + gacn_gauss_weight(7)))) +
                 gacn_gauss_weight(8);
    return (float)(gacn_gauss_weight(k) / sum);
}

/* Provisional fusion T = ya*D + (1-D)*yb: the guided filter's guide. */
GACN_HD inline float gacn_guide(float ya, float yb, float d) {
    return gacn_add(gacn_mul(ya, d), gacn_mul(gacn_sub(1.0f, d), yb));
}

/* Boundary weight bd from the Gaussian-smoothed decision Bl (spec section 6, same op order). */
GACN_HD inline float gacn_boundary_weight(float bl) {
    float m1 = bl > GACN_THRESH_HIGH ? 1.0f : 0.0f;
    float m2 = bl < GACN_THRESH_LOW ? 1.0f : 0.0f;
    float m3 = gacn_add(gacn_mul(m1, bl), gacn_mul(m2, gacn_sub(1.0f, bl)));
    float t = gacn_add(gacn_mul(bl, m3), gacn_mul(0.5f, gacn_sub(1.0f, m3)));
    return gacn_sub(1.0f, fabsf(gacn_sub(gacn_mul(2.0f, t), 1.0f)));
}

/* Number of image pixels in the clipped window [i-r, i+r] of a dimension of size n. */
GACN_HD inline int gacn_window_count(int i, int r, int n) {
    int lo = i - r < 0 ? 0 : i - r;
    int hi = i + r > n - 1 ? n - 1 : i + r;
    return hi - lo + 1;
}

/* Guided-filter coefficients from the window sums of I, p, I*p, I*I and the pixel count. */
GACN_HD inline void gacn_gf_coeffs(float s_i, float s_p, float s_ip, float s_ii, float count, float* a, float* b) {
    float mi = s_i / count, mp = s_p / count, mip = s_ip / count, mii = s_ii / count;
    float av = gacn_sub(mip, gacn_mul(mi, mp)) / gacn_add(gacn_sub(mii, gacn_mul(mi, mi)), GACN_GF_EPS);
    *a = av;
    *b = gacn_sub(mp, gacn_mul(av, mi));
}

/* Final mask M = q*bd + D*(1-bd), q = mean(a)*I + mean(b). */
GACN_HD inline float gacn_mask(float sum_a, float sum_b, float count, float guide, float d, float bd) {
    float q = gacn_add(gacn_mul(sum_a / count, guide), sum_b / count);
    return gacn_add(gacn_mul(q, bd), gacn_mul(d, gacn_sub(1.0f, bd)));
}

/* ---- spec section 2: the CSE scale from the channel means ---------------------------------- */
/* s_k = sigmoid(sum_j fc2[k][j] * relu(sum_c fc1[j][c] * mean[c])), fc1 [2,16], fc2 [16,2], all in
 * float64 in this order, rounded to float32 once (a NaN mean stays NaN). */
GACN_HD inline float gacn_cse_mlp(const double* mean, const float* fc1, const float* fc2, int k) {
    double hidden[2];
    for (int j = 0; j < 2; ++j) {
        double a = 0.0;
        for (int c = 0; c < 16; ++c) a = gacn_dadd(a, gacn_dmul((double)fc1[j * 16 + c], mean[c]));
        hidden[j] = a < 0.0 ? 0.0 : a;
    }
    const double z = gacn_dadd(gacn_dmul((double)fc2[k * 2], hidden[0]), gacn_dmul((double)fc2[k * 2 + 1], hidden[1]));
    return (float)(1.0 / (1.0 + exp(-z)));
}

/* ---- TF32 splitting for the 3xTF32 feature convolution (gacn_feature_conv) ---------------- */
GACN_HD inline uint32_t gacn_float_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}
GACN_HD inline float gacn_bits_float(uint32_t b) {
    float f;
    memcpy(&f, &b, 4);
    return f;
}
#define GACN_TF32_MASK 0xffffe000u  /* sign, exponent and the top 10 mantissa bits */
/* cvt.rna.tf32.f32: round to nearest, ties away from zero, to TF32 (10 mantissa bits); inf and
 * NaN keep their bits (then masked). This is the instruction's SASS on sm_80..sm_90 (VIADD 0x1000,
 * FSETP |x| >= inf, SEL, LOP3), spelled out so that host and device agree bit for bit. */
GACN_HD inline float gacn_tf32_rna(float x) {
    uint32_t b = gacn_float_bits(x);
    if ((b & 0x7f800000u) != 0x7f800000u) b += 0x1000u;
    return gacn_bits_float(b & GACN_TF32_MASK);
}
/* The same rounding for finite x in two instructions (VIADD, LOP3): the kernel's lo parts. */
GACN_HD inline float gacn_tf32_rna_finite(float x) { return gacn_bits_float((gacn_float_bits(x) + 0x1000u) & GACN_TF32_MASK); }
/* Truncation to TF32 (one LOP3; keeps NaN a NaN, inf an inf). */
GACN_HD inline float gacn_tf32_trunc(float x) { return gacn_bits_float(gacn_float_bits(x) & GACN_TF32_MASK); }
/* The input split of 3xTF32: hi = trunc(x) (|x - hi| < 2^-10 |x|), lo = rna(x - hi) with x - hi
 * exact, so |x - hi - lo| <= 2^-11 |x - hi| < 2^-21 |x|. Four instructions per element, and a NaN
 * input stays NaN through hi. Both parts are TF32 values (what mma.sync is given). */
GACN_HD inline void gacn_split_x(float x, float* hi, float* lo) {
    const float h = gacn_tf32_trunc(x);
    *hi = h;
    *lo = gacn_tf32_rna_finite(gacn_sub(x, h));
}
/* The weight split (once per staged weight): hi = rna(w) (|w - hi| <= 2^-11 |w|), lo = rna(w - hi),
 * |w - hi - lo| <= 2^-22 |w|. */
GACN_HD inline void gacn_split_w(float w, float* hi, float* lo) {
    const float h = gacn_tf32_rna(w);
    *hi = h;
    *lo = gacn_tf32_rna(gacn_sub(w, h));
}

/* ---- spec sections 1, 7, 8 --------------------------------------------------------------- */
/* Spec section 1 as engine.preprocess.luma (gacn_kernels.h gives the exact recipe). An FP16 luma
 * is this float32 value rounded to FP16, as torch's luma.half() of the float32 plane. */
GACN_HD inline float gacn_luma_gray(uint32_t v, float maxv) { return (float)v / maxv; }
GACN_HD inline float gacn_luma_rgb(uint32_t r, uint32_t g, uint32_t b, double maxv) {
    const double s = 1.0 / maxv;
    return (float)gacn_dadd(gacn_dadd(gacn_dmul(gacn_dmul((double)r, s), 0.2125), gacn_dmul(gacn_dmul((double)g, s), 0.7154)),
                            gacn_dmul(gacn_dmul((double)b, s), 0.0721));
}

/* round(clip(m*A + (1-m)*B, 0, 1) * max) with A = a/max, B = b/max in float32. */
GACN_HD inline uint32_t gacn_blend_value(float m, uint32_t a, uint32_t b, float maxv) {
    float fa = (float)a / maxv, fb = (float)b / maxv;
    float v = gacn_add(gacn_mul(m, fa), gacn_mul(gacn_sub(1.0f, m), fb));
    v = fminf(fmaxf(v, 0.0f), 1.0f);
    return (uint32_t)rintf(gacn_mul(v, maxv));
}

/* Decision volume of frame i >= 2: V_i = V_0 / (M_i + 1e-4) * (1 - M_i). */
GACN_HD inline float gacn_stack_volume(float v0, float m) {
    return gacn_mul(v0 / gacn_add(m, GACN_STACK_EPS), gacn_sub(1.0f, m));
}

#endif /* GACN_MATH_H */
