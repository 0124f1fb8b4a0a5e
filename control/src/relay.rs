//! What moves a segment between the HTTP side and the engine, in every mode: a replayable upload
//! buffer ([`InputBuf`]), the result items ([`Out`]) and the engine job ([`run_local`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use serde_json::json;
use tokio::sync::{Notify, mpsc};
use zerohop_engine::{
    Ladder, RenditionSink, RenditionStats, SegmentOptions, SegmentReport, Session, SessionConfig, StreamSession,
    TranscodeError,
};

use crate::framing::{self, Kind, SEGMENT};

/// Largest accepted segment by default.
pub const DEFAULT_MAX_SEGMENT: u64 = 64 << 20;

#[derive(Debug, Default)]
struct InputState {
    chunks: Vec<Bytes>,
    /// `Some(Ok)`: complete; `Some(Err)`: the upload broke off.
    end: Option<Result<(), Abort>>,
}

/// Why an upload ended before its end: a stable code (`too_large`, `upload_stalled`,
/// `upload_failed`, `upload_dropped`, `input_broken`) and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abort {
    pub code: &'static str,
    pub message: String,
}

impl Abort {
    pub fn new(code: &'static str, message: impl Into<String>) -> Abort {
        Abort { code, message: message.into() }
    }
}

/// Why a segment failed: the engine said so, or its upload broke off.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    Engine(TranscodeError),
    Upload(Abort),
}

impl Failure {
    pub fn code(&self) -> &str {
        match self {
            Failure::Engine(e) => e.code(),
            Failure::Upload(a) => a.code,
        }
    }
    pub fn message(&self) -> String {
        match self {
            Failure::Engine(e) => e.to_string(),
            Failure::Upload(a) => a.message.clone(),
        }
    }
}

impl From<TranscodeError> for Failure {
    fn from(e: TranscodeError) -> Failure {
        Failure::Engine(e)
    }
}

/// A segment's upload as it arrives, readable from the start by any number of readers, any
/// number of times: the local engine, a remote transcoder, and a retry after that one failed.
/// Bounded by the node's segment size limit.
#[derive(Debug, Default)]
pub struct InputBuf {
    state: Mutex<InputState>,
    cond: Condvar,
    notify: Notify,
}

/// One step of reading an [`InputBuf`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputItem {
    Data(Bytes),
    End,
    Aborted(Abort),
}

impl InputBuf {
    pub fn new() -> Arc<InputBuf> {
        Arc::new(InputBuf::default())
    }

    /// The one writer of this buffer. Dropping it without [`InputWriter::end`] (its task was
    /// cancelled, the runtime shut down) ends the upload as broken, so no reader waits forever.
    pub fn writer(self: &Arc<Self>) -> InputWriter {
        InputWriter(self.clone())
    }

    pub fn push(&self, data: Bytes) {
        self.state.lock().chunks.push(data);
        self.wake();
    }

    /// Ends the upload; the first end wins.
    pub fn end(&self, result: Result<(), Abort>) {
        self.state.lock().end.get_or_insert(result);
        self.wake();
    }

    fn wake(&self) {
        self.cond.notify_all();
        self.notify.notify_waiters();
    }

    fn item(&self, st: &InputState, i: usize) -> Option<InputItem> {
        if let Some(c) = st.chunks.get(i) {
            return Some(InputItem::Data(c.clone()));
        }
        match &st.end {
            Some(Ok(())) => Some(InputItem::End),
            Some(Err(e)) => Some(InputItem::Aborted(e.clone())),
            None => None,
        }
    }

    /// Item `i`, waiting for it (async).
    pub async fn next(&self, i: usize) -> InputItem {
        loop {
            let notified = self.notify.notified();
            if let Some(item) = self.item(&self.state.lock(), i) {
                return item;
            }
            notified.await;
        }
    }

    /// Item `i`, waiting for it (blocking thread).
    pub fn blocking_next(&self, i: usize) -> InputItem {
        let mut st = self.state.lock();
        loop {
            if let Some(item) = self.item(&st, i) {
                return item;
            }
            self.cond.wait(&mut st);
        }
    }
}

/// Writes an [`InputBuf`]; see [`InputBuf::writer`].
#[derive(Debug)]
pub struct InputWriter(Arc<InputBuf>);

impl InputWriter {
    pub fn push(&self, data: Bytes) {
        self.0.push(data);
    }

    pub fn end(self, result: Result<(), Abort>) {
        self.0.end(result);
    }
}

