//! zerohop's CUDA kernels, in three forms from one source (`scale_ladder.cu`):
//!
//! * [`CUBINS`], its SASS for sm_75, 80, 86, 89 and 90, built at build time with NVIDIA's
//!   compilers from PyPI when they are there ([`COMPILERS`]), and [`SCALE_LADDER_CU`], the CUDA
//!   C++ source, for NVRTC at run time on other architectures or in a build without them;
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

mod built {
    // `COMPILERS`, `CUBINS` and `WITHOUT_COMPILERS`, written by build.rs.
    include!(concat!(env!("OUT_DIR"), "/cubins.rs"));
}

/// The compilers that built [`CUBINS`] (`None`: this build had none, see [`WITHOUT_COMPILERS`]).
pub const COMPILERS: Option<&str> = built::COMPILERS;
/// The ladder kernel's SASS per architecture (`(75, cubin)` is sm_75), built at build time;
/// empty in a build without the NVIDIA compilers.
pub const CUBINS: &[(u32, &[u8])] = built::CUBINS;
/// Why this build has no cubins (empty when it has them).
pub const WITHOUT_COMPILERS: &str = built::WITHOUT_COMPILERS;

/// How the kernels reach the GPU in this build, for `--version` and `gpu-info`.
pub fn kernel_form() -> String {
    match COMPILERS {
        Some(c) => format!(
            "SASS for {} embedded (built with {c}); other architectures compile the source with NVRTC at run time",
            CUBINS.iter().map(|(a, _)| format!("sm_{a}")).collect::<Vec<_>>().join(", ")
        ),
        None => format!(
            "built without the NVIDIA compilers ({WITHOUT_COMPILERS}): no SASS embedded, the CUDA source is compiled by NVRTC at run time (the GPU host needs libnvrtc)"
        ),
    }
}

