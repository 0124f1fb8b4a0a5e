//! The engine's public error: what went wrong with a segment or a session.

use crate::codec::CodecError;
use crate::h264::{BadSps, Unsupported};
use crate::profile::ProfileError;
use crate::scale::ScaleError;
use crate::ts::DemuxError;

/// Why a segment (or a session) failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TranscodeError {
    #[error(transparent)]
    Demux(#[from] DemuxError),
    #[error("the program has no video stream (it has: {streams}); zerohop needs one H.264 video stream")]
    NoVideo { streams: String },
    #[error("unsupported input: {0}")]
    Unsupported(#[from] Unsupported),
    #[error(transparent)]
    BadSps(#[from] BadSps),
    #[error("no decodable H.264 picture in the segment ({access_units} access units, none decoded{})", first_error.as_ref().map(|e| format!("; first error: {e}")).unwrap_or_default())]
    NoPictures { access_units: u64, first_error: Option<CodecError> },
    #[error(
        "decoded {decoded} of {expected} pictures: {}; OpenH264 drops every picture after a corrupt one up to the next IDR, so the renditions would be incomplete",
        first_error.as_ref().map(|e| e.to_string()).unwrap_or_else(|| "pictures went missing".into())
    )]
    FramesLost { expected: u64, decoded: u64, first_error: Option<CodecError> },
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Scale(#[from] ScaleError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The segment's clip ([`crate::Clip`]) keeps none of its pictures: `from_ms`..`to_ms` after
    /// its first picture (`None`: to its end) holds no picture.
    #[error(
        "the clip from {from_ms} ms to {} after the segment's first picture keeps none of its pictures",
        to_ms.map(|t| format!("{t} ms")).unwrap_or_else(|| "the end".into())
    )]
    EmptyClip { from_ms: u64, to_ms: Option<u64> },
    #[error("rendition {rendition}: output sink failed: {message}")]
    Sink { rendition: String, message: String },
    #[error("a segment of this session is still in progress; finish or drop it first")]
    SegmentInProgress,
    #[error("the segment was abandoned before its end")]
    Abandoned,
    #[error("the session's {worker} worker stopped unexpectedly; open a new session")]
    WorkerLost { worker: String },
    /// A bug met this segment: caught at the worker boundary, the segment fails, the session
    /// recovers (its encoder state is reset) and the process goes on.
    #[error("internal error in the {worker} worker ({message}); this segment failed, the session goes on")]
    Panic { worker: String, message: String },
    /// The accelerator (GPU) failed: the API and its status.
    #[error("device: {api} failed: {message}")]
    Device { code: &'static str, api: String, message: String },
}

/// The message of a caught panic.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// Whose fault a failure is: the one classification every layer maps from (the control plane
/// turns it into an HTTP status and a metric reason at its edge, nowhere else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The input's bytes are bad or unsupported: sending them again fails again.
    Input,
    /// A resource is exhausted for now (a GPU at its encoder-session limit): retry later or
    /// elsewhere.
    Capacity,
    /// The node failed (a bug, a device fault, a lost worker): not the sender's doing.
    Node,
}

/// Every stable code the engine gives, with whose fault it is. Codes also travel between nodes
/// (a remote transcoder's error record), so a code alone must classify: [`fault_of_code`].
pub const CODES: &[(&str, Fault)] = &[
    ("not_transport_stream", Fault::Input),
    ("no_program", Fault::Input),
    ("no_video", Fault::Input),
    ("unsupported_codec", Fault::Input),
    ("unsupported_bit_depth", Fault::Input),
    ("unsupported_chroma", Fault::Input),
    ("unsupported_interlaced", Fault::Input),
    ("unsupported_size", Fault::Input),
    ("bad_sps", Fault::Input),
    ("no_pictures", Fault::Input),
    ("frames_lost", Fault::Input),
    ("decode_error", Fault::Input),
    ("bad_profile", Fault::Input),
    ("empty_clip", Fault::Input),
    ("codec_error", Fault::Node),
    ("scale_error", Fault::Node),
    ("sink_error", Fault::Node),
    ("segment_in_progress", Fault::Node),
    ("abandoned", Fault::Node),
    ("worker_lost", Fault::Node),
    ("internal_error", Fault::Node),
    // Device codes (`DeviceError::code`, the CUDA backend's `CudaError::code`).
    ("gpu_session_limit", Fault::Capacity),
    ("gpu_unavailable", Fault::Node),
    ("gpu_error", Fault::Node),
    ("cuda_error", Fault::Node),
    ("nvenc_error", Fault::Node),
    ("nvdec_error", Fault::Node),
    ("no_nvenc", Fault::Node),
    ("no_nvdec", Fault::Node),
    ("kernel_compile", Fault::Node),
    ("invalid_gpu_call", Fault::Node),
];

