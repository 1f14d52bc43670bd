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

namespace gacn_emu {
inline thread_local uint3 tl_thread, tl_block;
inline thread_local dim3 tl_block_dim, tl_grid_dim;
inline thread_local std::barrier<>* tl_barrier = nullptr;
inline thread_local std::barrier<>* tl_warp_barrier = nullptr;  // the 32 (or fewer) threads of a warp
inline thread_local uint64_t* tl_warp_slots = nullptr;          // one exchange slot per lane

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
                            std::apply(kernel, params);
                        });
                    for (auto& th : threads) th.join();
                }
    }
};
template <class... P>
Launch<P...> launch(void (*kernel)(P...), dim3 grid, dim3 block, const void* /*stream: host runs in order*/) {
    return {kernel, grid, block};
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