impl Drop for InputWriter {
    fn drop(&mut self) {
        self.0.end(Err(Abort::new(crate::fault::code::UPLOAD_DROPPED, "the upload was dropped before its end")));
    }
}

/// A result item on its way to the broadcaster (or from a transcoder to its orchestrator).
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// A `C` or `D` record, framed.
    Record(Bytes),
    Error {
        rendition: u8,
        code: String,
        message: String,
    },
    End {
        ok: bool,
        summary: serde_json::Value,
    },
}

impl Out {
    fn error(rendition: u8, e: &Failure) -> Out {
        Out::Error { rendition, code: e.code().into(), message: e.message() }
    }

    /// Rendition `index`'s done record, from its stats (wherever it was made).
    pub fn done(index: u8, s: &RenditionStats) -> Out {
        let body = json!({"rendition": s.name, "frames": s.frames_out, "bytes": s.ts_bytes, "width": s.width,
                          "height": s.height, "keyframes": s.keyframes});
        Out::Record(framing::record(Kind::Done, index, body.to_string().as_bytes()))
    }

    /// The record that carries this item.
    pub fn to_record(&self) -> Bytes {
        match self {
            Out::Record(r) => r.clone(),
            Out::Error { rendition, code, message } => framing::record(
                Kind::Error,
                *rendition,
                json!({"code": code, "message": message}).to_string().as_bytes(),
            ),
            Out::End { summary, .. } => framing::record(Kind::End, SEGMENT, summary.to_string().as_bytes()),
        }
    }

    /// The item a received record stands for (`None` for `S`).
    pub fn from_record(r: &framing::Record) -> Option<Out> {
        let json = || serde_json::from_slice::<serde_json::Value>(&r.payload).unwrap_or_default();
        Some(match r.kind {
            Kind::Start => return None,
            Kind::Chunk | Kind::Done => Out::Record(framing::record(r.kind, r.rendition, &r.payload)),
            Kind::Error => {
                let v = json();
                Out::Error {
                    rendition: r.rendition,
                    code: v["code"].as_str().unwrap_or("unknown").into(),
                    message: v["message"].as_str().unwrap_or("").into(),
                }
            }
            Kind::End => {
                let v = json();
                Out::End { ok: v["status"] == "ok", summary: v }
            }
        })
    }
}

/// A segment's result items gathered into whole renditions, for peers that take them whole (go-livepeer's):
/// each one's bytes and encoded pixels (frames x width x height from its done record), or the
/// code and message of the first error. No end record is an error too (never passed off as
/// complete).
pub async fn gather(out: &mut mpsc::Receiver<Out>, n: usize) -> Result<Vec<(Bytes, u64)>, (String, String)> {
    let mut data = vec![bytes::BytesMut::new(); n];
    let mut pixels = vec![0u64; n];
    let mut reader = framing::RecordReader::new();
    while let Some(o) = out.recv().await {
        match o {
            Out::Record(r) => {
                reader.push(&r);
                while let Some(Ok(rec)) = reader.poll() {
                    let i = usize::from(rec.rendition);
                    match rec.kind {
                        Kind::Chunk if i < n => data[i].extend_from_slice(&rec.payload),
                        Kind::Done if i < n => {
                            let v: serde_json::Value = serde_json::from_slice(&rec.payload).unwrap_or_default();
                            let f = |k: &str| v[k].as_u64().unwrap_or(0);
                            pixels[i] = f("frames") * f("width") * f("height");
                        }
                        _ => {}
                    }
                }
            }
            Out::Error { code, message, .. } => return Err((code, message)),
            Out::End { ok: true, .. } => return Ok(data.into_iter().map(|d| d.freeze()).zip(pixels).collect()),
            Out::End { ok: false, summary } => {
                let field = |k: &str| summary[k].as_str().unwrap_or_default().to_string();
                return Err((field("code"), field("message")));
            }
        }
    }
    Err((crate::fault::code::ERROR.into(), "the segment's results ended before it did".into()))
}

/// Frames each rendition's output as result records.
struct FramedSink {
    index: u8,
    tx: mpsc::Sender<Out>,
}

impl RenditionSink for FramedSink {
    fn chunk(&mut self, data: Bytes) -> std::io::Result<()> {
        let rec = framing::record(Kind::Chunk, self.index, &data);
        self.tx.blocking_send(Out::Record(rec)).map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }
    fn finish(&mut self, s: &RenditionStats) -> std::io::Result<()> {
        self.tx.blocking_send(Out::done(self.index, s)).map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }
    fn fail(&mut self, e: &TranscodeError) {
        let _ = self.tx.blocking_send(Out::error(self.index, &Failure::Engine(e.clone())));
    }
}

