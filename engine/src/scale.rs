//! Picture scaling for the rendition ladder.
//!
//! The fast path is `fast_image_resize` (SIMD convolution on 8-bit planes). The filter support
//! grows with the downscale factor, so 2x-4x reductions are low-passed and do not alias. The
//! plain-Rust [`reference`] implements the same convolution in `f64` and is what tests compare
//! the fast path against.
//!
//! Chroma planes are scaled by the same factor as luma. With MPEG-2 ("left") chroma siting this
//! shifts chroma by (factor-1)/4 chroma samples to the left (0.125 px for 1080p->720p), below
//! what the eye sees at these sizes; the CUDA kernels correct it exactly.
#![forbid(unsafe_code)]

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::frame::{Frame, chroma_size};

/// The convolution filter. All three adapt their support to the scale factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScaleFilter {
    /// Triangle filter (antialiased bilinear): softest, cheapest.
    Bilinear,
    /// Catmull-Rom cubic: sharp without ringing; the default.
    #[default]
    CatmullRom,
    /// Lanczos, 3 lobes: sharpest, most expensive.
    Lanczos3,
}

impl ScaleFilter {
    fn fir(self) -> FilterType {
        match self {
            ScaleFilter::Bilinear => FilterType::Bilinear,
            ScaleFilter::CatmullRom => FilterType::CatmullRom,
            ScaleFilter::Lanczos3 => FilterType::Lanczos3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScaleError {
    #[error("cannot scale {src_w}x{src_h} to {dst_w}x{dst_h}: {reason}")]
    Size { src_w: u32, src_h: u32, dst_w: u32, dst_h: u32, reason: String },
}

/// A reusable scaler (keeps its coefficient and scratch buffers between frames).
#[derive(Debug)]
pub struct Scaler {
    resizer: Resizer,
    options: ResizeOptions,
}

impl Scaler {
    pub fn new(filter: ScaleFilter) -> Scaler {
        Scaler {
            resizer: Resizer::new(),
            options: ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter.fir())),
        }
    }

    /// Scales `src` into a new frame of `dst_w` x `dst_h` (same PTS). A frame that already has the
    /// size is copied.
    pub fn scale(&mut self, src: &Frame, dst_w: u32, dst_h: u32) -> Result<Frame, ScaleError> {
        let mut out = Frame::new(dst_w, dst_h, src.pts);
        self.scale_into(src, &mut out)?;
        Ok(out)
    }

    /// Scales `src` into `dst`, keeping `dst`'s size.
    pub fn scale_into(&mut self, src: &Frame, dst: &mut Frame) -> Result<(), ScaleError> {
        dst.pts = src.pts;
        if (src.width, src.height) == (dst.width, dst.height) {
            dst.y.clone_from(&src.y);
            dst.u.clone_from(&src.u);
            dst.v.clone_from(&src.v);
            return Ok(());
        }
        let err = |reason: String| ScaleError::Size {
            src_w: src.width,
            src_h: src.height,
            dst_w: dst.width,
            dst_h: dst.height,
            reason,
        };
        let (scw, sch) = src.chroma_size();
        let (dcw, dch) = dst.chroma_size();
        for (s, d, sw, sh, dw, dh) in [
            (&src.y, &mut dst.y, src.width, src.height, dst.width, dst.height),
            (&src.u, &mut dst.u, scw, sch, dcw, dch),
            (&src.v, &mut dst.v, scw, sch, dcw, dch),
        ] {
            let src_img = ImageRef::new(sw, sh, s, PixelType::U8).map_err(|e| err(e.to_string()))?;
            let mut dst_img =
                Image::from_slice_u8(dw, dh, d.as_mut_slice(), PixelType::U8).map_err(|e| err(e.to_string()))?;
            self.resizer.resize(&src_img, &mut dst_img, &self.options).map_err(|e| err(e.to_string()))?;
        }
        Ok(())
    }
}

/// Plain-Rust reference of the same separable convolution, in `f64`. Slow; for tests and as
/// the independent scaling path PSNR is measured against.
pub mod reference {
    use super::*;

    fn kernel(filter: ScaleFilter, x: f64) -> f64 {
        let x = x.abs();
        match filter {
            ScaleFilter::Bilinear => (1.0 - x).max(0.0),
            ScaleFilter::CatmullRom => {
                if x < 1.0 {
                    1.5 * x * x * x - 2.5 * x * x + 1.0
                } else if x < 2.0 {
                    -0.5 * x * x * x + 2.5 * x * x - 4.0 * x + 2.0
                } else {
                    0.0
                }
            }
            ScaleFilter::Lanczos3 => {
                if x == 0.0 {
                    1.0
                } else if x < 3.0 {
                    let px = std::f64::consts::PI * x;
                    3.0 * px.sin() * (px / 3.0).sin() / (px * px)
                } else {
                    0.0
                }
            }
        }
    }

    fn support(filter: ScaleFilter) -> f64 {
        match filter {
            ScaleFilter::Bilinear => 1.0,
            ScaleFilter::CatmullRom => 2.0,
            ScaleFilter::Lanczos3 => 3.0,
        }
    }

