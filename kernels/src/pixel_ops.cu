/*
 * pixel_ops.cu: the elementwise operations (spec sections 1, 7, 8) and the library identity.
 * One thread per pixel in grid-stride loops; they are bound by memory and tiny next to the
 * network, so they stay scalar.
 */
#include "gacn_cuda.h"

namespace {

constexpr int PX_THREADS = 256;
constexpr unsigned PX_MAX_BLOCKS = 1u << 16;  // grid-stride beyond this

unsigned pixel_blocks(long long total) {
    const unsigned b = gacn_blocks(total, PX_THREADS);
    return b < PX_MAX_BLOCKS ? b : PX_MAX_BLOCKS;
}

GACN_DEV long long first_index() { return (long long)blockIdx.x * blockDim.x + threadIdx.x; }
GACN_DEV long long grid_stride() { return (long long)gridDim.x * blockDim.x; }

template <typename P, typename T>
__global__ void luma_kernel(const P* __restrict__ img, T* __restrict__ luma, long long pixels, int channels,
                            double maxv) {
    for (long long i = first_index(); i < pixels; i += grid_stride()) {
        const P* p = img + i * channels;
        const float v = channels == 1 ? gacn_luma_gray(p[0], (float)maxv) : gacn_luma_rgb(p[0], p[1], p[2], maxv);
        gacn_from_float(v, luma + i);
    }
}

template <typename P>
__global__ void blend_kernel(const P* __restrict__ a, const P* __restrict__ b, const float* __restrict__ m,
                             P* __restrict__ out, long long pixels, long long pixels_a, int channels, float maxv) {
    for (long long i = first_index(); i < pixels; i += grid_stride()) {
        const long long ia = i % pixels_a;  // na == 1 repeats image 0
        const float mv = m[i];
        for (int k = 0; k < channels; ++k)
            out[i * channels + k] = (P)gacn_blend_value(mv, a[ia * channels + k], b[i * channels + k], maxv);
    }
}

template <typename P>
GACN_DEV void copy_pixel(const P* src, P* dst, int channels) {
    for (int k = 0; k < channels; ++k) dst[k] = src[k];
}

template <typename P>
__global__ void stack_first_kernel(const float* __restrict__ m1, const P* __restrict__ f0, const P* __restrict__ f1,
                                   float* __restrict__ v0, float* __restrict__ best, int32_t* __restrict__ index,
                                   P* __restrict__ out, long long pixels, int channels) {
    for (long long i = first_index(); i < pixels; i += grid_stride()) {
        const float va = m1[i], vb = gacn_sub(1.0f, va);
        const bool second = vb > va;  // first index on ties
        v0[i] = va;
        best[i] = second ? vb : va;
        index[i] = second ? 1 : 0;
        copy_pixel((second ? f1 : f0) + i * channels, out + i * channels, channels);
    }
}

template <typename P>
__global__ void stack_next_kernel(const float* __restrict__ mi, const P* __restrict__ frame, int fi,
                                  const float* __restrict__ v0, float* __restrict__ best, int32_t* __restrict__ index,
                                  P* __restrict__ out, long long pixels, int channels) {
    for (long long i = first_index(); i < pixels; i += grid_stride()) {
        const float v = gacn_stack_volume(v0[i], mi[i]);
        if (v > best[i]) {
            best[i] = v;
            index[i] = fi;
            copy_pixel(frame + i * channels, out + i * channels, channels);
        }
    }
}

template <typename P>
int launch_luma(const void* img, void* luma, long long pixels, int channels, int dtype, double maxv,
                gacn_stream_t stream) {
    const dim3 grid(pixel_blocks(pixels));
    if (dtype == GACN_F32) {
        auto kernel = luma_kernel<P, float>;
        GACN_LAUNCH(kernel, grid, dim3(PX_THREADS), stream)
        (static_cast<const P*>(img), static_cast<float*>(luma), pixels, channels, maxv);
    } else {
        auto kernel = luma_kernel<P, uint16_t>;
        GACN_LAUNCH(kernel, grid, dim3(PX_THREADS), stream)
        (static_cast<const P*>(img), static_cast<uint16_t*>(luma), pixels, channels, maxv);
    }
    return (int)cudaGetLastError();
}

template <typename P>
int launch_blend(const void* a, const void* b, const float* m, void* out, long long pixels, long long pixels_a,
                 int channels, float maxv, gacn_stream_t stream) {
    auto kernel = blend_kernel<P>;
    GACN_LAUNCH(kernel, dim3(pixel_blocks(pixels)), dim3(PX_THREADS), stream)
    (static_cast<const P*>(a), static_cast<const P*>(b), m, static_cast<P*>(out), pixels, pixels_a, channels, maxv);
    return (int)cudaGetLastError();
}

template <typename P>
int launch_stack_first(const float* m1, const void* f0, const void* f1, float* v0, float* best, int32_t* index,
                       void* out, long long pixels, int channels, gacn_stream_t stream) {
    auto kernel = stack_first_kernel<P>;
    GACN_LAUNCH(kernel, dim3(pixel_blocks(pixels)), dim3(PX_THREADS), stream)
    (m1, static_cast<const P*>(f0), static_cast<const P*>(f1), v0, best, index, static_cast<P*>(out), pixels,
     channels);
    return (int)cudaGetLastError();
}

template <typename P>
int launch_stack_next(const float* mi, const void* frame, int i, const float* v0, float* best, int32_t* index,
                      void* out, long long pixels, int channels, gacn_stream_t stream) {
    auto kernel = stack_next_kernel<P>;
    GACN_LAUNCH(kernel, dim3(pixel_blocks(pixels)), dim3(PX_THREADS), stream)
    (mi, static_cast<const P*>(frame), i, v0, best, index, static_cast<P*>(out), pixels, channels);
    return (int)cudaGetLastError();
}

}  // namespace

