//! The transcoder link's messages, sans-IO: JSON lines both ways on one HTTP/2 stream
//! (`POST /v1/transcoders/link`), and the capabilities header. Parsing never panics on any
//! bytes (fuzzed: `fuzz/fuzz_targets/link_message.rs`); a line that is not a known message is
//! `None` and is skipped, so either side may add message kinds later.
#![forbid(unsafe_code)]

use bytes::Bytes;
use serde_json::json;
use zerohop_engine::{Clip, Ladder};

use crate::relay::DeviceCaps;
use crate::scheduler::Capabilities;

/// Orchestrator -> transcoder.
#[derive(Debug, Clone, PartialEq)]
pub enum ToTranscoder {
    /// Run segment `seq` of `stream` as task `task`, with this ladder.
    Task { task: u64, stream: String, seq: String, ladder: Ladder, clip: Option<Clip> },
    /// The broadcaster ended `stream`: free its sessions.
    EndStream { stream: String },
    /// The last line of a link that a new link with the same transcoder id replaced: the
    /// addresses the orchestrator saw this link (`old`) and the new one (`new`) come from.
    Replaced { old: String, new: String },
}

/// Transcoder -> orchestrator: a live load report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub capacity: u32,
    pub load: u32,
}

/// Longest line either side accepts; a peer sending more without a newline is broken.
pub const MAX_LINE: usize = 64 * 1024;

/// The link protocol this build speaks. Version 1 is the protocol before versioning (no
/// header); 2 adds the version header. An orchestrator accepts the previous and the next
/// version, so a fleet is upgraded one box at a time, orchestrators or transcoders first.
pub const VERSION: u32 = 2;

/// Whether an orchestrator speaking [`VERSION`] takes a transcoder speaking `theirs` (the
/// header's value; `None` when absent, which is version 1); `Err` names both versions.
pub fn accept_version(theirs: Option<&[u8]>) -> Result<u32, String> {
    let v = match theirs {
        None => 1,
        Some(raw) => std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .ok_or_else(|| format!("link version {:?} is not a number", String::from_utf8_lossy(raw)))?,
    };
    if v + 1 >= VERSION && v <= VERSION + 1 {
        Ok(v)
    } else {
        Err(format!(
            "this transcoder speaks link protocol version {v}; this orchestrator speaks version {VERSION} and \
             takes {} to {}: upgrade one side (a fleet upgrades one box at a time within one version)",
            VERSION - 1,
            VERSION + 1
        ))
    }
}

fn line(v: serde_json::Value) -> Bytes {
    Bytes::from(v.to_string() + "\n")
}

impl ToTranscoder {
    pub fn encode(&self) -> Bytes {
        match self {
            ToTranscoder::Task { task, stream, seq, ladder, clip } => {
                let mut v = json!({"task": task, "stream": stream, "seq": seq, "profiles": ladder.to_json()});
                if let Some(c) = clip {
                    let ms = |d: std::time::Duration| d.as_millis() as u64;
                    v["clip"] = json!({"from_ms": ms(c.from), "to_ms": c.to.map(ms)});
                }
                line(v)
            }
            ToTranscoder::EndStream { stream } => line(json!({"end_stream": stream})),
            ToTranscoder::Replaced { old, new } => line(json!({"replaced": {"old": old, "new": new}})),
        }
    }

    /// One line (with or without its newline); `None` for anything else.
    pub fn parse(line: &[u8]) -> Option<ToTranscoder> {
        let v: serde_json::Value = serde_json::from_slice(line).ok()?;
        if let Some(stream) = v.get("end_stream").and_then(|s| s.as_str()) {
            return Some(ToTranscoder::EndStream { stream: stream.to_string() });
        }
        if let Some(r) = v.get("replaced") {
            let addr = |k: &str| r.get(k).and_then(|a| a.as_str()).map(str::to_string);
            return Some(ToTranscoder::Replaced { old: addr("old")?, new: addr("new")? });
        }
        let task = v.get("task")?.as_u64()?;
        let stream = v.get("stream")?.as_str()?.to_string();
        let seq = v.get("seq").and_then(|s| s.as_str()).unwrap_or("").to_string();
        let ladder = Ladder::from_json(v.get("profiles")?.as_str()?).ok()?;
        let clip = match v.get("clip") {
            None => None,
            Some(c) => {
                let ms = |k: &str| c.get(k).and_then(|m| m.as_u64()).map(std::time::Duration::from_millis);
                Some(Clip { from: ms("from_ms").unwrap_or_default(), to: ms("to_ms") })
            }
        };
        Some(ToTranscoder::Task { task, stream, seq, ladder, clip })
    }
}

impl Report {
    pub fn encode(&self, backend: &str) -> Bytes {
        line(json!({"capacity": self.capacity, "load": self.load, "backend": backend}))
    }

    /// A report line; a missing capacity keeps `default_capacity`.
    pub fn parse(line: &[u8], default_capacity: u32) -> Option<Report> {
        let v: serde_json::Value = serde_json::from_slice(line).ok()?;
        let capacity = v.get("capacity").and_then(|c| c.as_u64()).map_or(default_capacity, |c| c.min(1 << 16) as u32);
        let load = v.get("load").and_then(|c| c.as_u64()).map_or(0, |l| l.min(1 << 16) as u32);
        Some(Report { capacity, load })
    }
}

