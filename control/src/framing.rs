//! The result stream: how a segment's renditions travel back to the broadcaster (and from a
//! transcoder to its orchestrator) in one HTTP/2 response body, interleaved, as they are made.
//!
//! Sans-IO: [`encode`] appends a record to a buffer; [`RecordReader`] takes bytes pushed in any
//! pieces and hands out whole records.
//!
//! ```text
//! record   := kind:u8  rendition:u8  length:u32 (big-endian)  payload[length]
//! kind 'S' start      rendition 255  JSON {"stream", "seq", "renditions": ["720p", ...]}
//! kind 'C' chunk      rendition i    whole 188-byte TS packets of rendition i, in order
//! kind 'D' done       rendition i    JSON {"frames", "bytes", "width", "height", "keyframes"}
//! kind 'E' error      rendition i/255 JSON {"code", "message"}  (255: the whole segment)
//! kind 'Z' end        rendition 255  JSON {"status": "ok"|"error", "frames", "media_ms", "transcode_ms"}
//! ```
//! A well-formed stream is `S (C|D|E)* Z`; every rendition gets exactly one `D` or `E`.
//! `zerohop push` reads it; so can ten lines of any language (`curl -o seg.zhr` then split).
#![forbid(unsafe_code)]

use bytes::{Buf, Bytes, BytesMut};

/// Largest payload a reader accepts (a chunk is one encoded frame's packets).
pub const MAX_PAYLOAD: usize = 16 << 20;
/// Rendition byte of records about the whole segment.
pub const SEGMENT: u8 = 255;
const HEADER: usize = 6;

/// Record kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Start,
    Chunk,
    Done,
    Error,
    End,
}

impl Kind {
    pub fn byte(self) -> u8 {
        match self {
            Kind::Start => b'S',
            Kind::Chunk => b'C',
            Kind::Done => b'D',
            Kind::Error => b'E',
            Kind::End => b'Z',
        }
    }

    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            b'S' => Kind::Start,
            b'C' => Kind::Chunk,
            b'D' => Kind::Done,
            b'E' => Kind::Error,
            b'Z' => Kind::End,
            _ => return None,
        })
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub rendition: u8,
    pub payload: Bytes,
}

/// Appends one record to `out`.
pub fn encode(kind: Kind, rendition: u8, payload: &[u8], out: &mut BytesMut) {
    assert!(payload.len() <= MAX_PAYLOAD, "record payload of {} bytes exceeds {MAX_PAYLOAD}", payload.len());
    out.reserve(HEADER + payload.len());
    out.extend_from_slice(&[kind.byte(), rendition]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// One record as its own buffer.
pub fn record(kind: Kind, rendition: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    encode(kind, rendition, payload, &mut b);
    b.freeze()
}

/// Why a result stream is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("unknown record kind 0x{0:02x} (expected one of S C D E Z)")]
    UnknownKind(u8),
    #[error("record payload of {length} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    TooLarge { length: usize },
    #[error("result stream ended inside a record ({buffered} bytes left over)")]
    Truncated { buffered: usize },
}

/// Push-based record parser.
#[derive(Debug, Default)]
pub struct RecordReader {
    buf: BytesMut,
    failed: bool,
}

impl RecordReader {
    pub fn new() -> RecordReader {
        RecordReader::default()
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete record, `None` when more bytes are needed. After an error the reader
    /// stays failed (the stream cannot be resynchronised).
    pub fn poll(&mut self) -> Option<Result<Record, FramingError>> {
        if self.failed || self.buf.len() < HEADER {
            return None;
        }
        let Some(kind) = Kind::from_byte(self.buf[0]) else {
            self.failed = true;
            return Some(Err(FramingError::UnknownKind(self.buf[0])));
        };
        let length = u32::from_be_bytes([self.buf[2], self.buf[3], self.buf[4], self.buf[5]]) as usize;
        if length > MAX_PAYLOAD {
            self.failed = true;
            return Some(Err(FramingError::TooLarge { length }));
        }
        if self.buf.len() < HEADER + length {
            return None;
        }
        let rendition = self.buf[1];
        self.buf.advance(HEADER);
        let payload = self.buf.split_to(length).freeze();
        Some(Ok(Record { kind, rendition, payload }))
    }

    /// Checks that the stream ended on a record boundary.
    pub fn finish(&self) -> Result<(), FramingError> {
        if self.buf.is_empty() { Ok(()) } else { Err(FramingError::Truncated { buffered: self.buf.len() }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_any_pieces() {
        let mut out = BytesMut::new();
        encode(Kind::Start, SEGMENT, br#"{"renditions":["a"]}"#, &mut out);
        for i in 0..5u8 {
            encode(Kind::Chunk, i % 2, &vec![i; 188 * usize::from(i)], &mut out);
        }
        encode(Kind::Done, 0, b"{}", &mut out);
        encode(Kind::End, SEGMENT, br#"{"status":"ok"}"#, &mut out);
        for piece in [1usize, 5, 6, 7, 200, 10_000] {
            let mut r = RecordReader::new();
            let mut got = Vec::new();
            for p in out.chunks(piece) {
                r.push(p);
                while let Some(rec) = r.poll() {
                    got.push(rec.expect("valid"));
                }
            }
            r.finish().expect("boundary");
            assert_eq!(got.len(), 8);
            assert_eq!(got[3].kind, Kind::Chunk);
            assert_eq!(got[3].payload.len(), 188 * 2);
            assert_eq!(got[7].kind, Kind::End);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut r = RecordReader::new();
        r.push(b"XYZ123456");
        assert_eq!(r.poll(), Some(Err(FramingError::UnknownKind(b'X'))));
        assert_eq!(r.poll(), None);
        let mut r = RecordReader::new();
        r.push(&[b'C', 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(r.poll(), Some(Err(FramingError::TooLarge { .. }))));
        let mut r = RecordReader::new();
        r.push(&[b'C', 0, 0, 0, 0, 9, 1, 2]);
        assert_eq!(r.poll(), None);
        assert!(r.finish().is_err());
    }
}
