//! gRPC over HTTP/2, sans-IO: the length-prefixed message framing, the status in trailers, and
//! the names of the calls zerohop makes or serves. The HTTP/2 itself is hyper's, as for every
//! other request of the node.
//!
//! A message on the wire: one byte (1 when compressed; zerohop never compresses and refuses a
//! compressed message, as it advertises no `grpc-accept-encoding`), four bytes of length
//! (big-endian), then the protobuf bytes. A call ends with trailers `grpc-status` (0 is OK) and
//! `grpc-message` (percent-encoded).
#![forbid(unsafe_code)]

use bytes::{Buf, Bytes, BytesMut};

/// `content-type` of every gRPC request and response.
pub const CONTENT_TYPE: &str = "application/grpc";

/// The calls, as HTTP/2 paths.
pub const REGISTER_TRANSCODER: &str = "/net.Transcoder/RegisterTranscoder";
pub const GET_ORCHESTRATOR: &str = "/net.Orchestrator/GetOrchestrator";
pub const END_TRANSCODING_SESSION: &str = "/net.Orchestrator/EndTranscodingSession";
pub const PING: &str = "/net.Orchestrator/Ping";

/// Largest message accepted (gRPC's own default limit).
pub const MAX_MESSAGE: usize = 4 << 20;

/// gRPC status codes zerohop sends or reads.
pub mod status {
    pub const OK: u32 = 0;
    pub const CANCELLED: u32 = 1;
    pub const UNKNOWN: u32 = 2;
    pub const INVALID_ARGUMENT: u32 = 3;
    pub const NOT_FOUND: u32 = 5;
    pub const PERMISSION_DENIED: u32 = 7;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const UNAUTHENTICATED: u32 = 16;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrpcError {
    #[error("a gRPC message of {0} bytes is over the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
    #[error("a compressed gRPC message, though no compression was offered")]
    Compressed,
    #[error("the gRPC stream ended inside a message ({0} bytes left over)")]
    Truncated(usize),
    #[error("a gRPC message does not decode as {what}: {why}")]
    Decode { what: &'static str, why: String },
}

/// One message, framed.
pub fn frame(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut out = BytesMut::with_capacity(5 + len);
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    message.encode(&mut out).expect("capacity reserved above");
    out.freeze()
}

/// Reads framed messages from a body's data as it arrives.
#[derive(Debug, Default)]
pub struct MessageReader {
    buf: BytesMut,
}

impl MessageReader {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message's bytes, if one is here.
    pub fn poll(&mut self) -> Option<Result<Bytes, GrpcError>> {
        if self.buf.len() < 5 {
            return None;
        }
        if self.buf[0] != 0 {
            return Some(Err(GrpcError::Compressed));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_MESSAGE {
            return Some(Err(GrpcError::TooLarge(len)));
        }
        if self.buf.len() < 5 + len {
            return None;
        }
        self.buf.advance(5);
        Some(Ok(self.buf.split_to(len).freeze()))
    }

    /// The stream ended: an error when it ended inside a message.
    pub fn finish(&self) -> Result<(), GrpcError> {
        if self.buf.is_empty() { Ok(()) } else { Err(GrpcError::Truncated(self.buf.len())) }
    }
}

/// Decodes one message's bytes.
pub fn decode<M: prost::Message + Default>(bytes: Bytes, what: &'static str) -> Result<M, GrpcError> {
    M::decode(bytes).map_err(|e| GrpcError::Decode { what, why: e.to_string() })
}

/// A call's outcome from its trailers (or, for a refusal without a body, its headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: u32,
    pub message: String,
}

impl Status {
    pub fn ok() -> Status {
        Status { code: status::OK, message: String::new() }
    }

    pub fn new(code: u32, message: impl Into<String>) -> Status {
        Status { code, message: message.into() }
    }

    /// `grpc-status` and `grpc-message` from headers or trailers; `None` without `grpc-status`.
    pub fn from_headers(h: &http::HeaderMap) -> Option<Status> {
        let code = h.get("grpc-status")?.to_str().ok()?.trim().parse().ok()?;
        let message = h.get("grpc-message").and_then(|m| m.to_str().ok()).map(percent_decode).unwrap_or_default();
        Some(Status { code, message })
    }

    /// The trailers (or headers of a trailers-only answer) that carry this status.
    pub fn to_headers(&self) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", http::HeaderValue::from(self.code));
        if !self.message.is_empty()
            && let Ok(v) = http::HeaderValue::from_str(&percent_encode(&self.message))
        {
            h.insert("grpc-message", v);
        }
        h
    }
}

/// gRPC's `grpc-message` encoding: bytes outside printable ASCII, and `%`, as `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`percent_encode`]; a `%` not followed by two hex digits is kept as it is.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(hi), Some(lo)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::livepeer::messages::PriceInfo;

    #[test]
    fn messages_split_anywhere_come_out_whole_and_in_order() {
        let a = frame(&PriceInfo { price_per_unit: 1, pixels_per_unit: 300 });
        let b = frame(&PriceInfo::default());
        assert_eq!(&a[..5], &[0, 0, 0, 0, a.len() as u8 - 5]);
        assert_eq!(&b[..], &[0, 0, 0, 0, 0], "an empty message is a prefix alone");
        let wire = [a.clone(), b.clone(), a.clone()].concat();
        for cut in 0..wire.len() {
            let mut r = MessageReader::default();
            let mut got = vec![];
            for part in [&wire[..cut], &wire[cut..]] {
                r.push(part);
                while let Some(m) = r.poll() {
                    got.push(
                        decode::<PriceInfo>(m.expect("holds in this test"), "PriceInfo").expect("holds in this test"),
                    );
                }
            }
            r.finish().expect("holds in this test");
            assert_eq!(got.len(), 3, "cut at {cut}");
            assert_eq!(got[0].pixels_per_unit, 300);
            assert_eq!(got[1], PriceInfo::default());
        }
    }

    #[test]
    fn compressed_oversized_and_truncated_messages_are_refused() {
        let mut r = MessageReader::default();
        r.push(&[1, 0, 0, 0, 0]);
        assert_eq!(r.poll(), Some(Err(GrpcError::Compressed)));
        let mut r = MessageReader::default();
        r.push(&[0, 0x01, 0, 0, 0]);
        assert_eq!(r.poll(), Some(Err(GrpcError::TooLarge(1 << 24))));
        let mut r = MessageReader::default();
        r.push(&[0, 0, 0, 0, 9, 1]);
        assert_eq!(r.poll(), None);
        assert_eq!(r.finish(), Err(GrpcError::Truncated(6)));
    }

    #[test]
    fn status_round_trips_through_trailers_with_its_message_percent_encoded() {
        let s = Status::new(status::UNKNOWN, "invalid secret: 100% wrong\nsee é");
        let h = s.to_headers();
        assert_eq!(h["grpc-status"], "2");
        assert_eq!(h["grpc-message"], "invalid secret: 100%25 wrong%0Asee %C3%A9");
        assert_eq!(Status::from_headers(&h), Some(s));
        assert_eq!(percent_decode("50%"), "50%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%+1x"), "%+1x");
        assert_eq!(Status::from_headers(&http::HeaderMap::new()), None);
    }
}
