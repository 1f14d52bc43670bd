/*
 * conv3x3_tc.cu: gacn_feature_conv's GACN_CONV_3XTF32 kernel, the feature ConvBlock (Conv2d 3x3
 * cin -> 16, bias, ReLU, BatchNorm, CSE partial sums) on the tensor cores at FP32-level accuracy.
 *
 * Implicit GEMM with mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 (sm_80+): M = pixels (an
 * m-tile is 16 consecutive pixels of one output row), N = the 16 output channels (two n-tiles), K =
 * (tap, input channel): one k-step is one 3x3 tap of 8 input channels. Every FP32 operand is split
 * into two TF32 values, x = x_hi + x_lo and w' = w_hi + w_lo, and each k-step issues, per n-tile,
 * x_lo*w_hi, x_hi*w_lo, x_hi*w_hi (six mma.sync per m-tile), accumulated in FP32 (x_lo*w_lo, ~2^-21
 * of the product, is dropped). kernels/README.md derives the error bound.
 *
 * A block of 256 threads (8 warps) owns the same 16 x 64 output tile as gacn_conv3x3_c16 (so the
 * partial sums have the same tiling); warp w owns tile rows 2w and 2w+1, i.e. 8 m-tiles, whose
 * 8 x 2 x 4 accumulators (64 per lane) start at the bias. Input channels are staged 8 at a time
 * into two buffers with cp.async (chunk i+1 loads while chunk i computes), per channel an 18 x 72
 * tile (image columns x0-4 .. x0+67, as the FMA kernel) in a plane padded to 1304 floats
 * (= 24 mod 32 banks: the A-fragment loads of a warp hit 32 different banks). The chunk's weights
 * are folded with the input's per-channel scale (w' = fl(w s)), split, and stored in fragment order
 * [tap][hi, lo][lane][4] so that one lane's B fragments of a tap are two conflict-free 16-byte loads. Per tap and m-tile a
 * lane loads its 4 A values, splits them (hi = trunc, lo = rna(x - hi): 4 instructions each) and
 * issues 6 mma. Dynamic shared memory: 2 x (8 x 1304 + 9 x 32 x 8) floats = 101,888 B.
 *
 * The emulator (kernels/emu/cuda_emu.h) runs this file with the mma of its model: the PTX fragment
 * layout and exact TF32 products added one by one in FP32 (ordering assumption); the CPU library's
 * twin sums in that order, so the two agree bit for bit (tests/test_kernels_tc.py).
 */
#include "gacn_cuda.h"
#include "gacn_cp_async.h"

#include <atomic>