    /// Normalised weights of every output sample: (first source index, weights).
    fn weights(filter: ScaleFilter, src: u32, dst: u32) -> Vec<(usize, Vec<f64>)> {
        let scale = f64::from(src) / f64::from(dst);
        let fscale = scale.max(1.0);
        let radius = support(filter) * fscale;
        (0..dst)
            .map(|x| {
                let center = (f64::from(x) + 0.5) * scale;
                let lo = ((center - radius).floor().max(0.0)) as usize;
                let hi = ((center + radius).ceil().min(f64::from(src))) as usize;
                let mut w: Vec<f64> = (lo..hi).map(|i| kernel(filter, (i as f64 + 0.5 - center) / fscale)).collect();
                let sum: f64 = w.iter().sum();
                if sum != 0.0 {
                    w.iter_mut().for_each(|v| *v /= sum);
                }
                (lo, w)
            })
            .collect()
    }

    /// Scales one 8-bit plane.
    pub fn scale_plane(filter: ScaleFilter, src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32) -> Vec<u8> {
        let (swu, dwu) = (sw as usize, dw as usize);
        let hw = weights(filter, sw, dw);
        let vw = weights(filter, sh, dh);
        // Horizontal pass into f64 rows, then vertical.
        let mut tmp = vec![0f64; dwu * sh as usize];
        for y in 0..sh as usize {
            let row = &src[y * swu..(y + 1) * swu];
            for (x, (lo, w)) in hw.iter().enumerate() {
                tmp[y * dwu + x] = w.iter().enumerate().map(|(k, wk)| wk * f64::from(row[lo + k])).sum();
            }
        }
        let mut out = vec![0u8; dwu * dh as usize];
        for (y, (lo, w)) in vw.iter().enumerate() {
            for x in 0..dwu {
                let v: f64 = w.iter().enumerate().map(|(k, wk)| wk * tmp[(lo + k) * dwu + x]).sum();
                out[y * dwu + x] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
        out
    }

    /// Scales a whole frame.
    pub fn scale(filter: ScaleFilter, src: &Frame, dw: u32, dh: u32) -> Frame {
        let (scw, sch) = src.chroma_size();
        let (dcw, dch) = chroma_size(dw, dh);
        Frame {
            width: dw,
            height: dh,
            pts: src.pts,
            y: scale_plane(filter, &src.y, src.width, src.height, dw, dh),
            u: scale_plane(filter, &src.u, scw, sch, dcw, dch),
            v: scale_plane(filter, &src.v, scw, sch, dcw, dch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::psnr_frame;

    fn pattern(w: u32, h: u32) -> Frame {
        let mut f = Frame::new(w, h, 0);
        for y in 0..h as usize {
            for x in 0..w as usize {
                // Smooth gradient plus sharp edges and fine detail.
                let v = (x * 255 / w as usize) ^ if (x / 7 + y / 5) % 2 == 0 { 0x40 } else { 0 };
                f.y[y * w as usize + x] = v as u8;
            }
        }
        let (cw, ch) = f.chroma_size();
        for i in 0..(cw * ch) as usize {
            f.u[i] = (i % 251) as u8;
            f.v[i] = (255 - i % 241) as u8;
        }
        f
    }

    #[test]
    fn fast_path_matches_reference_at_many_sizes() {
        let mut scaler = Scaler::new(ScaleFilter::CatmullRom);
        for &(sw, sh, dw, dh) in &[
            (64, 48, 32, 24),
            (99, 37, 50, 20),
            (1920, 1080, 1280, 720),
            (1920, 1080, 854, 480),
            (640, 480, 426, 240),
            (320, 240, 320, 240),
            (33, 17, 66, 34),
        ] {
            let src = pattern(sw, sh);
            let fast = scaler.scale(&src, dw, dh).expect("scale");
            let reference = reference::scale(ScaleFilter::CatmullRom, &src, dw, dh);
            let p = psnr_frame(&fast, &reference);
            assert!(p.y >= 45.0 && p.u >= 45.0, "{sw}x{sh}->{dw}x{dh}: fast vs reference {p:?}");
            // The fast path rounds to 8 bits between its horizontal and vertical passes and uses
            // fixed-point weights; the reference keeps f64 throughout. Cubic lobes amplify the
            // intermediate rounding to a few levels on rare samples.
            let diffs: Vec<u8> =
                fast.y.iter().zip(&reference.y).map(|(a, b)| a.abs_diff(*b)).filter(|&d| d > 2).collect();
            let max = diffs.iter().copied().max().unwrap_or(0);
            assert!(max <= 6, "{sw}x{sh}->{dw}x{dh}: luma differs by up to {max}");
            assert!(
                diffs.len() * 100 <= fast.y.len(),
                "{sw}x{sh}->{dw}x{dh}: {} samples differ by more than 2",
                diffs.len()
            );
        }
    }

    #[test]
    fn downscale_does_not_alias() {
        // A one-pixel checkerboard must become flat grey when reduced 3x, not a moire pattern.
        let (w, h) = (192, 108);
        let mut f = Frame::new(w, h, 0);
        for y in 0..h as usize {
            for x in 0..w as usize {
                f.y[y * w as usize + x] = if (x + y) % 2 == 0 { 235 } else { 16 };
            }
        }
        let out = Scaler::new(ScaleFilter::default()).scale(&f, 64, 36).expect("scale");
        let inner: Vec<u8> =
            (2..34).flat_map(|y| (2..62).map(move |x| (x, y))).map(|(x, y)| out.y[y * 64 + x]).collect();
        let (lo, hi) = (inner.iter().min().copied().unwrap_or(0), inner.iter().max().copied().unwrap_or(0));
        assert!(hi - lo <= 40, "checkerboard aliased into {lo}..{hi}");
    }
}
