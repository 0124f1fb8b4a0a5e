//! Objective quality: PSNR between two pictures of the same size.
#![forbid(unsafe_code)]

use crate::frame::Frame;

/// PSNR of each plane, dB (capped at 100 for identical planes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Psnr {
    pub y: f64,
    pub u: f64,
    pub v: f64,
}

impl Psnr {
    /// The usual 6:1:1 weighted average.
    pub fn weighted(&self) -> f64 {
        (6.0 * self.y + self.u + self.v) / 8.0
    }
}

/// Sum of squared differences of two equally long planes.
pub fn sse(a: &[u8], b: &[u8]) -> u64 {
    assert_eq!(a.len(), b.len(), "planes differ in size");
    a.iter().zip(b).map(|(&x, &y)| u64::from(x.abs_diff(y)).pow(2)).sum()
}

/// PSNR of one plane from its SSE and sample count.
pub fn psnr_from_sse(sse: u64, samples: usize) -> f64 {
    if sse == 0 || samples == 0 {
        return 100.0;
    }
    let mse = sse as f64 / samples as f64;
    (10.0 * (255.0 * 255.0 / mse).log10()).min(100.0)
}

/// PSNR of `a` against `b`; panics if their sizes differ.
pub fn psnr_frame(a: &Frame, b: &Frame) -> Psnr {
    assert_eq!((a.width, a.height), (b.width, b.height), "frames differ in size");
    Psnr {
        y: psnr_from_sse(sse(&a.y, &b.y), a.y.len()),
        u: psnr_from_sse(sse(&a.u, &b.u), a.u.len()),
        v: psnr_from_sse(sse(&a.v, &b.v), a.v.len()),
    }
}
