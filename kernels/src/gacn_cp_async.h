/*
 * gacn_cp_async.h: asynchronous global -> shared copies for the convolution kernels.
 */
#ifndef GACN_CP_ASYNC_H
#define GACN_CP_ASYNC_H

#include "gacn_cuda.h"

namespace {

/* Copies to shared memory that complete asynchronously on sm_80+ (cp.async, zero-filled when
 * `valid` is false: src-size 0 reads nothing), and synchronously elsewhere (sm_75, emulator). */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define CV_ASYNC 1
#endif
GACN_DEV void cv_copy16(float* s, const float* g, bool valid) {
#if defined(CV_ASYNC)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"((unsigned)__cvta_generic_to_shared(s)),
                 "l"(g), "r"(valid ? 16 : 0));
#else
    *reinterpret_cast<float4*>(s) = valid ? *reinterpret_cast<const float4*>(g) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#endif
}
GACN_DEV void cv_copy4(float* s, const float* g, bool valid) {
#if defined(CV_ASYNC)
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"((unsigned)__cvta_generic_to_shared(s)),
                 "l"(g), "r"(valid ? 4 : 0));
#else
    *s = valid ? *g : 0.0f;
#endif
}
GACN_DEV void cv_commit() {
#if defined(CV_ASYNC)
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}
/* Waits for this thread's copies but the most recent `pending` groups (0 or 1). */
GACN_DEV void cv_wait(int pending) {
#if defined(CV_ASYNC)
    if (pending)
        asm volatile("cp.async.wait_group 1;\n" ::);
    else
        asm volatile("cp.async.wait_group 0;\n" ::);
#else
    (void)pending;
#endif
}

}  // namespace

#endif /* GACN_CP_ASYNC_H */
