// zerohop: one launch scales a decoded NV12 picture into every rung of a rendition ladder.
//
// Compiled three ways from this one file:
//   * NVRTC at run time, or nvcc at build time (PTX embedded), for the GPU;
//   * NVRTC + ptxas from PyPI in CI (kernels/check/check_kernels.py: register/spill budgets);
//   * g++ with kernels/emu/cuda_emu.h, run on the CPU in `cargo test` against the plain-Rust
//     reference in kernels/src/reference.rs.
//
// Layout: blockIdx.z selects the rung; each thread makes one 2x2 luma quad and the one NV12 chroma
// pair (Cb, Cr) that goes with it, so every output byte is written exactly once and all rungs come
// from one launch reading the source through L2.
//
// Filter: separable Catmull-Rom (B=0, C=0.5) whose support widens with the downscale ratio
// (2 source pixels per output pixel at 1:1, 2*r at ratio r), so 2x-4x downscales average every
// source pixel under the footprint instead of aliasing as plain bilinear does. Upscales use the
// plain 4-tap kernel.
//
// Chroma siting (H.264 default, chroma_sample_loc_type 0, "MPEG-2"): chroma sits on even luma
// columns horizontally and halfway between the two luma rows vertically; source and output
// positions are mapped through luma coordinates so the siting is preserved at every ratio.
//
// GPU/CPU agreement: all arithmetic is float with explicit fmaf (the emulation compiles with
// -ffp-contract=off and NVRTC with --fmad=false), weights are normalised, results are clamped
// before the round-to-nearest conversion to u8. Results agree to +-1 with the f64 reference.

#ifndef ZH_EMULATED
#define ZH_RESTRICT __restrict__
#else
#define ZH_RESTRICT
#endif

#define ZH_MAX_RUNGS 8
// Most taps per axis: support 2 * ratio on each side; ratio capped at 8 (the engine never asks
// for more: 4096 -> 426 is 9.6, but rungs that small come from the 2x-4x band in practice).
#define ZH_MAX_RATIO 8.0f
#define ZH_MAX_TAPS 34

struct ZhPlane {
    unsigned char* y;
    unsigned char* uv;
    int pitch;  // bytes per row, both planes (NVENC NV12 layout)
    int width;  // luma size; even
    int height;
};

struct ZhLadder {
    const unsigned char* src_y;
    const unsigned char* src_uv;
    int src_pitch;
    int src_width;
    int src_height;
    int rungs;
    ZhPlane dst[ZH_MAX_RUNGS];
};

__device__ __forceinline__ float zh_catmull_rom(float x) {
    x = fabsf(x);
    if (x < 1.0f) {
        // 1.5x^3 - 2.5x^2 + 1
        return fmaf(fmaf(1.5f, x, -2.5f), x * x, 1.0f);
    }
    if (x < 2.0f) {
        // -0.5x^3 + 2.5x^2 - 4x + 2
        return fmaf(fmaf(fmaf(-0.5f, x, 2.5f), x, -4.0f), x, 2.0f);
    }
    return 0.0f;
}

// The taps of one output sample along one axis: source indices lo..=hi around `center` (the
// output sample's position in source coordinates), weights zh_catmull_rom((i - center) * inv)
// times the returned normaliser. Weights are recomputed where used instead of kept in arrays so
// that nothing spills to local memory.
struct ZhTaps {
    int lo;
    int n;
    float inv;
    float norm;
};

__device__ __forceinline__ ZhTaps zh_taps(float center, float scale) {
    ZhTaps t;
    float s = fminf(fmaxf(scale, 1.0f), ZH_MAX_RATIO);
    float support = 2.0f * s;
    t.lo = (int)floorf(center - support) + 1;
    int hi = (int)floorf(center + support);
    t.n = hi - t.lo + 1;
    if (t.n > ZH_MAX_TAPS) {
        t.n = ZH_MAX_TAPS;
    }
    t.inv = 1.0f / s;
    float sum = 0.0f;
    for (int i = 0; i < t.n; ++i) {
        sum += zh_catmull_rom(((float)(t.lo + i) - center) * t.inv);
    }
    t.norm = 1.0f / sum;
    return t;
}