namespace {

[[maybe_unused]] constexpr int TC_K = GACN_CONV_COUT;           // 16 output channels = two n-tiles of 8
constexpr int TC_TW = GACN_CONV_TILE_W;          // 64 output columns per block
constexpr int TC_TH = GACN_CONV_TILE_H;          // 16 output rows per block
constexpr int TC_THREADS = 256;                  // 8 warps; warp w: tile rows 2w, 2w + 1
constexpr int TC_MT = 8;                         // m-tiles per warp: 2 rows x 4 x 16 pixels
constexpr int TC_CK = 8;                         // input channels per chunk = k of one mma
constexpr int TC_ROWS = TC_TH + 2;               // 18 staged rows: y0-1 .. y0+16
constexpr int TC_LDX = TC_TW + 8;                // 72 staged columns: x0-4 .. x0+67
constexpr int TC_PLANE = TC_ROWS * TC_LDX + 8;   // 1304 floats per staged channel
[[maybe_unused]] constexpr int TC_PIECES = TC_LDX / 4;      // 16-byte pieces per staged row
constexpr int TC_TAPS = 9;
constexpr int TC_IN_FLOATS = TC_CK * TC_PLANE;   // one buffer's input tile
constexpr int TC_B_FLOATS = TC_TAPS * 2 * 32 * 4;  // one buffer's B fragments [tap][hi, lo][lane][4]
constexpr int TC_BUF_FLOATS = TC_IN_FLOATS + TC_B_FLOATS;
constexpr size_t TC_SMEM = 2 * TC_BUF_FLOATS * sizeof(float);

static_assert(TC_THREADS / 32 * 2 == TC_TH && TC_MT / 2 * 16 == TC_TW, "warp tiling");
static_assert(TC_PLANE % 32 == 24, "A-fragment loads: channel t at bank offset 24t covers all 32 banks");
static_assert(TC_IN_FLOATS % 4 == 0, "B fragments 16-byte aligned");
static_assert(TC_THREADS * 4 <= TC_IN_FLOATS, "the partial-sum scratch fits over the input tile");
static_assert(TC_SMEM == 101888, "documented in gacn_kernels.h and kernels/README.md");

/* One m-tile's A fragment (16 pixels x 8 channels of one tap) and one tap's B fragments (8 channels
 * x 16 outputs: two n-tiles), split into TF32 parts. */
struct TcA {
    float hi[4], lo[4];
};
struct TcB {
    float hi[2][2], lo[2][2];  // [n-tile][b0, b1]
};

/* The order of one k-step's six products, for the kernel and the CPU library's twin alike: per
 * n-tile x_lo*w_hi, x_hi*w_lo, x_hi*w_hi (part 0 = lo, 1 = hi). */
template <class Mma>
GACN_DEV void tc_products(Mma&& mma) {
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
        mma(nt, 0, 1);
        mma(nt, 1, 0);
        mma(nt, 1, 1);
    }
}

#if !defined(GACN_EMU)
GACN_DEV void tc_mma(float (&d)[4], const float (&a)[4], const float (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(__float_as_uint(a[0])), "r"(__float_as_uint(a[1])), "r"(__float_as_uint(a[2])),
          "r"(__float_as_uint(a[3])), "r"(__float_as_uint(b[0])), "r"(__float_as_uint(b[1])));
#else
    (void)d, (void)a, (void)b;
#endif
}
#endif

/* acc[nt] += the six products of one k-step (tc_products order). */
[[maybe_unused]] GACN_DEV void tc_mma3(float (&acc)[2][4], const TcA& a, const TcB& b, unsigned lane) {
#if defined(GACN_EMU)
    struct Frags {
        TcA a;
        TcB b;
    };
    const auto all = ::gacn_emu::warp_gather(Frags{a, b});  // every lane's registers (one warp barrier)
    tc_products([&](int nt, int ap, int bp) {
        ::gacn_emu::mma_m16n8k8_tf32(
            acc[nt], lane, [&](unsigned l, int i) { return ap ? all(l).a.hi[i] : all(l).a.lo[i]; },
            [&](unsigned l, int i) { return bp ? all(l).b.hi[nt][i] : all(l).b.lo[nt][i]; });
    });
#else
    (void)lane;
    tc_products([&](int nt, int ap, int bp) { tc_mma(acc[nt], ap ? a.hi : a.lo, bp ? b.hi[nt] : b.lo[nt]); });
#endif
}

