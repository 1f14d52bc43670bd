/*
 * gacn_args.h: argument checks shared by the CUDA and CPU launchers, so that both libraries
 * reject exactly the same calls with GACN_ERR_INVALID.
 */
#ifndef GACN_ARGS_H
#define GACN_ARGS_H

#include "gacn_kernels.h"

/* Grid z (batch) is limited to 65535 on the device; the CPU library keeps the same bound. */
#define GACN_MAX_BATCH 65535
/* Pixel indices inside one plane are 32-bit; offsets across planes and channels are 64-bit. */
#define GACN_MAX_PLANE 0x7fffffffLL

static inline int gacn_valid_nchw(int n, int c, int h, int w) {
    return n >= 1 && n <= GACN_MAX_BATCH && c >= 1 && h >= 1 && w >= 1 && (long long)h * w <= GACN_MAX_PLANE;
}
static inline int gacn_valid_dtype(int dtype) { return dtype == GACN_F32 || dtype == GACN_F16; }
static inline int gacn_valid_layout(int layout) { return layout == GACN_NCHW || layout == GACN_NHWC; }
static inline int gacn_valid_batch(int n, int na) { return na == 1 || na == n; }
static inline int gacn_valid_image(int channels, int bits) {
    return (channels == 1 || channels == 3) && (bits == 8 || bits == 16);
}

static inline int gacn_check_activity(const void* fa, const void* fb, const void* bm, int n, int na, int c, int h,
                                      int w, int dtype, int layout) {
    return fa && fb && bm && gacn_valid_nchw(n, c, h, w) && gacn_valid_batch(n, na) && gacn_valid_dtype(dtype) &&
           gacn_valid_layout(layout);
}
static inline int gacn_check_spatial_gate(const void* x, const float* weight, const void* y, int n, int c, int h,
                                          int w, int dtype, int layout) {
    return x && weight && y && x != y && gacn_valid_nchw(n, c, h, w) && gacn_valid_dtype(dtype) &&
           gacn_valid_layout(layout);
}
static inline int gacn_check_boundary_refine(const void* d4, const float* ya, const float* yb, const float* d,
                                             const float* m, int n, int na, int h, int w, int dtype) {
    return d4 && ya && yb && d && m && gacn_valid_nchw(n, 1, h, w) && h >= 8 && w >= 8 && gacn_valid_batch(n, na) &&
           gacn_valid_dtype(dtype);
}
static inline int gacn_check_luma(const void* img, const void* luma, int n, int h, int w, int channels, int bits,
                                  int dtype) {
    return img && luma && gacn_valid_nchw(n, channels, h, w) && gacn_valid_image(channels, bits) &&
           gacn_valid_dtype(dtype);
}
static inline int gacn_check_blend(const void* a, const void* b, const float* m, const void* out, int n, int na,
                                   int h, int w, int channels, int bits) {
    return a && b && m && out && gacn_valid_nchw(n, channels, h, w) && gacn_valid_batch(n, na) &&
           gacn_valid_image(channels, bits);
}
static inline int gacn_check_stack(const float* m, const void* frame, const float* v0, const float* best,
                                   const int32_t* index, const void* out, int h, int w, int channels, int bits) {
    return m && frame && v0 && best && index && out && gacn_valid_nchw(1, channels, h, w) &&
           gacn_valid_image(channels, bits);
}

/* gacn_conv3x3_c16: 16 output channels; a block (one partial sum per channel) covers a
 * GACN_CONV_TILE_H x GACN_CONV_TILE_W output tile, in the CUDA kernel and the CPU library alike. */
#define GACN_CONV_COUT 16
#define GACN_CONV_TILE_W 64
#define GACN_CONV_TILE_H 16
static inline int gacn_check_conv3x3(const float* x, int cin, const float* weight, const float* bias, const float* y,
                                     int n, int h, int w, long long x_batch_stride, long long y_batch_stride) {
    if (!(x && weight && bias && y && gacn_valid_nchw(n, cin, h, w))) return 0;
    const long long plane = (long long)h * w;
    return x_batch_stride >= cin * plane && y_batch_stride >= GACN_CONV_COUT * plane;
}

static inline int gacn_check_feature_conv(const float* x, int cin, const float* weight, const float* bias,
                                          const float* y, int n, int h, int w, long long x_batch_stride,
                                          long long y_batch_stride, int algo) {
    return (algo == GACN_CONV_FFMA || algo == GACN_CONV_3XTF32) &&
           gacn_check_conv3x3(x, cin, weight, bias, y, n, h, w, x_batch_stride, y_batch_stride);
}
/* The tensor-core feature conv stages 8 input channels per k-step; below that the FMA kernel runs. */
#define GACN_TC_MIN_CIN 8
static inline int gacn_feature_conv_uses_tc(int cin, int algo) { return algo == GACN_CONV_3XTF32 && cin >= GACN_TC_MIN_CIN; }

static inline int gacn_check_cse_scale(const float* partial_sums, int n, int blocks, long long count, const float* fc1,
                                       const float* fc2, const float* s, long long s_batch_stride) {
    return partial_sums && fc1 && fc2 && s && n >= 1 && n <= GACN_MAX_BATCH && blocks >= 1 && count >= 1 &&
           s_batch_stride >= GACN_CONV_COUT;
}

/* Output layout: the input's, or NCHW in -> NHWC out. */
static inline int gacn_valid_activity_layouts(int in_layout, int out_layout) {
    return gacn_valid_layout(in_layout) && gacn_valid_layout(out_layout) &&
           (in_layout == out_layout || (in_layout == GACN_NCHW && out_layout == GACN_NHWC));
}
static inline int gacn_check_activity_scaled(const void* fa, const void* fb, const void* bm, int n, int na, int c,
                                             int h, int w, int in_dtype, int in_layout, int out_dtype,
                                             int out_layout) {
    return fa && fb && bm && gacn_valid_nchw(n, c, h, w) && gacn_valid_batch(n, na) && gacn_valid_dtype(in_dtype) &&
           gacn_valid_dtype(out_dtype) && gacn_valid_activity_layouts(in_layout, out_layout);
}

#endif /* GACN_ARGS_H */