__device__ __forceinline__ int zh_clampi(int v, int lo, int hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

__device__ __forceinline__ unsigned char zh_to_u8(float v) {
    v = fminf(fmaxf(v, 0.0f), 255.0f);
    return (unsigned char)(int)floorf(v + 0.5f);
}

// One output sample of a plane: `step` is 1 for luma, 2 for NV12 chroma (offset 0 = Cb,
// 1 = Cr); `w` and `h` count samples. Edge samples are replicated.
__device__ __forceinline__ unsigned char zh_sample(const unsigned char* ZH_RESTRICT src, int pitch, int w, int h,
                                                   int step, int offset, float cx, float sx, float cy, float sy) {
    ZhTaps tx = zh_taps(cx, sx);
    ZhTaps ty = zh_taps(cy, sy);
    float acc = 0.0f;
    for (int j = 0; j < ty.n; ++j) {
        const unsigned char* row = src + (size_t)zh_clampi(ty.lo + j, 0, h - 1) * (size_t)pitch;
        float line = 0.0f;
        for (int i = 0; i < tx.n; ++i) {
            int x = zh_clampi(tx.lo + i, 0, w - 1);
            float wx = zh_catmull_rom(((float)(tx.lo + i) - cx) * tx.inv) * tx.norm;
            line = fmaf(wx, (float)row[x * step + offset], line);
        }
        float wy = zh_catmull_rom(((float)(ty.lo + j) - cy) * ty.inv) * ty.norm;
        acc = fmaf(wy, line, acc);
    }
    return zh_to_u8(acc);
}

extern "C" __global__ void zh_scale_ladder_nv12(ZhLadder p) {
    int r = (int)blockIdx.z;
    if (r >= p.rungs) {
        return;
    }
    ZhPlane d = p.dst[r];
    // One thread per 2x2 luma quad = one chroma pair.
    int qx = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    int qy = (int)(blockIdx.y * blockDim.y + threadIdx.y);
    int cw = d.width / 2;
    int ch = d.height / 2;
    if (qx >= cw || qy >= ch) {
        return;
    }
    float sx = (float)p.src_width / (float)d.width;
    float sy = (float)p.src_height / (float)d.height;
    // Luma: centres aligned, source position = (x + 0.5) * s - 0.5.
    for (int dy = 0; dy < 2; ++dy) {
        int y = 2 * qy + dy;
        float cy = fmaf((float)y + 0.5f, sy, -0.5f);
        for (int dx = 0; dx < 2; ++dx) {
            int x = 2 * qx + dx;
            float cx = fmaf((float)x + 0.5f, sx, -0.5f);
            d.y[(size_t)y * (size_t)d.pitch + (size_t)x] =
                zh_sample(p.src_y, p.src_pitch, p.src_width, p.src_height, 1, 0, cx, sx, cy, sy);
        }
    }
    // Chroma, sited: output chroma (qx, qy) sits at output luma (2qx, 2qy + 0.5); map that luma
    // position into the source, then into source chroma coordinates (x / 2, (y - 0.5) / 2).
    float lx = fmaf(2.0f * (float)qx + 0.5f, sx, -0.5f);
    float ly = fmaf(2.0f * (float)qy + 1.0f, sy, -0.5f);
    float ccx = 0.5f * lx;
    float ccy = 0.5f * (ly - 0.5f);
    int scw = (p.src_width + 1) / 2;
    int sch = (p.src_height + 1) / 2;
    unsigned char* out = d.uv + (size_t)qy * (size_t)d.pitch + (size_t)(2 * qx);
    out[0] = zh_sample(p.src_uv, p.src_pitch, scw, sch, 2, 0, ccx, sx, ccy, sy);
    out[1] = zh_sample(p.src_uv, p.src_pitch, scw, sch, 2, 1, ccx, sx, ccy, sy);
}
