// zerohop: the kernels compiled for the CPU (see cuda_emu.h), with C entry points for Rust.
#include "cuda_emu.h"
#include "../scale_ladder.cu"

extern "C" void zh_emu_scale_ladder_nv12(const ZhLadder* p, unsigned int grid_x, unsigned int grid_y,
                                         unsigned int block_x, unsigned int block_y) {
    zh_dim3 grid = {grid_x, grid_y, (unsigned int)p->rungs};
    zh_dim3 block = {block_x, block_y, 1};
    zh_emu_launch(grid, block, zh_scale_ladder_nv12, *p);
}