extern "C" {

GACN_API int gacn_luma(const void* img, void* luma, int n, int h, int w, int channels, int bits, int dtype,
                       gacn_stream_t stream) {
    if (!gacn_check_luma(img, luma, n, h, w, channels, bits, dtype)) return GACN_ERR_INVALID;
    const long long pixels = (long long)n * h * w;
    return bits == 8 ? launch_luma<uint8_t>(img, luma, pixels, channels, dtype, 255.0, stream)
                     : launch_luma<uint16_t>(img, luma, pixels, channels, dtype, 65535.0, stream);
}

GACN_API int gacn_blend(const void* a, const void* b, const float* m, void* out, int n, int na, int h, int w,
                        int channels, int bits, gacn_stream_t stream) {
    if (!gacn_check_blend(a, b, m, out, n, na, h, w, channels, bits)) return GACN_ERR_INVALID;
    const long long pixels = (long long)n * h * w, pixels_a = (long long)na * h * w;
    return bits == 8 ? launch_blend<uint8_t>(a, b, m, out, pixels, pixels_a, channels, 255.0f, stream)
                     : launch_blend<uint16_t>(a, b, m, out, pixels, pixels_a, channels, 65535.0f, stream);
}

GACN_API int gacn_stack_first(const float* m1, const void* frame0, const void* frame1, float* v0, float* best,
                              int32_t* index, void* out, int h, int w, int channels, int bits, gacn_stream_t stream) {
    if (!gacn_check_stack(m1, frame0, v0, best, index, out, h, w, channels, bits) || !frame1)
        return GACN_ERR_INVALID;
    const long long pixels = (long long)h * w;
    return bits == 8 ? launch_stack_first<uint8_t>(m1, frame0, frame1, v0, best, index, out, pixels, channels, stream)
                     : launch_stack_first<uint16_t>(m1, frame0, frame1, v0, best, index, out, pixels, channels, stream);
}

GACN_API int gacn_stack_next(const float* mi, const void* frame, int i, const float* v0, float* best, int32_t* index,
                             void* out, int h, int w, int channels, int bits, gacn_stream_t stream) {
    if (!gacn_check_stack(mi, frame, v0, best, index, out, h, w, channels, bits) || i < 2) return GACN_ERR_INVALID;
    const long long pixels = (long long)h * w;
    return bits == 8 ? launch_stack_next<uint8_t>(mi, frame, i, v0, best, index, out, pixels, channels, stream)
                     : launch_stack_next<uint16_t>(mi, frame, i, v0, best, index, out, pixels, channels, stream);
}

GACN_API const char* gacn_backend(void) {
#if defined(GACN_EMU)
    return "cuda-emu";
#else
    return "cuda";
#endif
}

GACN_API int gacn_abi_version(void) { return 3; }

}  // extern "C"