/// Which embedded cubin runs on a GPU of compute capability `cc`: SASS runs on GPUs of its own
/// major version and the same or a higher minor (CUDA C++ Programming Guide, "Binary
/// Compatibility"), so the newest cubin of the GPU's major with a minor not above the GPU's.
/// `Err` for GPUs before Turing (7.5), which zerohop does not support; `Ok(None)` when no cubin
/// fits (a newer architecture: NVRTC compiles the source at run time).
pub fn cubin_for(
    cc: (i32, i32),
    cubins: &'static [(u32, &'static [u8])],
) -> Result<Option<(u32, &'static [u8])>, String> {
    if cc < (7, 5) {
        return Err(format!(
            "compute capability {}.{} is older than Turing (7.5), the oldest GPU zerohop supports",
            cc.0, cc.1
        ));
    }
    let (major, minor) = (cc.0 as u32, cc.1 as u32);
    Ok(cubins.iter().filter(|(a, _)| a / 10 == major && a % 10 <= minor).max_by_key(|(a, _)| *a).copied())
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

impl ZhPlane {
    /// A picture of `width` x `height` at `y` (luma) and `uv` (interleaved chroma), `pitch`
    /// bytes a row.
    pub fn new(y: *mut u8, uv: *mut u8, pitch: usize, width: u32, height: u32) -> ZhPlane {
        ZhPlane { y, uv, pitch: pitch as i32, width: width as i32, height: height as i32 }
    }
}

impl ZhLadder {
    /// The parameters of one launch: `src` (read only, though a plane's pointers are `*mut`)
    /// scaled into each plane of `dst`. Each launcher checks `dst` holds 1 to [`MAX_RUNGS`]
    /// planes, in its own error type; more are not written.
    pub fn new(src: ZhPlane, dst: impl IntoIterator<Item = ZhPlane>) -> ZhLadder {
        let empty = ZhPlane::new(std::ptr::null_mut(), std::ptr::null_mut(), 0, 0, 0);
        let mut p = ZhLadder {
            src_y: src.y,
            src_uv: src.uv,
            src_pitch: src.pitch,
            src_width: src.width,
            src_height: src.height,
            rungs: 0,
            dst: [empty; MAX_RUNGS],
        };
        for (slot, d) in p.dst.iter_mut().zip(dst) {
            *slot = d;
            p.rungs += 1;
        }
        p
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The parameter block counts the planes it holds, keeps at most MAX_RUNGS, and its grid
    /// covers the largest rung's chroma quads.
    #[test]
    fn the_parameter_block_holds_each_rung_and_sizes_its_grid() {
        let plane = |w, h| ZhPlane::new(std::ptr::null_mut(), std::ptr::null_mut(), 2048, w, h);
        let p = ZhLadder::new(plane(1920, 1080), [plane(1280, 720), plane(642, 362)]);
        assert_eq!((p.rungs, p.src_width, p.src_height, p.src_pitch), (2, 1920, 1080, 2048));
        assert_eq!((p.dst[1].width, p.dst[1].height, p.dst[2].width), (642, 362, 0));
        assert_eq!(p.grid((32, 8)), (20, 45, 2));
        let many = ZhLadder::new(plane(64, 64), (0..MAX_RUNGS + 3).map(|_| plane(16, 16)));
        assert_eq!(many.rungs as usize, MAX_RUNGS);
    }

    const FAKE: &[(u32, &[u8])] = &[(75, b"75"), (80, b"80"), (86, b"86"), (89, b"89"), (90, b"90")];

    /// Issue 14, defect 2: the cubin of the GPU's own architecture, else the newest of its major
    /// with a lower minor (SASS is compatible within a major), else NVRTC; before Turing, a
    /// clear refusal.
    #[test]
    fn each_gpu_gets_the_cubin_its_sass_runs_on() {
        let arch = |cc| cubin_for(cc, FAKE).map(|c| c.map(|(a, _)| a));
        assert_eq!(arch((7, 5)), Ok(Some(75)));
        assert_eq!(arch((8, 0)), Ok(Some(80)));
        assert_eq!(arch((8, 6)), Ok(Some(86)));
        assert_eq!(arch((8, 7)), Ok(Some(86)), "Orin runs sm_86 SASS");
        assert_eq!(arch((8, 9)), Ok(Some(89)));
        assert_eq!(arch((9, 0)), Ok(Some(90)));
        assert_eq!(arch((10, 0)), Ok(None), "Blackwell: no SASS here, NVRTC at run time");
        assert_eq!(arch((12, 0)), Ok(None));
        for old in [(7, 0), (6, 1), (5, 2)] {
            let e = arch(old).expect_err("pre-Turing");
            assert!(e.contains("older than Turing (7.5)"), "{e}");
        }
        assert_eq!(cubin_for((8, 6), &[]), Ok(None), "a build without the compilers");
    }

    /// A build made where the compilers are embeds an ELF cubin (e_machine EM_CUDA) for each of
    /// sm_75, 80, 86, 89 and 90; a build without them says so.
    #[test]
    fn the_build_embeds_sass_for_every_architecture_or_says_why_not() {
        let Some(compilers) = COMPILERS else {
            assert!(CUBINS.is_empty());
            assert!(!WITHOUT_COMPILERS.is_empty());
            assert!(kernel_form().contains("built without the NVIDIA compilers"), "{}", kernel_form());
            zerohop_testkit::skip("the NVIDIA compilers", WITHOUT_COMPILERS);
            return;
        };
        assert_eq!(CUBINS.iter().map(|(a, _)| *a).collect::<Vec<_>>(), vec![75, 80, 86, 89, 90]);
        for (arch, cubin) in CUBINS {
            assert_eq!(&cubin[..4], b"\x7fELF", "sm_{arch}");
            assert_eq!(u16::from_le_bytes([cubin[18], cubin[19]]), 190, "sm_{arch}: EM_CUDA");
        }
        assert!(kernel_form().contains(compilers), "{}", kernel_form());
    }
}
