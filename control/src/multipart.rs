//! A segment's renditions as `multipart/mixed` (what Livepeer's push API answers with
//! `Accept: multipart/mixed`), made from the result-stream records as they arrive.
//!
//! Sans-IO: [`MultipartWriter::push`] takes one record and returns the bytes to send. One part
//! per rendition, in ladder order; the part that is open streams its chunks as they are
//! encoded, the renditions behind it are held until it ends and then sent at once (with their
//! `Content-Length`, known by then when they are complete). Parts cannot interleave in
//! multipart, and the ladder's first rendition (the largest) is the slowest to encode, so the
//! others are usually complete when their turn comes: the answer ends about when the slowest
//! rendition does, as the record stream does.
//!
//! ```text
//! --{boundary}\r\n
//! Content-Type: video/MP2T; name="{rendition}_{seq}.ts"\r\n
//! Content-Disposition: attachment; filename="{rendition}_{seq}.ts"\r\n
//! Rendition-Name: {rendition}\r\n
//! Content-Length: {bytes}\r\n          (when the rendition is complete as its part starts)
//! \r\n
//! {TS bytes}\r\n
//! --{boundary}--\r\n
//! ```
#![forbid(unsafe_code)]

use bytes::{Bytes, BytesMut};

use crate::framing::{Kind, Record, SEGMENT};

/// The media type a client asks for with `Accept`.
pub const MULTIPART_MIXED: &str = "multipart/mixed";

/// Why the multipart answer cannot be completed (the segment failed after it started): the
/// stable code and message of the first error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct PartError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Default)]
struct Held {
    chunks: Vec<Bytes>,
    bytes: usize,
    done: bool,
}

/// Turns one segment's records into its multipart body.
#[derive(Debug)]
pub struct MultipartWriter {
    boundary: String,
    seq: String,
    names: Vec<String>,
    held: Vec<Held>,
    /// The rendition whose part is open and streaming.
    open: Option<usize>,
    /// The next rendition to get a part.
    next: usize,
    finished: bool,
}

impl MultipartWriter {
    /// A writer for the renditions `names` of segment `seq`, separated by `boundary`.
    pub fn new(boundary: String, seq: &str, names: Vec<String>) -> MultipartWriter {
        let held = names.iter().map(|_| Held::default()).collect();
        MultipartWriter { boundary, seq: seq.to_string(), names, held, open: None, next: 0, finished: false }
    }

    /// A boundary that will not occur in the parts: 128 bits from the clock, a counter and
    /// `salt`, through SHA-256.
    pub fn fresh_boundary(salt: &str) -> String {
        use sha2::Digest;
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let mut h = sha2::Sha256::new();
        h.update(nanos.to_le_bytes());
        h.update(N.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        h.update(salt.as_bytes());
        format!("zerohop-{}", &hex::encode(h.finalize())[..32])
    }

    /// The response's `Content-Type`.
    pub fn content_type(&self) -> String {
        format!("{MULTIPART_MIXED}; boundary={}", self.boundary)
    }

    /// The file name of rendition `i`'s part: `{rendition}_{seq}.ts`, with characters that
    /// would break a quoted header parameter replaced by `_`.
    pub fn file_name(&self, i: usize) -> String {
        let safe = |s: &str| -> String {
            s.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' { c } else { '_' }).collect()
        };
        format!("{}_{}.ts", safe(&self.names[i]), safe(&self.seq))
    }

    /// Takes one record; returns the bytes to send now (possibly none). An error record, or an
    /// end that says the segment failed, is the error: the answer must be cut off, not ended.
    pub fn push(&mut self, r: &Record) -> Result<Vec<Bytes>, PartError> {
        let i = usize::from(r.rendition);
        let mut out = Vec::new();
        match r.kind {
            Kind::Start => {}
            Kind::Chunk if i < self.held.len() => {
                if self.open == Some(i) {
                    out.push(r.payload.clone());
                } else {
                    self.held[i].bytes += r.payload.len();
                    self.held[i].chunks.push(r.payload.clone());
                }
            }
            Kind::Done if i < self.held.len() => {
                self.held[i].done = true;
                if self.open == Some(i) {
                    self.open = None;
                }
            }
            Kind::Error => {
                let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap_or_default();
                let field = |k: &str| v[k].as_str().unwrap_or("error").to_string();
                return Err(PartError { code: field("code"), message: field("message") });
            }
            Kind::End => {
                let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap_or_default();
                if v["status"] != "ok" || r.rendition != SEGMENT {
                    return Err(PartError { code: "error".into(), message: "the segment failed".into() });
                }
                self.advance(&mut out);
                if self.open.is_some() || self.next < self.names.len() {
                    return Err(PartError {
                        code: "error".into(),
                        message: "the segment ended before every rendition did".into(),
                    });
                }
                out.push(Bytes::from(format!("\r\n--{}--\r\n", self.boundary)));
                self.finished = true;
                return Ok(out);
            }
            _ => {
                return Err(PartError {
                    code: "broken_results".into(),
                    message: format!("a record for rendition {i}, which the ladder does not have"),
                });
            }
        }
        self.advance(&mut out);
        Ok(out)
    }

    /// Whether the closing boundary was written.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Opens the next parts while none is open: a complete rendition's part is written whole
    /// and the next one opened; an incomplete one stays open and streams.
    fn advance(&mut self, out: &mut Vec<Bytes>) {
        while self.open.is_none() && self.next < self.names.len() {
            let i = self.next;
            self.next += 1;
            let held = std::mem::take(&mut self.held[i]);
            out.push(self.part_head(i, held.done.then_some(held.bytes)));
            out.extend(held.chunks);
            if !held.done {
                self.open = Some(i);
            }
        }
    }

    fn part_head(&self, i: usize, length: Option<usize>) -> Bytes {
        let mut h = BytesMut::new();
        if i > 0 {
            h.extend_from_slice(b"\r\n");
        }
        let file = self.file_name(i);
        h.extend_from_slice(format!("--{}\r\n", self.boundary).as_bytes());
        h.extend_from_slice(format!("Content-Type: video/MP2T; name=\"{file}\"\r\n").as_bytes());
        h.extend_from_slice(format!("Content-Disposition: attachment; filename=\"{file}\"\r\n").as_bytes());
        h.extend_from_slice(format!("Rendition-Name: {}\r\n", self.names[i]).as_bytes());
        if let Some(n) = length {
            h.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
        }
        h.extend_from_slice(b"\r\n");
        h.freeze()
    }
}

/// Whether an `Accept` header asks for `multipart/mixed`.
pub fn accepts_multipart(accept: Option<&http::HeaderValue>) -> bool {
    accept.and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').any(|t| t.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case(MULTIPART_MIXED)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: Kind, rendition: u8, payload: &[u8]) -> Record {
        Record { kind, rendition, payload: Bytes::copy_from_slice(payload) }
    }

