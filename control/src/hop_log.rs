//! Hop events, for seeing where a segment's time goes across processes (`benches/hop.py`): with
//! `ZEROHOP_HOP_LOG=<file>` in its environment, a process appends one JSON line per event,
//! `{"t": <unix seconds>, "role": .., "stream": .., "seq": .., "event": ..}`: when the
//! broadcaster's upload began and ended (at the push client and at the node), when the input
//! left the orchestrator for a transcoder and arrived there, when results left the transcoder
//! and arrived back, when the answer's last byte went to the broadcaster. Processes on one host
//! (or in network namespaces of one host) share the clock, so their lines merge into one
//! timeline. Without the variable nothing is written and an event costs a branch.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

static LOG: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();
static ROLE: OnceLock<&'static str> = OnceLock::new();

/// What this process is in the hop ("push", "orchestrator", "combined", "transcoder"); the
/// first call wins (the binary's, at start-up).
pub fn set_role(role: &'static str) {
    ROLE.set(role).ok();
}

fn log() -> Option<&'static Mutex<std::fs::File>> {
    LOG.get_or_init(|| {
        let path = std::env::var_os("ZEROHOP_HOP_LOG")?;
        match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => Some(Mutex::new(f)),
            Err(e) => {
                tracing::warn!(path = %std::path::Path::new(&path).display(), "ZEROHOP_HOP_LOG cannot be written: {e}");
                None
            }
        }
    })
    .as_ref()
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// One line: `event` of segment `seq` of `stream` (a number where `seq` is one) at unix time `t`.
fn write(file: &mut std::fs::File, t: f64, stream: &str, seq: &str, event: &str) {
    let seq = seq.parse::<u64>().map_or_else(|_| serde_json::json!(seq), |n| serde_json::json!(n));
    let role = ROLE.get().copied().unwrap_or("zerohop");
    let line = serde_json::json!({"t": t, "role": role, "stream": stream, "seq": seq, "event": event});
    // A lost line is a gap in a benchmark's timeline, never a failed segment.
    let _ = writeln!(file, "{line}");
}

/// Appends `event` of segment `seq` of `stream`, now.
pub fn event(stream: &str, seq: &str, event: &str) {
    let Some(log) = log() else { return };
    write(&mut log.lock(), unix_now(), stream, seq, event);
}

/// Marks the first and the last of a run of events (`<what>_first`, `<what>_last`).
#[derive(Debug)]
pub struct Span {
    stream: String,
    seq: String,
    what: &'static str,
    seen: bool,
}

impl Span {
    pub fn new(stream: &str, seq: &str, what: &'static str) -> Span {
        Span { stream: stream.into(), seq: seq.into(), what, seen: false }
    }
    /// One more: the first is logged.
    pub fn saw(&mut self) {
        if !self.seen {
            self.seen = true;
            if log().is_some() {
                event(&self.stream, &self.seq, &format!("{}_first", self.what));
            }
        }
    }
    /// The run is over: its last is logged.
    pub fn last(&self) {
        if log().is_some() {
            event(&self.stream, &self.seq, &format!("{}_last", self.what));
        }
    }
}

/// A timeline for the engine's part of a segment, when hop events are being written (the
/// engine's own stages then join the hop's timeline: [`engine_events`]).
pub fn engine_timeline() -> Option<zerohop_engine::Timeline> {
    log().map(|_| zerohop_engine::Timeline::new())
}

/// The engine's stages of a segment as hop events, at the times they happened:
/// `engine_input_last` (the last input bytes handed to the engine), `engine_decoded_last`,
/// `engine_chunk_first`, `engine_chunk_last` (rendition bytes out of the engine).
pub fn engine_events(stream: &str, seq: &str, t: &zerohop_engine::Timeline) {
    use zerohop_engine::Stage;
    let Some(log) = log() else { return };
    let origin = unix_now() - t.origin().elapsed().as_secs_f64();
    let marks = [
        ("engine_input_last", t.last(Stage::Input)),
        ("engine_decoded_last", t.last(Stage::Decoded)),
        ("engine_chunk_first", t.first(Stage::Chunk)),
        ("engine_chunk_last", t.last(Stage::Chunk)),
    ];
    let mut f = log.lock();
    for (event, at) in marks {
        if let Some(at) = at {
            write(&mut f, origin + at.as_secs_f64(), stream, seq, event);
        }
    }
}
