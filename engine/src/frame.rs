//! Decoded pictures on the host: 8-bit 4:2:0 planar (I420), tightly packed.
#![forbid(unsafe_code)]

/// An I420 picture with its presentation time.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    /// Presentation time on the extended (unwrapped) 90 kHz timeline.
    pub pts: i64,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({}x{}, pts {})", self.width, self.height, self.pts)
    }
}

impl Frame {
    /// A black picture.
    pub fn new(width: u32, height: u32, pts: i64) -> Frame {
        let (cw, ch) = chroma_size(width, height);
        Frame {
            width,
            height,
            pts,
            y: vec![16; width as usize * height as usize],
            u: vec![128; cw as usize * ch as usize],
            v: vec![128; cw as usize * ch as usize],
        }
    }

    /// Copies planes with strides into a packed frame. Panics if a plane is too short (callers
    /// pass decoder buffers whose size the decoder guarantees).
    pub fn from_strided(width: u32, height: u32, pts: i64, planes: [(&[u8], usize); 3]) -> Frame {
        let (cw, ch) = chroma_size(width, height);
        let copy = |(data, stride): (&[u8], usize), w: u32, h: u32| -> Vec<u8> {
            let (w, h) = (w as usize, h as usize);
            let mut out = Vec::with_capacity(w * h);
            for row in 0..h {
                out.extend_from_slice(&data[row * stride..row * stride + w]);
            }
            out
        };
        Frame {
            width,
            height,
            pts,
            y: copy(planes[0], width, height),
            u: copy(planes[1], cw, ch),
            v: copy(planes[2], cw, ch),
        }
    }

    pub fn chroma_size(&self) -> (u32, u32) {
        chroma_size(self.width, self.height)
    }

    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// Chroma plane size of 4:2:0 for a luma size (odd sizes round up).
pub fn chroma_size(width: u32, height: u32) -> (u32, u32) {
    (width.div_ceil(2), height.div_ceil(2))
}