/// The `zerohop-capabilities` link header.
pub fn encode_capabilities(backend: &str, gpus: &[DeviceCaps], (max_width, max_height): (u32, u32)) -> String {
    json!({"backend": backend, "encode": ["h264"], "max_width": max_width, "max_height": max_height, "gpus": gpus})
        .to_string()
}

/// The backend and accelerators a capabilities header states, for operators; unreadable parts
/// are left empty (they decide nothing).
pub fn parse_backend(header: &[u8]) -> (String, Vec<DeviceCaps>) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(header) else { return Default::default() };
    let backend = v.get("backend").and_then(|b| b.as_str()).unwrap_or_default();
    let gpus = v.get("gpus").and_then(|g| serde_json::from_value(g.clone()).ok()).unwrap_or_default();
    (backend.chars().take(200).collect(), gpus)
}

/// Parses the capabilities header; anything unreadable means "no stated limits".
pub fn parse_capabilities(header: &[u8]) -> Capabilities {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(header) else { return Capabilities::default() };
    let dim = |k: &str| v.get(k).and_then(|d| d.as_u64()).map_or(0, |d| d.min(u64::from(u32::MAX)) as u32);
    Capabilities {
        max_width: dim("max_width"),
        max_height: dim("max_height"),
        no_h264: v.get("encode").and_then(|e| e.as_array()).is_some_and(|a| !a.iter().any(|c| c == "h264")),
    }
}

/// Splits complete lines off a buffer of received bytes. `Err` when a line exceeds [`MAX_LINE`].
#[derive(Debug, Default)]
pub struct LineReader {
    buf: Vec<u8>,
}

impl LineReader {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    pub fn poll(&mut self) -> Option<Result<Vec<u8>, ()>> {
        match self.buf.iter().position(|&b| b == b'\n') {
            Some(nl) => {
                let rest = self.buf.split_off(nl + 1);
                Some(Ok(std::mem::replace(&mut self.buf, rest)))
            }
            None if self.buf.len() > MAX_LINE => Some(Err(())),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_unknown_lines_are_skipped() {
        let ladder: Ladder = "P360p30fps16x9,P240p30fps16x9".parse().expect("ladder");
        let t =
            ToTranscoder::Task { task: 7, stream: "live".into(), seq: "3".into(), ladder: ladder.clone(), clip: None };
        assert_eq!(ToTranscoder::parse(&t.encode()), Some(t));
        for to in [None, Some(std::time::Duration::from_millis(1500))] {
            let clip = Some(Clip { from: std::time::Duration::from_millis(250), to });
            let t =
                ToTranscoder::Task { task: 8, stream: "live".into(), seq: "4".into(), ladder: ladder.clone(), clip };
            assert_eq!(ToTranscoder::parse(&t.encode()), Some(t));
        }
        let e = ToTranscoder::EndStream { stream: "live".into() };
        assert_eq!(ToTranscoder::parse(&e.encode()), Some(e));
        let r = ToTranscoder::Replaced { old: "10.0.0.1:40000".into(), new: "10.0.0.2:40001".into() };
        assert_eq!(ToTranscoder::parse(&r.encode()), Some(r));
        for junk in [
            &b"{}"[..],
            b"[1,2]",
            b"{\"task\":1}",
            b"{\"replaced\":{\"old\":\"a\"}}",
            b"{\"task\":-1,\"stream\":\"a\",\"profiles\":\"[]\"}",
            b"\xff",
        ] {
            assert_eq!(ToTranscoder::parse(junk), None, "{junk:?}");
        }
        let r = Report { capacity: 4, load: 2 };
        assert_eq!(Report::parse(&r.encode("cpu"), 1), Some(r));
        assert_eq!(Report::parse(b"{\"load\":1}", 3), Some(Report { capacity: 3, load: 1 }));
        assert_eq!(Report::parse(b"{\"capacity\":99999999999}", 1).map(|r| r.capacity), Some(1 << 16));
    }

    #[test]
    fn capabilities_round_trip() {
        let c = parse_capabilities(encode_capabilities("cpu", &[], (4096, 2304)).as_bytes());
        assert_eq!(c, Capabilities { max_width: 4096, max_height: 2304, no_h264: false });
        let h100 = DeviceCaps::gpu("cuda:0", "NVIDIA H100 80GB HBM3", false);
        let header = encode_capabilities("cuda:0", std::slice::from_ref(&h100), (4096, 4096));
        assert_eq!(parse_backend(header.as_bytes()), ("cuda:0".to_string(), vec![h100]));
        assert_eq!(parse_backend(b"{\"gpus\": 3}"), (String::new(), vec![]));
        assert!(parse_capabilities(b"{\"encode\":[\"av1\"]}").no_h264);
        assert_eq!(parse_capabilities(b"nonsense"), Capabilities::default());
    }

    #[test]
    fn lines_split_in_any_pieces_and_overlong_lines_are_refused() {
        let mut r = LineReader::default();
        r.push(b"{\"a\":1}\n{\"b\"");
        assert_eq!(r.poll(), Some(Ok(b"{\"a\":1}\n".to_vec())));
        assert_eq!(r.poll(), None);
        r.push(b":2}\n");
        assert_eq!(r.poll(), Some(Ok(b"{\"b\":2}\n".to_vec())));
        r.push(&vec![b'x'; MAX_LINE + 1]);
        assert_eq!(r.poll(), Some(Err(())));
    }
}