/// Whose fault the failure with stable code `code` is; a code this build does not know (from a
/// newer peer) is the node's.
pub fn fault_of_code(code: &str) -> Fault {
    CODES.iter().find(|(c, _)| *c == code).map(|&(_, f)| f).unwrap_or(Fault::Node)
}

impl TranscodeError {
    /// Whose fault this is.
    pub fn fault(&self) -> Fault {
        fault_of_code(self.code())
    }

    /// Whether the input is at fault (bad or unsupported bytes) rather than the node.
    pub fn is_input_error(&self) -> bool {
        self.fault() == Fault::Input
    }

    /// A short stable code for machines (logs, metrics, HTTP error bodies).
    pub fn code(&self) -> &'static str {
        match self {
            TranscodeError::Demux(DemuxError::NotTransportStream { .. }) => "not_transport_stream",
            TranscodeError::Demux(DemuxError::NoProgram { .. }) => "no_program",
            TranscodeError::NoVideo { .. } => "no_video",
            TranscodeError::Unsupported(Unsupported::Codec { .. }) => "unsupported_codec",
            TranscodeError::Unsupported(Unsupported::BitDepth { .. }) => "unsupported_bit_depth",
            TranscodeError::Unsupported(Unsupported::Chroma { .. }) => "unsupported_chroma",
            TranscodeError::Unsupported(Unsupported::Interlaced { .. }) => "unsupported_interlaced",
            TranscodeError::Unsupported(Unsupported::Size { .. }) => "unsupported_size",
            TranscodeError::BadSps(_) => "bad_sps",
            TranscodeError::NoPictures { .. } => "no_pictures",
            TranscodeError::FramesLost { .. } => "frames_lost",
            TranscodeError::Codec(CodecError::Decode { .. }) => "decode_error",
            TranscodeError::Codec(_) => "codec_error",
            TranscodeError::Scale(_) => "scale_error",
            TranscodeError::Profile(_) => "bad_profile",
            TranscodeError::EmptyClip { .. } => "empty_clip",
            TranscodeError::Sink { .. } => "sink_error",
            TranscodeError::SegmentInProgress => "segment_in_progress",
            TranscodeError::Abandoned => "abandoned",
            TranscodeError::WorkerLost { .. } => "worker_lost",
            TranscodeError::Panic { .. } => "internal_error",
            TranscodeError::Device { code, .. } => code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_classified_once() {
        let mut seen = std::collections::HashSet::new();
        for (c, _) in CODES {
            assert!(seen.insert(*c), "{c} listed twice");
        }
        assert_eq!(fault_of_code("gpu_session_limit"), Fault::Capacity);
        assert_eq!(fault_of_code("bad_sps"), Fault::Input);
        assert_eq!(fault_of_code("from_a_newer_peer"), Fault::Node);
    }

    #[test]
    fn error_faults_follow_the_table() {
        let e = TranscodeError::Device { code: "gpu_session_limit", api: "x".into(), message: "y".into() };
        assert_eq!(e.fault(), Fault::Capacity);
        assert!(!e.is_input_error());
        assert!(TranscodeError::NoVideo { streams: String::new() }.is_input_error());
        assert_eq!(TranscodeError::Abandoned.fault(), Fault::Node);
        let e = TranscodeError::EmptyClip { from_ms: 5000, to_ms: Some(6000) };
        assert_eq!((e.code(), e.fault()), ("empty_clip", Fault::Input));
        assert!(e.to_string().contains("5000 ms to 6000 ms"), "{e}");
        let e = TranscodeError::EmptyClip { from_ms: 5000, to_ms: None };
        assert!(e.to_string().contains("to the end"), "{e}");
    }
}
