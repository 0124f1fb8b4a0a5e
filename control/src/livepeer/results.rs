//! A task's results on Livepeer's wire (`POST /transcodeResults`), sans-IO: the
//! `multipart/mixed` body a transcoder sends, and the parser an orchestrator reads it with.
//!
//! ```text
//! --{boundary}\r\n
//! Content-Type: video/mp2t\r\n
//! Content-Length: {bytes}\r\n
//! Pixels: {encoded pixels}\r\n          (go-livepeer drops a part without it, silently)
//! \r\n
//! {TS bytes}\r\n
//! --{boundary}--\r\n
//! ```
//! An error instead: `Content-Type: livepeer/transcoding-error`, the body its text.
#![forbid(unsafe_code)]

use bytes::{Buf, Bytes, BytesMut};

/// `Content-Type` of a transcoder's error (not `application/...`: go-livepeer's own value).
pub const ERROR_CONTENT_TYPE: &str = "livepeer/transcoding-error";
/// `Content-Type` of an MPEG-TS rendition part (go-livepeer `common.ProfileFormatMimeType`).
pub const TS_CONTENT_TYPE: &str = "video/mp2t";

/// Largest part accepted (go-livepeer's `common.MaxSegSize`, 48 MiB).
pub const MAX_PART: usize = 48 << 20;
/// Largest header block of a part.
const MAX_PART_HEADERS: usize = 16 << 10;

/// One rendition: its bytes and encoded pixels (frames x width x height).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendition {
    pub data: Bytes,
    pub pixels: i64,
}

/// The multipart body for `renditions`, in ladder order.
pub fn encode(boundary: &str, renditions: &[Rendition]) -> Bytes {
    let mut out = BytesMut::new();
    for r in renditions {
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: {TS_CONTENT_TYPE}\r\nContent-Length: {}\r\nPixels: {}\r\n\r\n",
                r.data.len(),
                r.pixels
            )
            .as_bytes(),
        );
        out.extend_from_slice(&r.data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out.freeze()
}

/// The boundary of a `multipart/mixed` content type (quoted or not).
pub fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        let v = v.trim().trim_matches('"');
        (k.trim().eq_ignore_ascii_case("boundary") && !v.is_empty() && v.len() <= 70).then(|| v.to_string())
    })
}

