/*
 * cuda_emu.h: just enough of CUDA to run this project's kernels on the host, for tests on
 * machines without a GPU (libgacn_kernels_emu.so, CMake option GACN_BUILD_EMU).
 *
 * Each block runs as blockDim host threads that share the kernel's `__shared__` arrays
 * (emulated as function statics, so blocks run one after another) and meet at a
 * std::barrier in __syncthreads(). WMMA fragments hold the whole matrix in every thread
 * (mma_sync computes it with float products and sums, exact for FP16 inputs); stores are done
 * by lane 0 and the 256-bit alignment and ldm rules of the real API are asserted. The emulator
 * checks indexing, halos, barriers and the arithmetic shared with the CPU library; it does
 * not model warps, memory coalescing or timing.
 */
#ifndef GACN_CUDA_EMU_H
#define GACN_CUDA_EMU_H

#include <algorithm>
#include <barrier>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../src/gacn_math.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(8) float2 {
    float x, y;
};
struct alignas(8) uint2 {
    unsigned x, y;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct __half {  // 2 bytes, like cuda_fp16.h
    uint16_t x;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

typedef void* cudaStream_t;
typedef int cudaError_t;
enum { cudaSuccess = 0 };
inline cudaError_t cudaGetLastError() { return cudaSuccess; }

/* The emulated device: compute capability 9.0 with an H100's 227 KB of opt-in shared memory per
 * block, so that launchers take their sm_80+/large-shared-memory paths (tensor cores, cp.async
 * callers) exactly as on the GPU the kernels are tuned for. */
enum cudaDeviceAttr {
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
inline cudaError_t cudaGetDevice(int* device) {
    *device = 0;
    return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int /*device*/) {
    *value = attr == cudaDevAttrComputeCapabilityMajor ? 9 : attr == cudaDevAttrComputeCapabilityMinor ? 0 : 232448;
    return cudaSuccess;
}
template <class F>
cudaError_t cudaFuncSetAttribute(F* /*kernel*/, cudaFuncAttribute, int value) {
    return value <= 232448 ? cudaSuccess : 1;
}

namespace gacn_emu {
inline thread_local uint3 tl_thread, tl_block;
inline thread_local dim3 tl_block_dim, tl_grid_dim;
inline thread_local std::barrier<>* tl_barrier = nullptr;
inline thread_local std::barrier<>* tl_warp_barrier = nullptr;  // the 32 (or fewer) threads of a warp
inline thread_local uint64_t* tl_warp_slots = nullptr;          // one exchange slot per lane
constexpr size_t kGatherBytes = 256;                              // per lane and set (warp_gather)
inline thread_local unsigned char* tl_warp_gather = nullptr;      // 2 sets x 32 lanes x kGatherBytes
inline thread_local unsigned char* tl_dyn_smem = nullptr;         // the block's dynamic shared memory

[[noreturn]] inline void fail(const char* what) {
    std::fprintf(stderr, "gacn_emu: %s\n", what);
    std::abort();
}
inline unsigned lane() {
    unsigned t = tl_thread.x + tl_block_dim.x * (tl_thread.y + tl_block_dim.y * tl_thread.z);
    return t % 32u;
}

template <class... P>
struct Launch {
    void (*kernel)(P...);
    dim3 grid, block;
    size_t smem;  // dynamic shared memory bytes (zero-filled per block here; undefined on the GPU)
    template <class... A>
    void operator()(A&&... args) const {
        std::tuple<P...> params(std::forward<A>(args)...);
        const unsigned nthreads = block.x * block.y * block.z;
        for (unsigned bz = 0; bz < grid.z; ++bz)
            for (unsigned by = 0; by < grid.y; ++by)
                for (unsigned bx = 0; bx < grid.x; ++bx) {
                    std::barrier<> bar((std::ptrdiff_t)nthreads);
                    const unsigned nwarps = (nthreads + 31) / 32;
                    std::vector<std::unique_ptr<std::barrier<>>> warp_bars;
                    for (unsigned w = 0; w < nwarps; ++w)
                        warp_bars.emplace_back(new std::barrier<>((std::ptrdiff_t)std::min(32u, nthreads - 32 * w)));
                    std::vector<uint64_t> slots(64 * nwarps);  // two sets of 32 per warp
                    std::vector<float4> gather(2 * 32 * kGatherBytes / sizeof(float4) * nwarps);
                    std::vector<float4> dyn((smem + sizeof(float4) - 1) / sizeof(float4) + 1);
                    // NaN-poisoned: a kernel that reads dynamic shared memory it did not write fails
                    std::memset(dyn.data(), 0xff, dyn.size() * sizeof(float4));
                    std::vector<std::thread> threads;
                    threads.reserve(nthreads);
                    for (unsigned t = 0; t < nthreads; ++t)
                        threads.emplace_back([&, t] {
                            tl_thread = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                            tl_block = {bx, by, bz};
                            tl_block_dim = block;
                            tl_grid_dim = grid;
                            tl_barrier = &bar;
                            tl_warp_barrier = warp_bars[t / 32].get();
                            tl_warp_slots = &slots[64 * (t / 32)];
                            tl_warp_gather = reinterpret_cast<unsigned char*>(gather.data()) + (t / 32) * 2 * 32 * kGatherBytes;
                            tl_dyn_smem = reinterpret_cast<unsigned char*>(dyn.data());
                            std::apply(kernel, params);
                        });
                    for (auto& th : threads) th.join();
                }
    }
};
template <class... P>
Launch<P...> launch(void (*kernel)(P...), dim3 grid, dim3 block, const void* /*stream: host runs in order*/,
                    size_t smem = 0) {
    return {kernel, grid, block, smem};
}

/* All 32 lanes' copies of `v` (every lane of the warp must call it, as with the shuffles below):
 * gathered(l) is lane l's value, valid until this warp's second gather after this one (two slot
 * sets used alternately, as the shuffles). One warp barrier. */
template <class T>
struct Gathered {
    const unsigned char* base;
    const T& operator()(unsigned l) const { return *reinterpret_cast<const T*>(base + (size_t)l * kGatherBytes); }
};
template <class T>
Gathered<T> warp_gather(const T& v) {
    static_assert(sizeof(T) <= kGatherBytes && alignof(T) <= 16, "gathered value too large");
    static thread_local unsigned parity = 0;
    unsigned char* set = tl_warp_gather + parity * 32 * kGatherBytes;
    parity ^= 1u;
    std::memcpy(set + (size_t)lane() * kGatherBytes, &v, sizeof(T));
    tl_warp_barrier->arrive_and_wait();
    return {set};
}

/* mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32, the part of D = A B + C that lane `l` holds,
 * with g = l / 4, t = l % 4 (PTX ISA, "Matrix fragments for mma.m16n8k8", .tf32):
 *   A 16x8: a[0] = A[g][t], a[1] = A[g+8][t], a[2] = A[g][t+4], a[3] = A[g+8][t+4] of lane 4g+t;
 *   B 8x8:  b[0] = B[t][g], b[1] = B[t+4][g];
 *   C, D:   c[0] = C[g][2t], c[1] = C[g][2t+1], c[2] = C[g+8][2t], c[3] = C[g+8][2t+1].
 * a(l, i) and b(l, i) give lane l's registers as floats. Every operand must be a TF32 value (its low
 * 13 bits zero: the kernels round explicitly; asserted here), so each product is exact in FP32.
 * Ordering assumption of this model: the 8 products are added to C one at a time, k = 0..7, each
 * addition rounded to nearest in FP32. The hardware's internal order and rounding are not
 * specified by PTX; kernels/README.md derives an error bound that holds for any of them. */
template <class FA, class FB>
void mma_m16n8k8_tf32(float d[4], unsigned l, FA&& a, FB&& b) {
    auto tf32 = [](float v) {
        if (gacn_float_bits(v) & ~GACN_TF32_MASK) fail("mma tf32 operand is not a TF32 value (low 13 bits set)");
        return v;
    };
    auto A = [&](unsigned row, unsigned k) { return tf32(a(4 * (row % 8) + k % 4, (row >= 8 ? 1 : 0) + (k >= 4 ? 2 : 0))); };
    auto B = [&](unsigned k, unsigned col) { return tf32(b(4 * col + k % 4, k >= 4 ? 1 : 0)); };
    const unsigned g = l / 4, t = l % 4;
    for (int i = 0; i < 4; ++i) {
        const unsigned row = g + 8 * (i >> 1), col = 2 * t + (i & 1);  // the D element d[i] holds
        float acc = d[i];
        for (unsigned k = 0; k < 8; ++k) acc = acc + A(row, k) * B(k, col);  // exact product, rounded sum
        d[i] = acc;
    }
}
}  // namespace gacn_emu

#define threadIdx (::gacn_emu::tl_thread)
#define blockIdx (::gacn_emu::tl_block)
#define blockDim (::gacn_emu::tl_block_dim)
#define gridDim (::gacn_emu::tl_grid_dim)
inline void __syncthreads() { gacn_emu::tl_barrier->arrive_and_wait(); }

/* Warp shuffles: every lane of the warp must take part (full mask), as the kernels ensure. Two
 * slot sets used alternately make one warp barrier per shuffle enough: a lane can only write a
 * set again after the next shuffle's barrier, which every lane reaches after its read. */
template <class T>
T __shfl_up_sync(unsigned /*mask*/, T v, unsigned delta) {
    static_assert(sizeof(T) <= 8, "shuffle of a register-sized value");
    static thread_local unsigned parity = 0;
    const unsigned l = gacn_emu::lane();
    uint64_t* slots = gacn_emu::tl_warp_slots + 32 * parity;
    parity ^= 1u;
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    slots[l] = bits;
    gacn_emu::tl_warp_barrier->arrive_and_wait();
    T r = v;
    if (l >= delta) std::memcpy(&r, &slots[l - delta], sizeof(T));
    return r;
}

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K>
struct shape;
template <int M, int N, int K>
struct shape<matrix_a, M, N, K> {
    static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct shape<matrix_b, M, N, K> {
    static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct shape<accumulator, M, N, K> {
    static constexpr int rows = M, cols = N;
};

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
    static constexpr int rows = shape<Use, M, N, K>::rows, cols = shape<Use, M, N, K>::cols;
    static constexpr int num_elements = rows * cols;
    float x[rows * cols];  // row-major, whole matrix in every thread
};

inline void check_ptr(const void* p, unsigned ldm, unsigned multiple) {
    if ((uintptr_t)p % 32 != 0) gacn_emu::fail("wmma pointer not 256-bit aligned");
    if (ldm % multiple != 0) gacn_emu::fail("wmma ldm not a multiple of 16 bytes");
}
template <class Use, int M, int N, int K, class Layout>
void load_matrix_sync(fragment<Use, M, N, K, __half, Layout>& f, const __half* p, unsigned ldm) {
    check_ptr(p, ldm, 8);
    constexpr bool col = std::is_same<Layout, col_major>::value;
    for (int r = 0; r < f.rows; ++r)
        for (int c = 0; c < f.cols; ++c)
            f.x[r * f.cols + c] = gacn_h2f(p[col ? (size_t)c * ldm + r : (size_t)r * ldm + c].x);
}
template <class Use, int M, int N, int K, class T, class Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, float v) {
    for (float& e : f.x) e = v;
}
template <int M, int N, int K, class LA, class LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, __half, LA>& a,
              const fragment<matrix_b, M, N, K, __half, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
    float out[M * N];
    for (int m = 0; m < M; ++m)
        for (int n = 0; n < N; ++n) {
            float acc = c.x[m * N + n];
            for (int k = 0; k < K; ++k) acc += a.x[m * K + k] * b.x[k * N + n];
            out[m * N + n] = acc;
        }
    for (int i = 0; i < M * N; ++i) d.x[i] = out[i];
}
template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t layout) {
    check_ptr(p, ldm, 4);
    if (gacn_emu::lane() != 0) return;
    for (int m = 0; m < M; ++m)
        for (int n = 0; n < N; ++n)
            p[layout == mem_col_major ? (size_t)n * ldm + m : (size_t)m * ldm + n] = f.x[m * N + n];
}
}  // namespace wmma
}  // namespace nvcuda

#endif /* GACN_CUDA_EMU_H */
