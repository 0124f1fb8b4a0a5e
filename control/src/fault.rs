//! Why a request failed, typed: a stable code, a message, and whose fault it is. Built from an
//! engine error, from an engine code off the wire, or from the control plane's own codes; this
//! type alone decides the HTTP status, the `Retry-After` and the metric reason label.

use std::borrow::Cow;

use http::StatusCode;
use zerohop_engine::TranscodeError;
use zerohop_engine::error::{self as engine, fault_of_code};

/// Whose fault a failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The segment's bytes are bad or unsupported: sending them again fails again.
    Input,
    /// The client's own request is wrong: too large, a stalled upload, bad credentials, an
    /// unknown endpoint or task.
    Broadcaster,
    /// A remote transcoder was lost or misbehaved: retry later.
    Transcoder,
    /// This node failed (a bug, a device fault): not the sender's doing.
    Node,
    /// A resource is exhausted for now (sessions, a GPU's encoder sessions): retry later.
    Capacity,
}

impl From<engine::Fault> for Fault {
    fn from(f: engine::Fault) -> Fault {
        match f {
            engine::Fault::Input => Fault::Input,
            engine::Fault::Capacity => Fault::Capacity,
            engine::Fault::Node => Fault::Node,
        }
    }
}

/// The control plane's own stable codes (the engine's are in `zerohop_engine::error::CODES`).
pub mod code {
    pub const OK: &str = "ok";
    /// The engine's code for a ladder it cannot parse, also given for a bad profiles header.
    pub const BAD_PROFILE: &str = "bad_profile";
    pub const TOO_LARGE: &str = "too_large";
    pub const UPLOAD_STALLED: &str = "upload_stalled";
    pub const UPLOAD_FAILED: &str = "upload_failed";
    pub const UPLOAD_DROPPED: &str = "upload_dropped";
    pub const INPUT_BROKEN: &str = "input_broken";
    pub const TRANSCODER_LOST: &str = "transcoder_lost";
    pub const AT_CAPACITY: &str = "at_capacity";
    /// `GET /readyz` on a node with no transcoding capacity at all.
    pub const NOT_READY: &str = "not_ready";
    pub const NO_CAPABLE_TRANSCODER: &str = "no_capable_transcoder";
    pub const NO_OUTPUT: &str = "no_output";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const AUTH_RATE_LIMITED: &str = "auth_rate_limited";
    pub const STREAM_OWNED: &str = "stream_owned";
    pub const STREAM_LIMIT: &str = "stream_limit";
    pub const NO_TRANSCODERS: &str = "no_transcoders";
    pub const BAD_SECRET: &str = "bad_secret";
    pub const NOT_FOUND: &str = "not_found";
    pub const NO_TASK: &str = "no_task";
    pub const TASK_FAILED_OVER: &str = "task_failed_over";
    pub const BROKEN_RESULTS: &str = "broken_results";
    /// A transcoder endpoint asked for over HTTP/1.1 (the link is HTTP/2 only).
    pub const HTTP2_REQUIRED: &str = "http2_required";
    /// A failed segment whose records named no code.
    pub const ERROR: &str = "error";
    /// A known path asked for with a method it does not serve (the answer's `Allow` lists them).
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// A segment's sequence number that is not a non-negative integer.
    pub const BAD_SEQUENCE: &str = "bad_sequence";
    /// `DELETE` of a stream this node does not hold (never seen, already ended, or expired).
    pub const NO_SUCH_STREAM: &str = "no_such_stream";
    /// A transcoder whose link protocol version this orchestrator does not take.
    pub const LINK_VERSION: &str = "link_version_unsupported";
}