template <bool VEC>
__global__ __launch_bounds__(TC_THREADS, 2) void conv3x3_tc_kernel(
    const float* __restrict__ x, int cin, const float* __restrict__ in_scale, long long scale_batch_stride,
    const float* __restrict__ weight, const float* __restrict__ bias, const float* __restrict__ bn,
    float* __restrict__ y, float* __restrict__ partial_sums, int H, int W, long long x_batch_stride,
    long long y_batch_stride) {
#if defined(GACN_EMU) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
    GACN_DYNAMIC_SMEM(float, smem);  // two buffers: [input tile][B fragments]
    const int t = threadIdx.x, lane = t % 32, warp = t / 32, g = lane / 4, tq = lane % 4;
    const int x0 = (int)blockIdx.x * TC_TW, y0 = (int)blockIdx.y * TC_TH, n = (int)blockIdx.z;
    const size_t plane = (size_t)H * W;
    const float* px = x + (size_t)n * (size_t)x_batch_stride;
    float* py = y + (size_t)n * (size_t)y_batch_stride;
    const float* scale = in_scale != nullptr ? in_scale + (size_t)n * (size_t)scale_batch_stride : nullptr;

    // Accumulators: acc[m][nt][i] is output channel 8 nt + 2 tq + (i & 1) at pixel g + 8 (i >> 1)
    // of m-tile m (tile row 2 warp + m / 4, columns 16 (m % 4) ..).
    float acc[TC_MT][2][4];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
        const float b0 = bias[8 * nt + 2 * tq], b1 = bias[8 * nt + 2 * tq + 1];
#pragma unroll
        for (int m = 0; m < TC_MT; ++m) acc[m][nt][0] = b0, acc[m][nt][1] = b1, acc[m][nt][2] = b0, acc[m][nt][3] = b1;
    }

    // Vector staging slots, the same for every channel: piece e = t + 256 s of a channel's tile.
    constexpr int VSLOTS = (TC_ROWS * TC_PIECES + TC_THREADS - 1) / TC_THREADS;  // 2
    int v_s[VSLOTS];
    long long v_g[VSLOTS];