/// A stream's engine session, shared by its segments (one at a time, in arrival order).
pub type SessionSlot = Arc<tokio::sync::Mutex<Option<Box<dyn StreamSession>>>>;

/// A transcoder's warm sessions by key (a stream, or a Livepeer session), each with when it was
/// last used: one table for both link kinds. A session no task holds closes after
/// [`SESSION_IDLE`] unused, or when its key is ended.
#[derive(Clone, Default)]
pub struct SessionTable(Arc<Mutex<HashMap<String, (SessionSlot, Instant)>>>);

/// Sessions unused this long are closed (their stream ended or moved elsewhere, or its end was
/// never said).
pub const SESSION_IDLE: Duration = Duration::from_secs(60);

impl std::fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionTable({} open)", self.0.lock().len())
    }
}

impl SessionTable {
    /// The session of `key` (a new one if none), marked used now; and how many are open. Idle
    /// sessions that no task holds are closed first.
    pub fn slot(&self, key: &str) -> (SessionSlot, usize) {
        let mut map = self.0.lock();
        map.retain(|_, (slot, used)| used.elapsed() < SESSION_IDLE || Arc::strong_count(slot) > 1);
        let entry = map.entry(key.to_string()).or_insert_with(|| (SessionSlot::default(), Instant::now()));
        entry.1 = Instant::now();
        (entry.0.clone(), map.len())
    }

    /// `key` ended: its session closes unless a task still runs on it (then it idles out).
    /// Whether it closed, and how many stay open.
    pub fn end(&self, key: &str) -> (bool, usize) {
        let mut map = self.0.lock();
        let idle = map.get(key).is_some_and(|(slot, _)| Arc::strong_count(slot) == 1);
        if idle {
            map.remove(key);
        }
        (idle, map.len())
    }
}

/// One accelerator behind a [`SessionFactory`], as a node states it in its capabilities and
/// `GET /v1/transcoders`. The control plane passes it on; it knows nothing of what drives it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceCaps {
    /// "cuda:0".
    pub id: String,
    /// "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Where each stage of the ladder runs: "gpu" or "cpu" (a GPU without NVENC decodes and
    /// scales on the GPU and encodes on the CPU).
    pub decode: String,
    pub scale: String,
    pub encode: String,
}

impl DeviceCaps {
    /// A GPU that decodes and scales itself and encodes on its NVENC (`nvenc`) or on the CPU.
    pub fn gpu(id: &str, name: &str, nvenc: bool) -> DeviceCaps {
        let on = |gpu: bool| if gpu { "gpu" } else { "cpu" }.to_string();
        DeviceCaps { id: id.into(), name: name.into(), decode: on(true), scale: on(true), encode: on(nvenc) }
    }
}

/// Opens a stream's session for a ladder: the CPU engine by default; the binary supplies one
/// that places sessions on GPUs (the control plane knows nothing of CUDA).
#[derive(Clone)]
pub struct SessionFactory {
    /// What it opens, for capabilities and logs: "cpu", "cuda:0,1".
    pub backend: String,
    /// The accelerators it places sessions on (none for the CPU engine).
    pub devices: Vec<DeviceCaps>,
    open: Arc<OpenSession>,
}

/// How a [`SessionFactory`] opens a session for a ladder.
type OpenSession = dyn Fn(&Ladder) -> Result<Box<dyn StreamSession>, TranscodeError> + Send + Sync;

impl SessionFactory {
    pub fn new(
        backend: impl Into<String>,
        open: impl Fn(&Ladder) -> Result<Box<dyn StreamSession>, TranscodeError> + Send + Sync + 'static,
    ) -> SessionFactory {
        SessionFactory { backend: backend.into(), devices: Vec::new(), open: Arc::new(open) }
    }

    /// The same factory, stating the accelerators it uses.
    pub fn with_devices(mut self, devices: Vec<DeviceCaps>) -> SessionFactory {
        self.devices = devices;
        self
    }

    /// The CPU engine.
    pub fn cpu() -> SessionFactory {
        SessionFactory::new("cpu", |l: &Ladder| Ok(Box::new(Session::open(SessionConfig::new(l.clone()))?) as _))
    }

