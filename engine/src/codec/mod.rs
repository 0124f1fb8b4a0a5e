//! CPU codecs: OpenH264 (bundled C++, built by `cargo build`) for H.264 decode and encode, and
//! libx264 for encode where the machine has it (loaded at run time; [`choice`] says which
//! encodes). [`ensure`] is the one way a rendition's encoder is opened or retuned.

pub mod choice;
pub mod decoder;
pub mod encoder;
pub mod open;
pub mod x264;

pub use choice::{CpuEncoder, CpuEncoderChoice, ResolvedEncoder, X264Preset, X264Unavailable};
pub use decoder::H264Decoder;
pub use encoder::{EncodedFrame, EncoderSettings, H264Encoder};
pub use open::{Encoder, ensure};

/// Frame-rate changes smaller than this (frames per second) are PTS rounding's wobble, not a
/// new rate: no encoder is retuned or reopened for them (x264's own threshold).
const FPS_EPSILON: f64 = 0.01;

/// Whether `want` is a usable rate other than `have`.
fn new_rate(have: f64, want: f64) -> bool {
    want.is_finite() && want > 0.0 && (want - have).abs() >= FPS_EPSILON
}

/// Errors of the codec layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Opening or configuring an encoder or decoder (`call` names the library's function).
    #[error("{call} failed: {detail}")]
    Init { call: &'static str, detail: String },
    /// The decoder rejected a picture; with error concealment off it then drops every picture
    /// that references it, up to the next IDR.
    #[error("H.264 decode error at PTS {pts}: {}", decoding_state(*.state))]
    Decode { pts: i64, state: i32 },
    #[error("H.264 encode of frame at PTS {pts} failed: {detail}")]
    Encode { pts: i64, detail: String },
    #[error("decoded picture has unsupported layout: {0}")]
    Layout(String),
}

/// Names of OpenH264's DECODING_STATE bits.
pub fn decoding_state(state: i32) -> String {
    use openh264_sys2 as s;
    let names = [
        (s::dsFramePending, "frame pending"),
        (s::dsRefLost, "reference picture lost"),
        (s::dsBitstreamError, "bitstream error"),
        (s::dsDepLayerLost, "dependency layer lost"),
        (s::dsNoParamSets, "no SPS/PPS yet"),
        (s::dsDataErrorConcealed, "error concealed"),
        (s::dsRefListNullPtrs, "reference list broken"),
        (s::dsInvalidArgument, "invalid argument"),
        (s::dsInitialOptExpected, "decoder not initialised"),
        (s::dsOutOfMemory, "out of memory"),
        (s::dsDstBufNeedExpan, "output buffer too small"),
    ];
    let v: Vec<&str> = names.iter().filter(|(bit, _)| state & bit != 0).map(|(_, n)| *n).collect();
    if v.is_empty() { format!("state 0x{state:x}") } else { format!("{} (0x{state:x})", v.join(", ")) }
}