    fn run(w: &mut MultipartWriter, records: &[Record]) -> Result<Vec<u8>, PartError> {
        let mut body = Vec::new();
        for r in records {
            for b in w.push(r)? {
                body.extend_from_slice(&b);
            }
        }
        Ok(body)
    }

    #[test]
    fn the_first_part_streams_and_the_others_follow_whole_with_their_length() {
        let mut w = MultipartWriter::new("B".into(), "7", vec!["hi".into(), "lo".into()]);
        let first = w.push(&rec(Kind::Chunk, 0, b"aa")).expect("chunk");
        assert_eq!(first.len(), 2, "head of part 0, then its bytes at once");
        assert!(w.push(&rec(Kind::Chunk, 1, b"x")).expect("held").is_empty(), "part 1 waits");
        let rest = run(
            &mut w,
            &[
                rec(Kind::Done, 1, b"{}"),
                rec(Kind::Chunk, 0, b"bb"),
                rec(Kind::Done, 0, b"{}"),
                rec(Kind::End, SEGMENT, br#"{"status":"ok"}"#),
            ],
        )
        .expect("ok");
        let mut body: Vec<u8> = first.concat();
        body.extend_from_slice(&rest);
        let want = "--B\r\nContent-Type: video/MP2T; name=\"hi_7.ts\"\r\n\
            Content-Disposition: attachment; filename=\"hi_7.ts\"\r\nRendition-Name: hi\r\n\r\naabb\
            \r\n--B\r\nContent-Type: video/MP2T; name=\"lo_7.ts\"\r\n\
            Content-Disposition: attachment; filename=\"lo_7.ts\"\r\nRendition-Name: lo\r\nContent-Length: 1\r\n\r\nx\
            \r\n--B--\r\n";
        assert_eq!(String::from_utf8_lossy(&body), want);
        assert!(w.finished());
    }

    #[test]
    fn an_error_or_a_failed_end_cuts_the_answer_off() {
        let mut w = MultipartWriter::new("B".into(), "1", vec!["a".into()]);
        w.push(&rec(Kind::Chunk, 0, b"aa")).expect("chunk");
        let e = w.push(&rec(Kind::Error, 0, br#"{"code":"transcoder_lost","message":"gone"}"#)).expect_err("error");
        assert_eq!(e.code, "transcoder_lost");
        let mut w = MultipartWriter::new("B".into(), "1", vec!["a".into()]);
        assert!(w.push(&rec(Kind::End, SEGMENT, br#"{"status":"error"}"#)).is_err());
        let mut w = MultipartWriter::new("B".into(), "1", vec!["a".into()]);
        assert!(w.push(&rec(Kind::End, SEGMENT, br#"{"status":"ok"}"#)).is_err(), "rendition a never ended");
        assert!(w.push(&rec(Kind::Chunk, 3, b"x")).is_err(), "no rendition 3");
    }

    #[test]
    fn accept_lists_are_read_by_media_type() {
        let h = |s: &'static str| http::HeaderValue::from_static(s);
        assert!(accepts_multipart(Some(&h("multipart/mixed"))));
        assert!(accepts_multipart(Some(&h("text/plain, Multipart/Mixed; q=0.5"))));
        assert!(!accepts_multipart(Some(&h("*/*"))));
        assert!(!accepts_multipart(None));
    }

    #[test]
    fn names_in_quoted_parameters_cannot_break_out() {
        let w = MultipartWriter::new("B".into(), "1", vec!["a\"b c".into()]);
        assert_eq!(w.file_name(0), "a_b_c_1.ts");
        assert_ne!(MultipartWriter::fresh_boundary("s"), MultipartWriter::fresh_boundary("s"));
    }
}