/// The control plane's codes: whose fault, and the HTTP status.
const CONTROL: &[(&str, Fault, StatusCode)] = &[
    (code::TOO_LARGE, Fault::Broadcaster, StatusCode::PAYLOAD_TOO_LARGE),
    (code::UPLOAD_STALLED, Fault::Broadcaster, StatusCode::REQUEST_TIMEOUT),
    (code::UPLOAD_FAILED, Fault::Broadcaster, StatusCode::BAD_REQUEST),
    (code::UPLOAD_DROPPED, Fault::Broadcaster, StatusCode::BAD_REQUEST),
    (code::INPUT_BROKEN, Fault::Broadcaster, StatusCode::BAD_REQUEST),
    (code::NO_CAPABLE_TRANSCODER, Fault::Broadcaster, StatusCode::UNPROCESSABLE_ENTITY),
    (code::UNAUTHORIZED, Fault::Broadcaster, StatusCode::UNAUTHORIZED),
    (code::AUTH_RATE_LIMITED, Fault::Broadcaster, StatusCode::TOO_MANY_REQUESTS),
    (code::STREAM_OWNED, Fault::Broadcaster, StatusCode::FORBIDDEN),
    (code::STREAM_LIMIT, Fault::Broadcaster, StatusCode::TOO_MANY_REQUESTS),
    (code::NO_TRANSCODERS, Fault::Broadcaster, StatusCode::FORBIDDEN),
    (code::BAD_SECRET, Fault::Broadcaster, StatusCode::UNAUTHORIZED),
    (code::NOT_FOUND, Fault::Broadcaster, StatusCode::NOT_FOUND),
    (code::NO_TASK, Fault::Broadcaster, StatusCode::NOT_FOUND),
    (code::TASK_FAILED_OVER, Fault::Broadcaster, StatusCode::CONFLICT),
    (code::BROKEN_RESULTS, Fault::Broadcaster, StatusCode::BAD_REQUEST),
    (code::TRANSCODER_LOST, Fault::Transcoder, StatusCode::SERVICE_UNAVAILABLE),
    (code::AT_CAPACITY, Fault::Capacity, StatusCode::SERVICE_UNAVAILABLE),
    (code::NOT_READY, Fault::Capacity, StatusCode::SERVICE_UNAVAILABLE),
    (code::NO_OUTPUT, Fault::Node, StatusCode::INTERNAL_SERVER_ERROR),
    (code::HTTP2_REQUIRED, Fault::Broadcaster, StatusCode::HTTP_VERSION_NOT_SUPPORTED),
    (code::METHOD_NOT_ALLOWED, Fault::Broadcaster, StatusCode::METHOD_NOT_ALLOWED),
    (code::BAD_SEQUENCE, Fault::Broadcaster, StatusCode::BAD_REQUEST),
    (code::NO_SUCH_STREAM, Fault::Broadcaster, StatusCode::NOT_FOUND),
    (code::LINK_VERSION, Fault::Broadcaster, StatusCode::BAD_REQUEST),
];

/// Every error code a node can answer with: the control plane's, the engine's, and [`code::ERROR`]
/// (a failed segment whose records named none). `doc/openapi.yaml`'s `ErrorCode` lists exactly
/// these (`control/tests/contract.rs` checks it).
pub fn codes() -> impl Iterator<Item = &'static str> {
    let engine = zerohop_engine::error::CODES.iter().map(|&(c, _)| c);
    CONTROL.iter().map(|&(c, ..)| c).chain(engine).chain([code::ERROR])
}

