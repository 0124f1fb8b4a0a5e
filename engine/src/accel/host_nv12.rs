//! An NV12 picture in host memory, laid out as a device's pitched buffer so one copy fills it:
//! what a GPU without NVENC downloads for the CPU encoders (`accel::host_encode`).
//!
//! Its bytes are ordinary (pageable) memory on the CPU and emulated paths, and page-locked
//! ("pinned") memory on the CUDA path ([`HostBytes`]): a device-to-host copy into pageable memory
//! is synchronous in the CUDA driver whatever its `Async` name says (the driver API reference,
//! "API synchronization behavior"), so the GPU downloads only into pinned buffers, allocated by
//! the CUDA backend (`cuda::memory::PinnedHost`) and recycled by the encoders.

use std::ops::{Deref, DerefMut};

use crate::frame::Frame;

/// Page-locked host memory owned by a GPU backend (freed by it, with its context), seen as
/// bytes. Implementations hand out the same `len()` bytes every time.
pub trait PinnedBytes: Send + std::fmt::Debug {
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
}

/// Where a host picture's bytes live.
#[derive(Debug)]
pub enum HostBytes {
    /// Ordinary heap memory: the CPU and emulated paths.
    Pageable(Vec<u8>),
    /// Memory the driver page-locked: what a GPU copies into asynchronously.
    Pinned(Box<dyn PinnedBytes>),
}

impl HostBytes {
    /// Whether a GPU can copy into these bytes without the driver staging (and blocking) it.
    pub fn is_pinned(&self) -> bool {
        matches!(self, HostBytes::Pinned(_))
    }
}

impl Deref for HostBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            HostBytes::Pageable(v) => v,
            HostBytes::Pinned(p) => p.bytes(),
        }
    }
}

impl DerefMut for HostBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            HostBytes::Pageable(v) => v,
            HostBytes::Pinned(p) => p.bytes_mut(),
        }
    }
}

/// A clone is a pageable copy (pinned memory is the backend's to allocate).
impl Clone for HostBytes {
    fn clone(&self) -> HostBytes {
        HostBytes::Pageable(self.to_vec())
    }
}

/// Equal when the bytes are, wherever they live.
impl PartialEq for HostBytes {
    fn eq(&self, other: &HostBytes) -> bool {
        **self == **other
    }
}
impl Eq for HostBytes {}

/// An NV12 picture in host memory, laid out as the device's buffers are (luma rows of `pitch`
/// bytes, then `ceil(height / 2)` interleaved chroma rows), so one copy fills it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNv12 {
    pub width: u32,
    pub height: u32,
    pub pitch: usize,
    pub data: HostBytes,
}

impl HostNv12 {
    pub fn new(width: u32, height: u32, pitch: usize) -> HostNv12 {
        assert!(pitch >= width as usize, "pitch {pitch} < width {width}");
        HostNv12 { width, height, pitch, data: HostBytes::Pageable(vec![0; Self::len(pitch, height)]) }
    }

    /// A picture in pinned memory of exactly [`len`](Self::len)`(pitch, height)` bytes.
    pub fn pinned(width: u32, height: u32, pitch: usize, bytes: Box<dyn PinnedBytes>) -> HostNv12 {
        assert!(pitch >= width as usize, "pitch {pitch} < width {width}");
        let len = bytes.bytes().len();
        assert_eq!(len, Self::len(pitch, height), "{len} pinned bytes for a {width}x{height} picture of pitch {pitch}");
        HostNv12 { width, height, pitch, data: HostBytes::Pinned(bytes) }
    }

    /// The bytes of one row a copy must fill for every luma and chroma row: the width rounded
    /// up to even (a chroma row of an odd width holds `width + 1` bytes).
    pub fn row_bytes(width: u32) -> usize {
        2 * width.div_ceil(2) as usize
    }

    /// Bytes of a picture of this pitch and height.
    pub fn len(pitch: usize, height: u32) -> usize {
        pitch * (height as usize + height.div_ceil(2) as usize)
    }

    /// `f` (I420, tightly packed) laid out as a device buffer of row pitch `pitch`.
    pub fn from_frame(f: &Frame, pitch: usize) -> HostNv12 {
        let mut p = HostNv12::new(f.width, f.height, pitch);
        let w = f.width as usize;
        for y in 0..f.height as usize {
            p.data[y * pitch..y * pitch + w].copy_from_slice(&f.y[y * w..y * w + w]);
        }
        let (cw, ch) = f.chroma_size();
        let (cw, ch) = (cw as usize, ch as usize);
        let uv = &mut p.data[pitch * f.height as usize..];
        for y in 0..ch {
            let row = &mut uv[y * pitch..y * pitch + 2 * cw];
            for x in 0..cw {
                row[2 * x] = f.u[y * cw + x];
                row[2 * x + 1] = f.v[y * cw + x];
            }
        }
        p
    }

    /// The picture as the CPU encoder takes it (I420, tightly packed).
    pub fn to_frame(&self, pts: i64) -> Frame {
        let mut f = Frame::new(self.width, self.height, pts);
        let (w, p) = (self.width as usize, self.pitch);
        for y in 0..self.height as usize {
            f.y[y * w..y * w + w].copy_from_slice(&self.data[y * p..y * p + w]);
        }
        let (cw, ch) = f.chroma_size();
        let (cw, ch) = (cw as usize, ch as usize);
        let uv = &self.data[p * self.height as usize..];
        for y in 0..ch {
            let row = &uv[y * p..y * p + 2 * cw];
            for x in 0..cw {
                f.u[y * cw + x] = row[2 * x];
                f.v[y * cw + x] = row[2 * x + 1];
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nv12_to_i420_takes_the_visible_samples_of_padded_rows() {
        let mut p = HostNv12::new(5, 3, 8);
        for (i, b) in p.data.iter_mut().enumerate() {
            *b = i as u8;
        }
        let f = p.to_frame(7);
        assert_eq!((f.width, f.height, f.pts), (5, 3, 7));
        assert_eq!(&f.y[..5], &[0, 1, 2, 3, 4]);
        assert_eq!(&f.y[5..10], &[8, 9, 10, 11, 12]);
        // Chroma starts after 3 luma rows of 8; 3x2 chroma samples, Cb Cr interleaved.
        assert_eq!(f.u, vec![24, 26, 28, 32, 34, 36]);
        assert_eq!(f.v, vec![25, 27, 29, 33, 35, 37]);
        // And back: the visible samples land where they came from, the padding stays zero.
        let back = HostNv12::from_frame(&f, 8);
        for (i, (&a, &b)) in back.data.iter().zip(p.data.iter()).enumerate() {
            let visible = if i < 24 { i % 8 < 5 } else { (i - 24) % 8 < 6 };
            assert_eq!(a, if visible { b } else { 0 }, "byte {i}");
        }
    }
}