#pragma unroll
    for (int i = 0; i < VSLOTS; ++i) {
        const int e = t + i * TC_THREADS, r = e / TC_PIECES, j = (e % TC_PIECES) * 4;
        const int yy = y0 - 1 + r, xx = x0 - 4 + j;
        v_s[i] = e < TC_ROWS * TC_PIECES ? r * TC_LDX + j : -1;
        v_g[i] = (yy >= 0 && yy < H && xx >= 0 && xx < W) ? (long long)yy * W + xx : -1;  // W % 4 == 0
    }

    // Stages chunk c0 into buffer `buf`: 8 channels of input (zero outside the image and beyond
    // cin), then the folded, split weights in fragment order (plain loads, overlapping the copies).
    auto stage = [&](int c0, int buf) {
        float* si = smem + buf * TC_BUF_FLOATS;
        float* sb = si + TC_IN_FLOATS;
        const int kn = cin - c0 < TC_CK ? cin - c0 : TC_CK;
        if (VEC) {
            const float* pc = px + (size_t)c0 * plane;
#pragma unroll 1
            for (int kc = 0; kc < TC_CK; ++kc, pc += plane) {
#pragma unroll
                for (int i = 0; i < VSLOTS; ++i)
                    if (v_s[i] >= 0) {
                        const bool ok = kc < kn && v_g[i] >= 0;
                        cv_copy16(si + kc * TC_PLANE + v_s[i], ok ? pc + v_g[i] : px, ok);
                    }
            }
        } else {
            constexpr int COLS = TC_TW + 2;  // tile columns 3 .. 68 = image x0-1 .. x0+64 (all that is read)
#pragma unroll 1
            for (int e = t; e < TC_CK * TC_ROWS * COLS; e += TC_THREADS) {
                const int kc = e / (TC_ROWS * COLS), r = (e / COLS) % TC_ROWS, j = e % COLS;
                const int yy = y0 - 1 + r, xx = x0 - 1 + j;
                const bool inside = kc < kn && yy >= 0 && yy < H && xx >= 0 && xx < W;
                cv_copy4(si + kc * TC_PLANE + r * TC_LDX + j + 3,
                         inside ? px + (size_t)(c0 + kc) * plane + (size_t)yy * W + xx : px, inside);
            }
        }
        cv_commit();
        // All of this thread's weight (and scale) loads first, so that their latencies overlap.
        constexpr int WITEMS = (TC_CK * TC_K * TC_TAPS + TC_THREADS - 1) / TC_THREADS;  // 5
        float wv[WITEMS], sv[WITEMS];
#pragma unroll
        for (int i = 0; i < WITEMS; ++i) {
            const int e = t + i * TC_THREADS, kc = e / (TC_K * TC_TAPS), k = (e / TC_TAPS) % TC_K, tap = e % TC_TAPS;
            const bool ok = e < TC_CK * TC_K * TC_TAPS && kc < kn;
            wv[i] = ok ? weight[((size_t)k * cin + c0 + kc) * TC_TAPS + tap] : 0.0f;
            sv[i] = ok && scale != nullptr ? scale[c0 + kc] : 1.0f;
        }
#pragma unroll
        for (int i = 0; i < WITEMS; ++i) {
            const int e = t + i * TC_THREADS, kc = e / (TC_K * TC_TAPS), k = (e / TC_TAPS) % TC_K, tap = e % TC_TAPS;
            if (e >= TC_CK * TC_K * TC_TAPS) continue;
            float hi, lo;
            gacn_split_w(scale != nullptr ? gacn_mul(wv[i], sv[i]) : wv[i], &hi, &lo);
            // B[k = kc][n = k]: lane 4 (k % 8) + kc % 4, register kc / 4, n-tile k / 8; stored as
            // [tap][hi, lo][lane][4] so that each of a lane's two 16-byte loads is conflict-free
            float* f = sb + (tap * 64 + 4 * (k & 7) + (kc & 3)) * 4 + (k >> 3) * 2 + (kc >> 2);
            f[0] = hi;
            f[32 * 4] = lo;
        }
    };

    stage(0, 0);
    for (int c0 = 0, buf = 0; c0 < cin; c0 += TC_CK, buf ^= 1) {
        const bool next = c0 + TC_CK < cin;
        if (next) stage(c0 + TC_CK, buf ^ 1);
        cv_wait(next ? 1 : 0);
        __syncthreads();

        const float* si = smem + buf * TC_BUF_FLOATS;
        const float4* sb4 = reinterpret_cast<const float4*>(si + TC_IN_FLOATS) + lane;
        // This lane's A values: channel tq (and tq + 4), pixel g (and g + 8), tile row 2 warp.
        const float* sa = si + tq * TC_PLANE + 2 * warp * TC_LDX + g + 3;
#pragma unroll 1
        for (int tap = 0; tap < TC_TAPS; ++tap) {
            const int dy = tap / 3, dx = tap - 3 * dy;
            const float4 q0 = sb4[tap * 64], q1 = sb4[tap * 64 + 32];
            TcB b;
            b.hi[0][0] = q0.x, b.hi[0][1] = q0.y, b.hi[1][0] = q0.z, b.hi[1][1] = q0.w;
            b.lo[0][0] = q1.x, b.lo[0][1] = q1.y, b.lo[1][0] = q1.z, b.lo[1][1] = q1.w;
            const float* s = sa + dy * TC_LDX + dx;
#pragma unroll
            for (int m = 0; m < TC_MT; ++m) {
                const float* p = s + (m >> 2) * TC_LDX + 16 * (m & 3);
                const float v[4] = {p[0], p[8], p[4 * TC_PLANE], p[4 * TC_PLANE + 8]};
                TcA a;
#pragma unroll
                for (int i = 0; i < 4; ++i) gacn_split_x(v[i], &a.hi[i], &a.lo[i]);
                tc_mma3(acc[m], a, b, (unsigned)lane);
            }
        }
        __syncthreads();  // buffer `buf` is staged again two chunks on
    }

    // Epilogue: u = relu(c) (* scale + shift), scalar stores (a warp's store covers 8 pixels of 4
    // channel planes: four 32-byte sectors), per-lane sums of the in-image pixels.
    const int has_bn = bn != nullptr;
    float sums[2][2];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            const int k = 8 * nt + 2 * tq + j;
            const float sc = has_bn ? bn[k] : 1.0f, sh = has_bn ? bn[TC_K + k] : 0.0f;
            float* yk = py + (size_t)k * plane;
            float s = 0.0f;
