/*
 * activity_parts.h: spec section 4 (the activity comparison) of one pair, fused and threaded, on
 * the host: the OpenVINO extension operation GacnActivityParts runs it (openvino_ops.cpp).
 *
 * Channels-last, because that is the layout OpenVINO's CPU plugin keeps the feature maps in: the
 * graph hands the operation Transpose(u, NCHW -> NHWC) views, which the plugin resolves to no
 * copy at all (a planar input would cost one reorder per tensor, more than the fused step saves).
 *
 * Input: the unscaled feature parts u of frames A and B (P parts, [H,W,16] each) and their CSE
 * scales s ([16] each); output Bm [H,W,16P] (channel 16p + c from part p):
 *   d  = s_A^2 G(u_A) - s_B^2 G(u_B),   G(u) = (u(i,j-1) - u)^2 + (u(i-1,j) - u)^2  (zero outside)
 *   Bm = sigmoid(1000 * boxsum11(d))    (zero-padded 11x11 window: vertical pass, then horizontal)
 * The CPU twin's per-pixel arithmetic (kernels/src/gacn_math.h: G as gacn_grad_sq, the scale as
 * fl(G * fl(s s))), each window pass summed in tap order (the OpenVINO graph's order; the CUDA
 * kernel adds 11-blocks), the exponential a vectorisable polynomial (within 2 ulp of expf,
 * tested). One read of the inputs, one write of Bm; a task is one row band of one part.
 */
#pragma once

#include <cstddef>

namespace gacn_ov {

struct ActivityParts {
    const float* const* ua;  // [parts] [H,W,16]
    const float* const* ub;
    const float* const* sa;  // [parts] [16]
    const float* const* sb;
    int parts, H, W;
    float* bm;               // [H,W,16 * parts]
};

/* Number of independent tasks of one call and task i of them: any order, any thread; together
   they write every element of bm once. */
size_t activity_tasks(const ActivityParts& a);
void activity_task(const ActivityParts& a, size_t i);

/* e^x as activity_task computes it (tests compare it with expf). */
float activity_exp(float x);

}  // namespace gacn_ov