/// Engine codes whose status is not their fault's usual one.
const ENGINE_STATUS: &[(&str, StatusCode)] = &[
    ("unsupported_codec", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ("unsupported_bit_depth", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ("unsupported_chroma", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ("unsupported_interlaced", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ("unsupported_size", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ("bad_profile", StatusCode::BAD_REQUEST),
    // The broadcaster sent the stream's next segment before the last one ended.
    ("segment_in_progress", StatusCode::CONFLICT),
];

/// A failure with its stable code, message and fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct NodeError {
    code: Cow<'static, str>,
    message: String,
    fault: Fault,
    /// Seconds to wait before sending again, when not the fault's usual.
    wait: Option<u64>,
}

impl NodeError {
    /// A failure with one of the control plane's codes ([`code`]) or an engine code.
    pub fn new(code: &'static str, message: impl Into<String>) -> NodeError {
        NodeError { fault: fault_of(code), code: Cow::Borrowed(code), message: message.into(), wait: None }
    }

    /// A failure whose code came over the wire (a remote transcoder's error record); a code this
    /// build does not know is the node's fault.
    pub fn from_code(code: &str, message: impl Into<String>) -> NodeError {
        NodeError { fault: fault_of(code), code: Cow::Owned(code.to_string()), message: message.into(), wait: None }
    }

    /// The engine's error, classified by the engine.
    pub fn engine(e: &TranscodeError) -> NodeError {
        NodeError { code: Cow::Borrowed(e.code()), message: e.to_string(), fault: e.fault().into(), wait: None }
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn fault(&self) -> Fault {
        self.fault
    }

    /// The metric reason label (`zerohop_segments_failed_total{reason}`): the code.
    pub fn reason(&self) -> String {
        self.code.to_string()
    }

    /// The HTTP status that says whose fault it is.
    pub fn status(&self) -> StatusCode {
        let special = CONTROL.iter().map(|&(c, _, s)| (c, s)).chain(ENGINE_STATUS.iter().copied());
        if let Some((_, s)) = special.into_iter().find(|(c, _)| *c == self.code) {
            return s;
        }
        match self.fault {
            Fault::Input => StatusCode::UNPROCESSABLE_ENTITY,
            Fault::Broadcaster => StatusCode::BAD_REQUEST,
            Fault::Transcoder | Fault::Capacity => StatusCode::SERVICE_UNAVAILABLE,
            Fault::Node => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The same failure, which passes after `seconds` (a lockout's remainder).
    pub fn passing_after(mut self, seconds: u64) -> NodeError {
        self.wait = Some(seconds.max(1));
        self
    }

    /// Seconds a client should wait before sending again, for failures that pass.
    pub fn retry_after(&self) -> Option<u64> {
        self.wait.or_else(|| matches!(self.fault, Fault::Transcoder | Fault::Capacity).then_some(1))
    }
}

impl From<&TranscodeError> for NodeError {
    fn from(e: &TranscodeError) -> NodeError {
        NodeError::engine(e)
    }
}

/// Whose fault the failure with code `code` is: the control plane's own table, then the engine's.
fn fault_of(code: &str) -> Fault {
    match CONTROL.iter().find(|(c, ..)| *c == code) {
        Some(&(_, f, _)) => f,
        None => fault_of_code(code).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: &str) -> StatusCode {
        NodeError::from_code(code, "").status()
    }

    #[test]
    fn every_code_keeps_its_status() {
        for c in ["unsupported_codec", "unsupported_bit_depth", "unsupported_chroma", "unsupported_interlaced"] {
            assert_eq!(status(c), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{c}");
        }
        assert_eq!(status("unsupported_size"), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(status("bad_profile"), StatusCode::BAD_REQUEST);
        for c in ["not_transport_stream", "no_program", "no_video", "bad_sps", "no_pictures", "frames_lost"] {
            assert_eq!(status(c), StatusCode::UNPROCESSABLE_ENTITY, "{c}");
        }
        assert_eq!(status("decode_error"), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status("segment_in_progress"), StatusCode::CONFLICT);
        assert_eq!(status(code::TOO_LARGE), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(status(code::UPLOAD_STALLED), StatusCode::REQUEST_TIMEOUT);
        for c in [code::UPLOAD_FAILED, code::UPLOAD_DROPPED, code::INPUT_BROKEN] {
            assert_eq!(status(c), StatusCode::BAD_REQUEST, "{c}");
        }
        for c in [code::TRANSCODER_LOST, code::AT_CAPACITY] {
            assert_eq!(status(c), StatusCode::SERVICE_UNAVAILABLE, "{c}");
            assert_eq!(NodeError::from_code(c, "").retry_after(), Some(1), "{c}");
        }
        assert_eq!(status(code::NO_CAPABLE_TRANSCODER), StatusCode::UNPROCESSABLE_ENTITY);
        for c in ["codec_error", "sink_error", "worker_lost", "internal_error", "cuda_error", "a_newer_peers_code"] {
            assert_eq!(status(c), StatusCode::INTERNAL_SERVER_ERROR, "{c}");
            assert_eq!(NodeError::from_code(c, "").retry_after(), None, "{c}");
        }
    }

    #[test]
    fn refusals_keep_their_statuses() {
        for (c, s) in [
            (code::UNAUTHORIZED, StatusCode::UNAUTHORIZED),
            (code::BAD_SECRET, StatusCode::UNAUTHORIZED),
            (code::STREAM_OWNED, StatusCode::FORBIDDEN),
            (code::NO_TRANSCODERS, StatusCode::FORBIDDEN),
            (code::STREAM_LIMIT, StatusCode::TOO_MANY_REQUESTS),
            (code::AUTH_RATE_LIMITED, StatusCode::TOO_MANY_REQUESTS),
            (code::NOT_FOUND, StatusCode::NOT_FOUND),
            (code::NO_TASK, StatusCode::NOT_FOUND),
            (code::TASK_FAILED_OVER, StatusCode::CONFLICT),
            (code::BROKEN_RESULTS, StatusCode::BAD_REQUEST),
            (code::NO_OUTPUT, StatusCode::INTERNAL_SERVER_ERROR),
            (code::METHOD_NOT_ALLOWED, StatusCode::METHOD_NOT_ALLOWED),
            (code::BAD_SEQUENCE, StatusCode::BAD_REQUEST),
            (code::NO_SUCH_STREAM, StatusCode::NOT_FOUND),
        ] {
            let e = NodeError::new(c, "");
            assert_eq!((e.status(), e.retry_after()), (s, None), "{c}");
        }
        // A lockout says when it ends.
        let e = NodeError::new(code::AUTH_RATE_LIMITED, "").passing_after(0);
        assert_eq!(e.retry_after(), Some(1));
        assert_eq!(NodeError::new(code::AUTH_RATE_LIMITED, "").passing_after(42).retry_after(), Some(42));
    }

    #[test]
    fn an_engine_capacity_fault_is_a_503_to_retry_not_a_500() {
        let e = NodeError::from_code("gpu_session_limit", "NVENC is at its session limit");
        assert_eq!(
            (e.fault(), e.status(), e.retry_after()),
            (Fault::Capacity, StatusCode::SERVICE_UNAVAILABLE, Some(1))
        );
        let e = NodeError::engine(&TranscodeError::Device {
            code: "gpu_session_limit",
            api: "nvEncOpenEncodeSessionEx".into(),
            message: "too many sessions".into(),
        });
        assert_eq!(
            (e.fault(), e.status(), e.code()),
            (Fault::Capacity, StatusCode::SERVICE_UNAVAILABLE, "gpu_session_limit")
        );
    }

    #[test]
    fn faults_say_whose_and_the_reason_is_the_code() {
        let e = NodeError::engine(&TranscodeError::SegmentInProgress);
        assert_eq!(
            (e.fault(), e.code(), e.reason().as_str()),
            (Fault::Node, "segment_in_progress", "segment_in_progress")
        );
        assert_eq!(NodeError::new(code::TOO_LARGE, "big").fault(), Fault::Broadcaster);
        assert_eq!(NodeError::new(code::TRANSCODER_LOST, "gone").fault(), Fault::Transcoder);
        assert_eq!(NodeError::from_code("no_video", "").fault(), Fault::Input);
        // Every engine code classifies as the engine says.
        for &(c, f) in zerohop_engine::error::CODES {
            assert_eq!(NodeError::from_code(c, "").fault(), Fault::from(f), "{c}");
        }
        // The control plane's codes do not shadow the engine's.
        for (c, ..) in CONTROL {
            assert!(zerohop_engine::error::CODES.iter().all(|(e, _)| e != c), "{c}");
        }
        assert_eq!(NodeError::new(code::NO_TASK, "gone").to_string(), "gone (no_task)");
    }
}
