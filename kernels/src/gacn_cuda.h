/*
 * gacn_cuda.h: what every kernel source includes. Under nvcc it is the CUDA runtime; with
 * GACN_EMU defined (a host C++ build of the same .cu files, see kernels/emu/) it is the
 * block/thread emulator, so the kernels' indexing, halos and barriers run in CPU tests.
 */
#ifndef GACN_CUDA_H
#define GACN_CUDA_H

#include <stddef.h>
#include <stdint.h>

#if defined(GACN_EMU)
#include "../emu/cuda_emu.h"
#define GACN_LAUNCH(kernel, grid, block, stream) ::gacn_emu::launch(kernel, grid, block, stream)
#define GACN_LAUNCH_SMEM(kernel, grid, block, smem, stream) ::gacn_emu::launch(kernel, grid, block, stream, smem)
/* The block's dynamic shared memory as `type* name`. */
#define GACN_DYNAMIC_SMEM(type, name) type* name = reinterpret_cast<type*>(::gacn_emu::tl_dyn_smem)
#else
#include <cuda_runtime.h>
#define GACN_LAUNCH(kernel, grid, block, stream) kernel<<<grid, block, 0, (cudaStream_t)(stream)>>>
#define GACN_LAUNCH_SMEM(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, (cudaStream_t)(stream)>>>
#define GACN_DYNAMIC_SMEM(type, name)                        \
    extern __shared__ __align__(16) unsigned char name##_raw[]; \
    type* name = reinterpret_cast<type*>(name##_raw)
#endif

#include "gacn_args.h"
#include "gacn_kernels.h"
#include "gacn_math.h"

#define GACN_DEV __device__ __forceinline__

/* Blocks needed to cover `total` items with `per_block` items each. */
static inline unsigned gacn_blocks(long long total, int per_block) {
    return (unsigned)((total + per_block - 1) / per_block);
}

/* Whether `p` may be read with `bytes`-wide vector loads. */
static inline bool gacn_aligned(const void* p, size_t bytes) { return ((uintptr_t)p % bytes) == 0; }

/* Unpacks 8 FP16 values (one 16-byte load) or 8 floats (two 16-byte loads) to floats. */
GACN_DEV void gacn_load8(const uint16_t* p, float* v) {
    uint4 q = *reinterpret_cast<const uint4*>(p);
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        v[2 * i] = gacn_h2f((uint16_t)(w[i] & 0xffffu));
        v[2 * i + 1] = gacn_h2f((uint16_t)(w[i] >> 16));
    }
}
GACN_DEV void gacn_load8(const float* p, float* v) {
    float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
GACN_DEV void gacn_store8(uint16_t* p, const float* v) {
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) w[i] = (uint32_t)gacn_f2h(v[2 * i]) | ((uint32_t)gacn_f2h(v[2 * i + 1]) << 16);
    *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
}
/* Two adjacent values in one 4-byte (FP16) or 8-byte (FP32) store; p aligned to that size. */
GACN_DEV void gacn_store2(uint16_t* p, const float* v) {
    *reinterpret_cast<uint32_t*>(p) = (uint32_t)gacn_f2h(v[0]) | ((uint32_t)gacn_f2h(v[1]) << 16);
}
GACN_DEV void gacn_store2(float* p, const float* v) { *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]); }
GACN_DEV void gacn_store8(float* p, const float* v) {
    reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

#endif /* GACN_CUDA_H */
