// cuda_emu.h — run CUDA C kernels on the CPU, so that they can be tested without a GPU.
//
// The very same .cu files that CuPy compiles for a GPU are compiled by g++ (C++20) with this
// header forced in front (-include cuda_emu.h). Nothing in a kernel changes; the CUDA keywords
// and built-ins are given CPU meanings:
//
//   CUDA                         here
//   ---------------------------  ----------------------------------------------------------
//   a block of blockDim threads  one std::thread per CUDA thread, all started together
//   the grid of blocks           blocks run one after another (a GPU runs them in any order)
//   threadIdx, blockIdx          thread_local variables set when each thread starts
//   blockDim, gridDim            globals, set once per launch
//   __syncthreads()              std::barrier::arrive_and_wait(); a thread that returns early
//                                leaves the barrier (arrive_and_drop), as a finished thread does
//   __shared__ T a[N];           static T a[N]: one copy, shared by the threads of the running
//                                block (safe because blocks never run at the same time)
//   atomicAdd, atomicMax, ...    std::atomic_ref on the same memory
//   expf, tanhf, fmaxf, ...      <cmath>
//
// What it does not emulate: warps (no __shfl_*, no warp-synchronous code: kernels here must
// not rely on 32 threads moving in lockstep), dynamic shared memory (extern __shared__),
// streams, and the memory model's finer points. It is a checker of arithmetic and of
// synchronisation, not a simulator of performance. Since the threads of a block really run
// concurrently, a missing __syncthreads() shows up as a wrong or changing result.
//
// Each .cu kernel that Python launches is declared `extern "C" __global__ void name(...)`; the
// loader (runtime/cuda_c_cpu.py) generates for it an exported function
//   emu_launch_name(gx, gy, gz, bx, by, bz, args...)
// that calls emu::launch(grid, block, [=] { name(args...); }).

#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
    unsigned x, y, z;
};

namespace emu {

inline thread_local uint3 thread_index{0, 0, 0};
inline thread_local uint3 block_index{0, 0, 0};
inline dim3 block_dim;
inline dim3 grid_dim;
inline std::barrier<>* block_barrier = nullptr;

// Run kernel() once per thread of every block of the grid.
template <class Kernel>
void launch(dim3 grid, dim3 block, Kernel kernel) {
    grid_dim = grid;
    block_dim = block;
    const unsigned n_threads = block.x * block.y * block.z;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                std::barrier<> barrier(n_threads);
                block_barrier = &barrier;
                std::vector<std::thread> threads;
                threads.reserve(n_threads);
                for (unsigned tz = 0; tz < block.z; ++tz)
                    for (unsigned ty = 0; ty < block.y; ++ty)
                        for (unsigned tx = 0; tx < block.x; ++tx)
                            threads.emplace_back([=, &barrier] {
                                thread_index = {tx, ty, tz};
                                block_index = {bx, by, bz};
                                kernel();
                                barrier.arrive_and_drop();  // a finished thread stops counting
                            });
                for (auto& t : threads) t.join();
                block_barrier = nullptr;
            }
}

}  // namespace emu

#define threadIdx (emu::thread_index)
#define blockIdx (emu::block_index)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

inline void __syncthreads() { emu::block_barrier->arrive_and_wait(); }

template <class T>
T atomicAdd(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_add(value);
}

template <class T>
T atomicMax(T* address, T value) {
    std::atomic_ref<T> ref(*address);
    T old = ref.load();
    while (old < value && !ref.compare_exchange_weak(old, value)) {
    }
    return old;
}

template <class T>
T atomicCAS(T* address, T compare, T value) {
    std::atomic_ref<T>(*address).compare_exchange_strong(compare, value);
    return compare;
}

using std::max;
using std::min;