/// A part as go-livepeer reads it: a rendition (it has `Pixels`), or another part (a
/// perceptual hash, `application/octet-stream`), which zerohop ignores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Rendition(Rendition),
    Other { content_type: String, len: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartsError {
    #[error("the results do not start with the boundary")]
    NoBoundary,
    #[error("a part's headers are malformed: {0}")]
    BadHeaders(String),
    #[error("a part's Pixels is not a number: {0:?}")]
    BadPixels(String),
    #[error("a part is over {MAX_PART} bytes")]
    TooLarge,
    #[error("the results end before their closing boundary")]
    Truncated,
}

#[derive(Debug)]
enum State {
    /// Before the first boundary line.
    Preamble,
    Headers,
    Body {
        pixels: Option<i64>,
        content_type: String,
    },
    Done,
}

/// Reads a multipart body pushed in any pieces; hands out whole parts.
#[derive(Debug)]
pub struct PartsReader {
    /// `\r\n--{boundary}`: what ends a part's body.
    delimiter: Vec<u8>,
    buf: BytesMut,
    state: State,
}

impl PartsReader {
    pub fn new(boundary: &str) -> PartsReader {
        PartsReader {
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            buf: BytesMut::new(),
            state: State::Preamble,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole part, if here.
    pub fn poll(&mut self) -> Option<Result<Part, PartsError>> {
        loop {
            match &self.state {
                State::Done => return None,
                State::Preamble => {
                    // The first boundary may open the body with no CRLF before it.
                    let first = &self.delimiter[2..];
                    let at = find(&self.buf, first)?;
                    let line_end = find(&self.buf[at..], b"\r\n")? + at;
                    let rest = &self.buf[at + first.len()..line_end];
                    if rest.starts_with(b"--") {
                        self.state = State::Done;
                        return None;
                    }
                    self.buf.advance(line_end + 2);
                    self.state = State::Headers;
                }
                State::Headers => {
                    let Some(end) = find(&self.buf, b"\r\n\r\n") else {
                        if self.buf.len() > MAX_PART_HEADERS {
                            return Some(Err(self.fail(PartsError::BadHeaders("over 16 KiB".into()))));
                        }
                        return None;
                    };
                    let head = self.buf.split_to(end + 4);
                    let mut pixels = None;
                    let mut content_type = String::new();
                    for line in head[..end].split(|&b| b == b'\n') {
                        let line = std::str::from_utf8(line).map_err(|e| PartsError::BadHeaders(e.to_string()));
                        let line = match line {
                            Ok(l) => l.trim_end_matches('\r'),
                            Err(e) => return Some(Err(self.fail(e))),
                        };
                        if line.is_empty() {
                            continue;
                        }
                        let Some((k, v)) = line.split_once(':') else {
                            return Some(Err(self.fail(PartsError::BadHeaders(line.into()))));
                        };
                        let v = v.trim();
                        if k.trim().eq_ignore_ascii_case("pixels") {
                            match v.parse() {
                                Ok(p) => pixels = Some(p),
                                Err(_) => return Some(Err(self.fail(PartsError::BadPixels(v.into())))),
                            }
                        } else if k.trim().eq_ignore_ascii_case("content-type") {
                            content_type = v.to_string();
                        }
                    }
                    self.state = State::Body { pixels, content_type };
                }
                State::Body { .. } => {
                    let Some(at) = find(&self.buf, &self.delimiter) else {
                        if self.buf.len() > MAX_PART + self.delimiter.len() {
                            return Some(Err(self.fail(PartsError::TooLarge)));
                        }
                        return None;
                    };
                    // The rest of the delimiter line: `--` closes, else CRLF (transport padding
                    // allowed before it).
                    let after = at + self.delimiter.len();
                    let line_end = find(&self.buf[after..], b"\r\n").map(|e| e + after);
                    let closing = self.buf[after..].starts_with(b"--");
                    if !closing && line_end.is_none() {
                        return None;
                    }
                    let State::Body { pixels, content_type } = std::mem::replace(&mut self.state, State::Headers)
                    else {
                        unreachable!()
                    };
                    let data = self.buf.split_to(at).freeze();
                    if closing {
                        self.state = State::Done;
                        self.buf.clear();
                    } else {
                        self.buf.advance(line_end.expect("checked") - at + 2);
                    }
                    return Some(Ok(match pixels {
                        Some(pixels) => Part::Rendition(Rendition { data, pixels }),
                        None => Part::Other { content_type, len: data.len() },
                    }));
                }
            }
        }
    }

    /// The body ended: an error unless the closing boundary was read.
    pub fn finish(&self) -> Result<(), PartsError> {
        match self.state {
            State::Done => Ok(()),
            State::Preamble => Err(PartsError::NoBoundary),
            _ => Err(PartsError::Truncated),
        }
    }

    fn fail(&mut self, e: PartsError) -> PartsError {
        self.state = State::Done;
        e
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(body: &[u8], boundary: &str, cut: usize) -> (Vec<Part>, Result<(), PartsError>) {
        let mut r = PartsReader::new(boundary);
        let mut out = vec![];
        for piece in [&body[..cut], &body[cut..]] {
            r.push(piece);
            while let Some(p) = r.poll() {
                match p {
                    Ok(p) => out.push(p),
                    Err(e) => return (out, Err(e)),
                }
            }
        }
        (out, r.finish())
    }

    #[test]
    fn what_the_transcoder_writes_the_orchestrator_reads_back_cut_anywhere() {
        let rs = vec![
            Rendition { data: Bytes::from(vec![0x47; 376]), pixels: 426 * 240 * 60 },
            Rendition { data: Bytes::from_static(b"\r\n--not-it\r\n"), pixels: 7 },
            Rendition { data: Bytes::new(), pixels: 0 },
        ];
        let body = encode("b0und", &rs);
        for cut in 0..body.len() {
            let (got, end) = parts(&body, "b0und", cut);
            end.expect("holds in this test");
            let want: Vec<Part> = rs.iter().cloned().map(Part::Rendition).collect();
            assert_eq!(got, want, "cut at {cut}");
        }
    }

    #[test]
    fn a_part_without_pixels_is_not_a_rendition_as_in_go_livepeer() {
        // Go's mime/multipart as go-livepeer's transcoder writes it (headers in its order),
        // plus a part without Pixels (a perceptual hash).
        let body = b"--x\r\nContent-Length: 3\r\nContent-Type: video/mp2t\r\nPixels: 12\r\n\r\nabc\r\n\
                     --x\r\nContent-Type: application/octet-stream\r\n\r\nhash\r\n--x--\r\n";
        let (got, end) = parts(body, "x", 0);
        end.expect("holds in this test");
        assert_eq!(got[0], Part::Rendition(Rendition { data: Bytes::from_static(b"abc"), pixels: 12 }));
        assert_eq!(got[1], Part::Other { content_type: "application/octet-stream".into(), len: 4 });
    }

    #[test]
    fn broken_bodies_are_errors() {
        assert_eq!(parts(b"--x\r\nPixels: 1\r\n\r\nab", "x", 0).1, Err(PartsError::Truncated));
        assert_eq!(parts(b"nothing", "x", 0).1, Err(PartsError::NoBoundary));
        assert_eq!(
            parts(b"--x\r\nPixels: lots\r\n\r\nab\r\n--x--", "x", 0).1,
            Err(PartsError::BadPixels("lots".into()))
        );
        assert_eq!(parts(b"--x\r\nno colon\r\n\r\n", "x", 0).1, Err(PartsError::BadHeaders("no colon".into())));
    }

    #[test]
    fn boundaries_are_read_from_the_content_type() {
        assert_eq!(boundary("multipart/mixed; boundary=abc").as_deref(), Some("abc"));
        assert_eq!(boundary("Multipart/Mixed; charset=x; boundary=\"a b\"").as_deref(), Some("a b"));
        assert_eq!(boundary("multipart/form-data; boundary=abc"), None);
        assert_eq!(boundary("multipart/mixed"), None);
    }
}