    pub fn open(&self, ladder: &Ladder) -> Result<Box<dyn StreamSession>, TranscodeError> {
        (self.open)(ladder)
    }
}

impl Default for SessionFactory {
    fn default() -> SessionFactory {
        SessionFactory::cpu()
    }
}

impl std::fmt::Debug for SessionFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionFactory({})", self.backend)
    }
}

/// What the engine did with a segment, as series, wherever it ran (an in-process node or a
/// remote transcoder).
fn record_engine_metrics(r: &SegmentReport) {
    use crate::metrics as m;
    metrics::histogram!(m::TRANSCODE).record(r.wall_time.as_secs_f64());
    metrics::histogram!(m::REALTIME_RATIO).record(r.realtime_ratio());
    metrics::counter!(m::FRAMES_DECODED).increment(r.frames_decoded);
    metrics::counter!(m::FRAMES_ENCODED).increment(r.renditions.iter().map(|s| s.frames_out).sum());
    metrics::counter!(m::BYTES_SENT).increment(r.renditions.iter().map(|s| s.ts_bytes).sum());
}

/// Runs one segment on this machine's engine (call on a blocking thread). Sends the records,
/// then an `Error` for the whole segment if it failed, then `End`. `release` runs when the
/// engine is done and before `End` goes out, so a broadcaster that sends its next segment the
/// moment this one ends finds the capacity free. Returns the report.
pub fn run_local(
    slot: &SessionSlot,
    sessions: &SessionFactory,
    ladder: Ladder,
    options: SegmentOptions,
    input: &InputBuf,
    out: &mpsc::Sender<Out>,
    release: impl FnOnce(),
) -> Result<SegmentReport, Failure> {
    let result = transcode(slot, sessions, ladder, options, input, out);
    release();
    match &result {
        Ok(rep) => {
            record_engine_metrics(rep);
            let summary = json!({"status": "ok", "frames": rep.frames_decoded,
                                 "media_ms": rep.media_duration.as_millis() as u64,
                                 "transcode_ms": rep.wall_time.as_millis() as u64});
            let _ = out.blocking_send(Out::End { ok: true, summary });
        }
        Err(e) => {
            // (An upload failure was sent first, before the renditions' own records of it.)
            if !matches!(e, Failure::Upload(_)) {
                let _ = out.blocking_send(Out::error(SEGMENT, e));
            }
            let summary = json!({"status": "error", "code": e.code(), "message": e.message()});
            let _ = out.blocking_send(Out::End { ok: false, summary });
        }
    }
    result
}

fn transcode(
    slot: &SessionSlot,
    sessions: &SessionFactory,
    ladder: Ladder,
    options: SegmentOptions,
    input: &InputBuf,
    out: &mpsc::Sender<Out>,
) -> Result<SegmentReport, Failure> {
    let mut guard = slot.blocking_lock();
    if guard.as_ref().is_none_or(|s| *s.ladder() != ladder) {
        *guard = None; // the old session (and its device, if any) goes first
        *guard = Some(sessions.open(&ladder)?);
    }
    let result = feed(guard.as_mut().expect("opened above"), &ladder, options, input, out);
    // A session whose workers are gone cannot serve another segment: the next one opens anew.
    if matches!(result, Err(Failure::Engine(TranscodeError::WorkerLost { .. }))) {
        *guard = None;
    }
    result
}

fn feed(
    session: &mut Box<dyn StreamSession>,
    ladder: &Ladder,
    options: SegmentOptions,
    input: &InputBuf,
    out: &mpsc::Sender<Out>,
) -> Result<SegmentReport, Failure> {
    let sinks = (0..ladder.len())
        .map(|i| Box::new(FramedSink { index: i as u8, tx: out.clone() }) as Box<dyn RenditionSink>)
        .collect();
    let mut seg = session.begin_segment_with(sinks, options)?;
    let mut i = 0;
    loop {
        match input.blocking_next(i) {
            InputItem::Data(d) => {
                i += 1;
                if seg.push(d).is_err() {
                    break; // the engine knows the segment is bad; finish() says why
                }
            }
            InputItem::End => break,
            InputItem::Aborted(why) => {
                tracing::info!(code = why.code, reason = %why.message, "upload aborted");
                let failure = Failure::Upload(why);
                let _ = out.blocking_send(Out::error(SEGMENT, &failure));
                drop(seg);
                return Err(failure);
            }
        }
    }
    Ok(seg.finish()?)
}
