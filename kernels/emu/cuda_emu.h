// zerohop: just enough of CUDA C++ for the kernels in this directory to compile with g++ and run
// on the CPU, one emulated thread at a time. Kernels that use shared memory, barriers, warp
// intrinsics or atomics would need more than this; ours use none of them (each thread writes
// only its own outputs), so running the grid as plain loops is exact.
#ifndef ZH_CUDA_EMU_H
#define ZH_CUDA_EMU_H

#include <cmath>
#include <cstddef>

#define ZH_EMULATED 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct zh_dim3 {
    unsigned int x, y, z;
};

// One translation unit includes this header; a launch runs on the calling thread, so launches
// on different threads (parallel tests) each have their own indices.
static thread_local zh_dim3 threadIdx, blockIdx, blockDim, gridDim;

// fabsf, fminf, fmaxf, floorf and fmaf come from <cmath> with the same (IEEE single) semantics
// as CUDA's; fmaf is a true fused multiply-add on both sides.

// Runs `kernel(args...)` over grid x block, as a launch would, in block-major order.
template <typename K, typename... A>
static void zh_emu_launch(zh_dim3 grid, zh_dim3 block, K kernel, A... args) {
    gridDim = grid;
    blockDim = block;
    for (blockIdx.z = 0; blockIdx.z < grid.z; ++blockIdx.z)
        for (blockIdx.y = 0; blockIdx.y < grid.y; ++blockIdx.y)
            for (blockIdx.x = 0; blockIdx.x < grid.x; ++blockIdx.x)
                for (threadIdx.z = 0; threadIdx.z < block.z; ++threadIdx.z)
                    for (threadIdx.y = 0; threadIdx.y < block.y; ++threadIdx.y)
                        for (threadIdx.x = 0; threadIdx.x < block.x; ++threadIdx.x) kernel(args...);
}

#endif
