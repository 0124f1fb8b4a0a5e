//! The kernels compiled for the CPU (`emu/launch.cpp` = `emu/cuda_emu.h` + the `.cu` source),
//! behind a safe API that checks every buffer before the launch.

use crate::{MAX_RUNGS, Nv12, ZhLadder, ZhPlane};

unsafe extern "C" {
    fn zh_emu_scale_ladder_nv12(p: *const ZhLadder, grid_x: u32, grid_y: u32, block_x: u32, block_y: u32);
}

/// Why a launch was refused before it ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    #[error("{0} rungs; one launch writes 1 to {MAX_RUNGS}")]
    Rungs(usize),
    #[error("picture {w}x{h} (pitch {pitch}, {len} bytes): {what}")]
    Picture { w: u32, h: u32, pitch: usize, len: usize, what: &'static str },
    #[error("block {0}x{1}: each side must be 1..=1024 and the product <= 1024")]
    Block(u32, u32),
}

fn check(p: &Nv12, even: bool) -> Result<(), LaunchError> {
    let bad = |what| Err(LaunchError::Picture { w: p.width, h: p.height, pitch: p.pitch, len: p.y.len(), what });
    if p.width < 2 || p.height < 2 || p.width > 16384 || p.height > 16384 {
        return bad("size outside 2..=16384");
    }
    if even && (!p.width.is_multiple_of(2) || !p.height.is_multiple_of(2)) {
        return bad("NV12 outputs need even sizes");
    }
    if p.pitch < p.width as usize || p.pitch > i32::MAX as usize {
        return bad("pitch smaller than the width");
    }
    if p.y.len() < p.pitch * p.height as usize || p.uv.len() < p.pitch * p.height.div_ceil(2) as usize {
        return bad("buffers smaller than pitch x rows");
    }
    Ok(())
}

/// Runs the fused ladder kernel on the CPU: `src` scaled into every picture of `dst` (their
/// sizes say the rungs), with `block` threads per block as a GPU launch would use.
pub fn scale_ladder(src: &Nv12, dst: &mut [Nv12], block: (u32, u32)) -> Result<(), LaunchError> {
    if dst.is_empty() || dst.len() > MAX_RUNGS {
        return Err(LaunchError::Rungs(dst.len()));
    }
    if block.0 == 0 || block.1 == 0 || block.0 * block.1 > 1024 {
        return Err(LaunchError::Block(block.0, block.1));
    }
    check(src, false)?;
    for d in dst.iter() {
        check(d, true)?;
    }
    // The source is only read: its `*mut` comes from a shared borrow and is never written.
    let source = ZhPlane::new(src.y.as_ptr().cast_mut(), src.uv.as_ptr().cast_mut(), src.pitch, src.width, src.height);
    let p = ZhLadder::new(
        source,
        dst.iter_mut().map(|d| ZhPlane::new(d.y.as_mut_ptr(), d.uv.as_mut_ptr(), d.pitch, d.width, d.height)),
    );
    let (gx, gy, _) = p.grid(block);
    // SAFETY: every pointer in `p` comes from a live Vec borrowed for this call (`src` shared,
    // each `dst` exclusive, so no output aliases an input or another output); `check` proved each
    // buffer holds pitch x rows bytes for its size, and the kernel only reads source rows/columns
    // clamped into [0, size) and writes output samples inside each rung's size. The emulated
    // launch runs synchronously on this thread and keeps no pointer after it returns.
    unsafe { zh_emu_scale_ladder_nv12(&p, gx, gy, block.0, block.1) };
    Ok(())
}
