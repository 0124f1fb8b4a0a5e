//! zerohop's CUDA kernels, in three forms from one source (`scale_ladder.cu`):
//!
//! * [`SCALE_LADDER_CU`], the CUDA C++ source, for NVRTC at run time, and [`PTX`] when nvcc was
//!   at hand at build time;
//! * [`emu`], the same source compiled for the CPU with `emu/cuda_emu.h` (the grid runs as loops),
//!   so `cargo test` runs exactly what the GPU runs;
//! * [`reference`], a plain-Rust f64 statement of what the kernel computes, tested against the
//!   emulated kernel at many sizes, odd chroma widths, padded pitches and several block shapes.
//!
//! The parameter block ([`ZhLadder`]) is `#[repr(C)]` and mirrors the kernel's struct; it is
//! passed by value as the kernel's only argument.

pub mod emu;
pub mod reference;

/// The fused ladder kernel's CUDA source.
pub const SCALE_LADDER_CU: &str = include_str!("../scale_ladder.cu");
/// Its entry point.
pub const SCALE_LADDER_ENTRY: &str = "zh_scale_ladder_nv12";
/// Options for NVRTC (and nvcc): no FMA contraction, so the GPU computes what the CPU build does.
pub const NVRTC_OPTIONS: &[&str] = &["--fmad=false", "--std=c++17", "-default-device"];

/// PTX made by nvcc at build time (compute_75, JIT-compiled by the driver for newer GPUs), when
/// nvcc was available; else `None` and the source goes through NVRTC at run time.
#[cfg(zh_ptx)]
pub const PTX: Option<&str> = Some(include_str!(concat!(env!("OUT_DIR"), "/scale_ladder.ptx")));
#[cfg(not(zh_ptx))]
pub const PTX: Option<&str> = None;

/// How the kernels reach the GPU in this build, for `--version` and `gpu-info`.
pub fn kernel_form() -> &'static str {
    if PTX.is_some() {
        "PTX embedded at build time (nvcc)"
    } else {
        "CUDA source embedded, compiled by NVRTC at run time"
    }
}

/// Most rungs one launch writes.
pub const MAX_RUNGS: usize = 8;
/// Threads per block the engine launches with (x, y), one thread per 2x2 luma quad.
pub const BLOCK: (u32, u32) = (32, 8);

/// One output picture, NV12: luma rows then interleaved CbCr rows, both `pitch` bytes apart.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ZhPlane {
    pub y: *mut u8,
    pub uv: *mut u8,
    pub pitch: i32,
    pub width: i32,
    pub height: i32,
}

/// The kernel's parameter block (mirrors `struct ZhLadder` in the source).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ZhLadder {
    pub src_y: *const u8,
    pub src_uv: *const u8,
    pub src_pitch: i32,
    pub src_width: i32,
    pub src_height: i32,
    pub rungs: i32,
    pub dst: [ZhPlane; MAX_RUNGS],
}

impl ZhLadder {
    /// The launch grid for `block` threads per block: x/y cover the largest rung's chroma
    /// quads, z the rungs.
    pub fn grid(&self, block: (u32, u32)) -> (u32, u32, u32) {
        let rungs = &self.dst[..self.rungs.clamp(0, MAX_RUNGS as i32) as usize];
        let qw = rungs.iter().map(|d| (d.width / 2) as u32).max().unwrap_or(0);
        let qh = rungs.iter().map(|d| (d.height / 2) as u32).max().unwrap_or(0);
        (qw.div_ceil(block.0), qh.div_ceil(block.1), rungs.len() as u32)
    }
}

/// A host NV12 picture (the CPU-side twin of a mapped decoder surface or an NVENC input buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nv12 {
    pub width: u32,
    pub height: u32,
    pub pitch: usize,
    pub y: Vec<u8>,
    /// `ceil(height / 2)` rows of `pitch` bytes, Cb Cr interleaved.
    pub uv: Vec<u8>,
}

impl Nv12 {
    /// A picture filled with `fill`; `pitch` >= width (padded pitches as the GPU allocates).
    pub fn new(width: u32, height: u32, pitch: usize, fill: u8) -> Nv12 {
        assert!(pitch >= width as usize, "pitch {pitch} < width {width}");
        let ch = height.div_ceil(2) as usize;
        Nv12 { width, height, pitch, y: vec![fill; pitch * height as usize], uv: vec![fill; pitch * ch] }
    }
    pub fn luma(&self, x: u32, y: u32) -> u8 {
        self.y[y as usize * self.pitch + x as usize]
    }
    /// (Cb, Cr) of chroma sample (x, y).
    pub fn chroma(&self, x: u32, y: u32) -> (u8, u8) {
        let i = y as usize * self.pitch + 2 * x as usize;
        (self.uv[i], self.uv[i + 1])
    }

    /// The largest difference of any visible sample (padding ignored) from a picture of the
    /// same size.
    pub fn max_abs_diff(&self, other: &Nv12) -> u8 {
        assert_eq!((self.width, self.height), (other.width, other.height), "pictures of different sizes");
        let mut max = 0u8;
        for y in 0..self.height {
            for x in 0..self.width {
                max = max.max(self.luma(x, y).abs_diff(other.luma(x, y)));
            }
        }
        for y in 0..self.height / 2 {
            for x in 0..self.width / 2 {
                let (a, b) = (self.chroma(x, y), other.chroma(x, y));
                max = max.max(a.0.abs_diff(b.0)).max(a.1.abs_diff(b.1));
            }
        }
        max
    }
}