#pragma unroll
            for (int m = 0; m < TC_MT; ++m) {
                const int yy = y0 + 2 * warp + (m >> 2);
#pragma unroll
                for (int half = 0; half < 2; ++half) {
                    const int xx = x0 + 16 * (m & 3) + g + 8 * half;
                    const float u = gacn_gate_input(acc[m][nt][2 * half + j], 1, has_bn, sc, sh);
                    if (yy < H && xx < W) {
                        yk[(size_t)yy * W + xx] = u;
                        s = gacn_add(s, u);
                    }
                }
            }
            sums[nt][j] = s;
        }

    if (partial_sums != nullptr) {  // block sums in a fixed order: deterministic
        float* red = smem;          // [thread][nt * 2 + j], over the input tile (last barrier passed)
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
            for (int j = 0; j < 2; ++j) red[t * 4 + nt * 2 + j] = sums[nt][j];
        __syncthreads();
        if (t < TC_K) {
            const int nt = t >> 3, q = (t & 7) >> 1, j = t & 1;
            float s = 0.0f;
            for (int w = 0; w < TC_THREADS / 32; ++w)
                for (int gg = 0; gg < 8; ++gg) s = gacn_add(s, red[(w * 32 + 4 * gg + q) * 4 + nt * 2 + j]);
            const size_t block = (size_t)blockIdx.y * gridDim.x + blockIdx.x;
            partial_sums[((size_t)n * gridDim.x * gridDim.y + block) * TC_K + t] = s;
        }
    }
#else
    (void)x, (void)cin, (void)in_scale, (void)scale_batch_stride, (void)weight, (void)bias, (void)bn, (void)y;
    (void)partial_sums, (void)H, (void)W, (void)x_batch_stride, (void)y_batch_stride;
#endif
}

std::atomic<int> g_tc_state[64];  // per device: 0 not asked yet, 1 usable, -1 not

}  // namespace

/* Whether the current device runs the tensor-core kernel (compute capability >= 8.0 and enough
 * opt-in shared memory); on first use per device it also raises the kernels' dynamic shared
 * memory limit. Any failed query means no (and its error is cleared). */
bool gacn_conv_tc_available() {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
        (void)cudaGetLastError();
        return false;
    }
    int state = g_tc_state[dev].load(std::memory_order_relaxed);
    if (state == 0) {
        int major = 0, optin = 0;
        const bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
                        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) == cudaSuccess &&
                        major >= 8 && optin >= (int)TC_SMEM &&
                        cudaFuncSetAttribute(conv3x3_tc_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)TC_SMEM) == cudaSuccess &&
                        cudaFuncSetAttribute(conv3x3_tc_kernel<false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)TC_SMEM) == cudaSuccess;
        if (!ok) (void)cudaGetLastError();
        state = ok ? 1 : -1;
        g_tc_state[dev].store(state, std::memory_order_relaxed);
    }
    return state == 1;
}

int gacn_conv_tc_launch(const float* x, int cin, const float* in_scale, long long scale_batch_stride,
                        const float* weight, const float* bias, const float* bn, float* y, float* partial_sums, int n,
                        int h, int w, long long x_batch_stride, long long y_batch_stride, gacn_stream_t stream) {
    const bool vec = w % 4 == 0 && gacn_aligned(x, 16) && x_batch_stride % 4 == 0;
    const dim3 grid(gacn_blocks(w, TC_TW), gacn_blocks(h, TC_TH), n);
    if (vec)
        GACN_LAUNCH_SMEM(conv3x3_tc_kernel<true>, grid, dim3(TC_THREADS), TC_SMEM, stream)
        (x, cin, in_scale, scale_batch_stride, weight, bias, bn, y, partial_sums, h, w, x_batch_stride,
         y_batch_stride);
    else
        GACN_LAUNCH_SMEM(conv3x3_tc_kernel<false>, grid, dim3(TC_THREADS), TC_SMEM, stream)
        (x, cin, in_scale, scale_batch_stride, weight, bias, bn, y, partial_sums, h, w, x_batch_stride,
         y_batch_stride);
    return (int)cudaGetLastError();
}
