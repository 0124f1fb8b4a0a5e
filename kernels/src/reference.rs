//! What the fused ladder kernel computes, stated plainly in f64: for each output sample, a
//! separable Catmull-Rom filter whose support widens with the downscale ratio, over edge-replicated
//! source samples, with H.264's default chroma siting (co-sited horizontally with even luma
//! columns, centred vertically between luma rows). The kernel must agree within +-1.

use crate::Nv12;

/// Largest ratio the support widens for (the kernel's ZH_MAX_RATIO).
const MAX_RATIO: f64 = 8.0;

fn catmull_rom(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.5 * x * x * x - 2.5 * x * x + 1.0
    } else if x < 2.0 {
        -0.5 * x * x * x + 2.5 * x * x - 4.0 * x + 2.0
    } else {
        0.0
    }
}

/// Normalised taps (source index, weight) for an output sample at `center` (source coordinates).
fn taps(center: f64, scale: f64) -> Vec<(i64, f64)> {
    let s = scale.clamp(1.0, MAX_RATIO);
    let support = 2.0 * s;
    let lo = (center - support).floor() as i64 + 1;
    let hi = (center + support).floor() as i64;
    let raw: Vec<(i64, f64)> = (lo..=hi).map(|i| (i, catmull_rom((i as f64 - center) / s))).collect();
    let sum: f64 = raw.iter().map(|t| t.1).sum();
    raw.into_iter().map(|(i, w)| (i, w / sum)).collect()
}

/// One output sample from a plane read through `get(x, y)` over `w` x `h` samples.
fn sample(get: impl Fn(usize, usize) -> u8, w: u32, h: u32, cx: f64, sx: f64, cy: f64, sy: f64) -> u8 {
    let (tx, ty) = (taps(cx, sx), taps(cy, sy));
    let mut acc = 0.0;
    for &(j, wy) in &ty {
        let yy = j.clamp(0, i64::from(h) - 1) as usize;
        let line: f64 = tx.iter().map(|&(i, wx)| wx * f64::from(get(i.clamp(0, i64::from(w) - 1) as usize, yy))).sum();
        acc += wy * line;
    }
    (acc.clamp(0.0, 255.0) + 0.5).floor() as u8
}

/// `src` scaled to `dst_w` x `dst_h` (even), NV12, tightly pitched.
pub fn scale_nv12(src: &Nv12, dst_w: u32, dst_h: u32) -> Nv12 {
    let mut out = Nv12::new(dst_w, dst_h, dst_w as usize, 0);
    let sx = f64::from(src.width) / f64::from(dst_w);
    let sy = f64::from(src.height) / f64::from(dst_h);
    let luma = |x: usize, y: usize| src.y[y * src.pitch + x];
    for y in 0..dst_h {
        let cy = (f64::from(y) + 0.5) * sy - 0.5;
        for x in 0..dst_w {
            let cx = (f64::from(x) + 0.5) * sx - 0.5;
            out.y[y as usize * out.pitch + x as usize] = sample(luma, src.width, src.height, cx, sx, cy, sy);
        }
    }
    let (scw, sch) = (src.width.div_ceil(2), src.height.div_ceil(2));
    for qy in 0..dst_h / 2 {
        // Output chroma row qy sits at output luma row 2qy + 0.5.
        let ly = (2.0 * f64::from(qy) + 1.0) * sy - 0.5;
        let ccy = (ly - 0.5) / 2.0;
        for qx in 0..dst_w / 2 {
            // Output chroma column qx sits on output luma column 2qx.
            let lx = (2.0 * f64::from(qx) + 0.5) * sx - 0.5;
            let ccx = lx / 2.0;
            for c in 0..2 {
                let get = |x: usize, y: usize| src.uv[y * src.pitch + 2 * x + c];
                out.uv[qy as usize * out.pitch + 2 * qx as usize + c] = sample(get, scw, sch, ccx, sx, ccy, sy);
            }
        }
    }
    out
}
