//! Sessions: one per stream, transcoding its segments one after another.
//!
//! ```text
//!  push(Bytes) ──► [decode thread] demux ─► inspect ─► decode ─┬─► [rendition 0] scale ─► encode ─► mux ─► sink
//!                                       └─ copied PES ─────────┼─► [rendition 1] ...
//!                                                              └─► [rendition N] ...
//! ```
//! Every arrow is a bounded crossbeam channel, so memory stays bounded and a slow rendition
//! slows the input down instead of queueing frames. Decoder and encoders live as long as the
//! session, so a stream's segments reuse them (references carry over an open GOP; encoder
//! start-up is paid once). Each rendition's bytes go to its [`RenditionSink`] in chunks of whole
//! TS packets as soon as each frame is encoded.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, bounded};
use parking_lot::Mutex;

use crate::cadence::{Cadence, Decision};
use crate::codec::{CodecError, EncoderSettings, H264Decoder, H264Encoder};
use crate::error::TranscodeError;
use crate::frame::Frame;
use crate::h264::{Unsupported, inspect_access_unit};
use crate::profile::{Ladder, Profile};
use crate::scale::{ScaleFilter, Scaler};
use crate::stats::{InputInfo, RenditionStats, SegmentReport};
use crate::ts::{
    AudioTrack, DemuxEvent, Demuxer, Muxer, MuxerConfig, Pes, ProgramInfo, TICKS_PER_SECOND, Unwrapper, stream_type,
    wrap33,
};

/// Where a rendition's bytes go.
pub trait RenditionSink: Send {
    /// A chunk of whole 188-byte TS packets, in order.
    fn chunk(&mut self, data: Bytes) -> std::io::Result<()>;
    /// The rendition of this segment is complete.
    fn finish(&mut self, _stats: &RenditionStats) -> std::io::Result<()> {
        Ok(())
    }
    /// The segment failed; what was sent is incomplete.
    fn fail(&mut self, _error: &TranscodeError) {}
}

/// Collects a rendition in memory (tests, small tools).
#[derive(Debug, Clone, Default)]
pub struct MemorySink(pub Arc<Mutex<Vec<u8>>>);

impl MemorySink {
    pub fn new() -> MemorySink {
        MemorySink::default()
    }
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.lock())
    }
}

impl RenditionSink for MemorySink {
    fn chunk(&mut self, data: Bytes) -> std::io::Result<()> {
        self.0.lock().extend_from_slice(&data);
        Ok(())
    }
}

/// Writes a rendition to any `Write` (a file, a pipe).
#[derive(Debug)]
pub struct WriteSink<W: std::io::Write + Send>(pub W);

impl<W: std::io::Write + Send> RenditionSink for WriteSink<W> {
    fn chunk(&mut self, data: Bytes) -> std::io::Result<()> {
        self.0.write_all(&data)
    }
    fn finish(&mut self, _stats: &RenditionStats) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// What a channel sink hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum RenditionEvent {
    Chunk(Bytes),
    Done(RenditionStats),
    Failed(String),
}

/// Sends a rendition's chunks down a channel (for the control plane's response streams).
#[derive(Debug)]
pub struct ChannelSink(pub Sender<RenditionEvent>);

impl RenditionSink for ChannelSink {
    fn chunk(&mut self, data: Bytes) -> std::io::Result<()> {
        self.0.send(RenditionEvent::Chunk(data)).map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }
    fn finish(&mut self, stats: &RenditionStats) -> std::io::Result<()> {
        self.0.send(RenditionEvent::Done(stats.clone())).map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }
    fn fail(&mut self, error: &TranscodeError) {
        let _ = self.0.send(RenditionEvent::Failed(error.to_string()));
    }
}

/// Session settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub ladder: Ladder,
    pub filter: ScaleFilter,
    /// Decoded frames queued per rendition.
    pub frame_queue: usize,
    /// Input chunks queued before `push` blocks.
    pub input_queue: usize,
    /// Encoder threads per rendition.
    pub encoder_threads: u16,
}

impl SessionConfig {
    pub fn new(ladder: Ladder) -> SessionConfig {
        SessionConfig { ladder, filter: ScaleFilter::default(), frame_queue: 4, input_queue: 64, encoder_threads: 1 }
    }
}

enum Input {
    Begin { sinks: Vec<Box<dyn RenditionSink>>, done: Sender<Result<SegmentReport, TranscodeError>> },
    Data(Bytes),
    End,
    Abandon,
}

enum Work {
    Begin {
        sink: Box<dyn RenditionSink>,
        started: Instant,
    },
    /// The program's copied streams, once the PMT is known.
    Tracks(Vec<AudioTrack>),
    Frame(Arc<Frame>),
    Track {
        index: usize,
        pes: Arc<Pes>,
        ext_pts: Option<i64>,
    },
    End {
        reply: Sender<Result<RenditionStats, TranscodeError>>,
    },
    Abort {
        error: TranscodeError,
        reply: Sender<()>,
    },
}

/// A stream's transcoding session. See the module documentation.
pub struct Session {
    input: Option<Sender<Input>>,
    decode: Option<JoinHandle<()>>,
    failed: Arc<Mutex<Option<TranscodeError>>>,
    busy: Arc<AtomicBool>,
    ladder: Ladder,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("renditions", &self.ladder.len()).finish()
    }
}

impl Session {
    /// Starts the session's decode and rendition workers.
    pub fn open(config: SessionConfig) -> Result<Session, TranscodeError> {
        // Fail early on a codec that cannot start, on the caller's thread.
        H264Decoder::new()?;
        let (tx, rx) = bounded::<Input>(config.input_queue.max(1));
        let failed = Arc::new(Mutex::new(None));
        let ladder = config.ladder.clone();
        let mut renditions = Vec::new();
        for (i, profile) in config.ladder.profiles().iter().enumerate() {
            let (wtx, wrx) = bounded::<Work>(config.frame_queue.max(1));
            let worker = RenditionWorker::new(profile.clone(), config.filter, config.encoder_threads);
            let handle = std::thread::Builder::new()
                .name(format!("zerohop-r{i}-{}", profile.name))
                .spawn(move || worker.run(wrx))
                .map_err(|e| TranscodeError::WorkerLost { worker: format!("rendition {}: {e}", profile.name) })?;
            renditions.push((wtx, handle, profile.name.clone()));
        }
        let decode = std::thread::Builder::new()
            .name("zerohop-decode".into())
            .spawn({
                let failed = failed.clone();
                move || DecodeWorker::new(renditions, failed).run(rx)
            })
            .map_err(|e| TranscodeError::WorkerLost { worker: format!("decode: {e}") })?;
        Ok(Session { input: Some(tx), decode: Some(decode), failed, busy: Arc::new(AtomicBool::new(false)), ladder })
    }

    pub fn ladder(&self) -> &Ladder {
        &self.ladder
    }

    /// Starts a segment; `sinks` has one entry per rendition, in ladder order (panics
    /// otherwise: that is a programming error, not bad input).
    pub fn begin(&mut self, sinks: Vec<Box<dyn RenditionSink>>) -> Result<Segment, TranscodeError> {
        assert_eq!(sinks.len(), self.ladder.len(), "one sink per rendition of the ladder");
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(TranscodeError::SegmentInProgress);
        }
        *self.failed.lock() = None;
        let lost = || TranscodeError::WorkerLost { worker: "decode".into() };
        let input = self.input.clone().ok_or_else(lost)?;
        let (done_tx, done_rx) = bounded(1);
        input.send(Input::Begin { sinks, done: done_tx }).map_err(|_| lost())?;
        Ok(Segment {
            input,
            done: done_rx,
            failed: self.failed.clone(),
            busy: self.busy.clone(),
            ended: false,
            started: Instant::now(),
        })
    }

    /// Transcodes a whole segment held in memory.
    pub fn transcode(
        &mut self,
        data: Bytes,
        sinks: Vec<Box<dyn RenditionSink>>,
    ) -> Result<SegmentReport, TranscodeError> {
        let mut seg = self.begin(sinks)?;
        // Push in network-sized pieces so decoding overlaps with the (simulated) arrival.
        const PIECE: usize = 64 * 1024;
        let mut off = 0;
        while off < data.len() {
            let end = (off + PIECE).min(data.len());
            if seg.push(data.slice(off..end)).is_err() {
                break; // the error comes from finish()
            }
            off = end;
        }
        seg.finish()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        drop(self.input.take());
        if let Some(h) = self.decode.take() {
            let _ = h.join();
        }
    }
}

/// One segment in progress. Dropping it without [`Segment::finish`] abandons the segment (its
/// sinks are told it failed) and leaves the session ready for the next one.
pub struct Segment {
    input: Sender<Input>,
    done: Receiver<Result<SegmentReport, TranscodeError>>,
    failed: Arc<Mutex<Option<TranscodeError>>>,
    busy: Arc<AtomicBool>,
    ended: bool,
    started: Instant,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment").field("started", &self.started).finish()
    }
}

impl Segment {
    /// Pushes the next bytes of the segment. Blocks while the pipeline is full. Fails early
    /// once the segment is known to be bad (the same error `finish` returns).
    pub fn push(&mut self, data: Bytes) -> Result<(), TranscodeError> {
        if let Some(e) = self.failed.lock().clone() {
            return Err(e);
        }
        self.input.send(Input::Data(data)).map_err(|_| TranscodeError::WorkerLost { worker: "decode".into() })
    }

    /// Ends the input and waits for every rendition to finish.
    pub fn finish(mut self) -> Result<SegmentReport, TranscodeError> {
        self.ended = true;
        let lost = || TranscodeError::WorkerLost { worker: "decode".into() };
        self.input.send(Input::End).map_err(|_| lost())?;
        let mut report = self.done.recv().map_err(|_| lost())??;
        report.wall_time = self.started.elapsed();
        Ok(report)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if !self.ended && self.input.send(Input::Abandon).is_ok() {
            let _ = self.done.recv();
        }
        self.busy.store(false, Ordering::Release);
    }
}

// ---------------------------------------------------------------------------------------------
// Decode worker

struct DecodeWorker {
    renditions: Vec<(Sender<Work>, JoinHandle<()>, String)>,
    decoder: Option<H264Decoder>,
    failed: Arc<Mutex<Option<TranscodeError>>>,
}

/// Per-segment state of the decode worker.
struct SegmentState {
    done: Sender<Result<SegmentReport, TranscodeError>>,
    demux: Demuxer,
    video_pid: Option<u16>,
    tracks: HashMap<u16, usize>,
    unwrap: HashMap<u16, Unwrapper>,
    begun: bool,
    error: Option<TranscodeError>,
    first_decode_error: Option<CodecError>,
    report: SegmentReport,
    last_au_pts: Option<i64>,
    decode_time: Duration,
    started: Instant,
}

impl DecodeWorker {
    fn new(
        renditions: Vec<(Sender<Work>, JoinHandle<()>, String)>,
        failed: Arc<Mutex<Option<TranscodeError>>>,
    ) -> Self {
        DecodeWorker { renditions, decoder: None, failed }
    }

    fn run(mut self, rx: Receiver<Input>) {
        let mut seg: Option<SegmentState> = None;
        while let Ok(msg) = rx.recv() {
            match msg {
                Input::Begin { sinks, done } => {
                    let mut s = SegmentState {
                        done,
                        demux: Demuxer::new(),
                        video_pid: None,
                        tracks: HashMap::new(),
                        unwrap: HashMap::new(),
                        begun: false,
                        error: None,
                        first_decode_error: None,
                        report: SegmentReport::default(),
                        last_au_pts: None,
                        decode_time: Duration::ZERO,
                        started: Instant::now(),
                    };
                    let mut sinks = sinks.into_iter();
                    for (tx, _, _) in &self.renditions {
                        let sink = sinks.next().expect("one sink per rendition");
                        if tx.send(Work::Begin { sink, started: s.started }).is_err() {
                            s.error.get_or_insert(TranscodeError::WorkerLost { worker: "rendition".into() });
                        }
                    }
                    seg = Some(s);
                }
                Input::Data(data) => {
                    if let Some(s) = seg.as_mut()
                        && s.error.is_none()
                    {
                        s.demux.push(&data);
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.drain(s)));
                        if let Err(p) = r {
                            self.decoder = None; // its state is unknown: the next segment opens one
                            let message = crate::error::panic_message(&*p);
                            self.fail(s, TranscodeError::Panic { worker: "decode".into(), message });
                        }
                    }
                }
                Input::End => {
                    if let Some(s) = seg.take() {
                        self.end(s, false);
                    }
                }
                Input::Abandon => {
                    if let Some(mut s) = seg.take() {
                        s.error.get_or_insert(TranscodeError::Abandoned);
                        self.end(s, true);
                    }
                }
            }
        }
        for (tx, handle, _) in self.renditions.drain(..) {
            drop(tx);
            let _ = handle.join();
        }
    }

    fn fail(&self, s: &mut SegmentState, e: TranscodeError) {
        if s.error.is_none() {
            *self.failed.lock() = Some(e.clone());
            s.error = Some(e);
        }
    }

    fn drain(&mut self, s: &mut SegmentState) {
        while s.error.is_none() {
            let Some(ev) = s.demux.poll() else { break };
            match ev {
                DemuxEvent::Program(p) => self.program(s, &p),
                DemuxEvent::Pes(pes) => {
                    if Some(pes.pid) == s.video_pid {
                        self.video(s, &pes);
                    } else if let Some(&index) = s.tracks.get(&pes.pid) {
                        let ext_pts = pes.pts.map(|p| s.unwrap.entry(pes.pid).or_default().unwrap(p));
                        let pes = Arc::new(pes);
                        for (tx, _, _) in &self.renditions {
                            let _ = tx.send(Work::Track { index, pes: pes.clone(), ext_pts });
                        }
                    }
                }
            }
        }
    }

    fn program(&mut self, s: &mut SegmentState, p: &ProgramInfo) {
        if s.begun {
            return; // a PMT version change mid-segment keeps the first layout
        }
        let (video, pids, tracks) = match program_layout(p) {
            Ok(l) => l,
            Err(e) => return self.fail(s, e),
        };
        s.video_pid = Some(video);
        s.tracks = pids;
        s.begun = true;
        for (tx, _, _) in &self.renditions {
            let _ = tx.send(Work::Tracks(tracks.clone()));
        }
    }

    fn video(&mut self, s: &mut SegmentState, pes: &Pes) {
        let info = inspect_access_unit(&pes.payload);
        if let Some(sps) = info.sps {
            match sps {
                Ok(sps) => {
                    if let Err(e) = sps.check_supported() {
                        return self.fail(s, e.into());
                    }
                    if s.report.input.width == 0 {
                        s.report.input = InputInfo {
                            width: sps.width,
                            height: sps.height,
                            profile: sps.profile_name().to_string(),
                            level_idc: sps.level_idc,
                            fps: sps.fps.unwrap_or(0.0),
                        };
                    }
                }
                Err(e) => return self.fail(s, e.into()),
            }
        }
        let unwrap = s.unwrap.entry(pes.pid).or_default();
        let pts = match pes.pts {
            Some(p) => unwrap.unwrap(p),
            // No PTS: one frame after the previous one (3000 ticks when the rate is unknown).
            None => s.last_au_pts.map_or(0, |p| p + 3000),
        };
        s.last_au_pts = Some(pts);
        if info.has_picture {
            s.report.access_units += 1;
        }
        let decoder = match self.decoder.as_mut() {
            Some(d) => d,
            None => match H264Decoder::new() {
                Ok(d) => self.decoder.insert(d),
                Err(e) => return self.fail(s, e.into()),
            },
        };
        let started = Instant::now();
        let mut frames = Vec::new();
        let r = decoder.decode(&pes.payload, pts, &mut |f| frames.push(f));
        s.decode_time += started.elapsed();
        if let Err(e) = r {
            s.first_decode_error.get_or_insert(e);
        }
        for f in frames {
            self.deliver(s, f);
        }
    }

    fn deliver(&self, s: &mut SegmentState, f: Frame) {
        let r = &mut s.report;
        r.first_picture_after.get_or_insert_with(|| s.started.elapsed());
        r.frames_decoded += 1;
        r.first_pts = Some(r.first_pts.map_or(f.pts, |p| p.min(f.pts)));
        r.last_pts = Some(r.last_pts.map_or(f.pts, |p| p.max(f.pts)));
        if r.input.width == 0 {
            r.input.width = f.width;
            r.input.height = f.height;
        }
        let f = Arc::new(f);
        for (tx, _, _) in &self.renditions {
            let _ = tx.send(Work::Frame(f.clone()));
        }
    }

    fn end(&mut self, mut s: SegmentState, abandoned: bool) {
        if s.error.is_none() && !abandoned {
            if let Err(e) = s.demux.finish() {
                self.fail(&mut s, e.into());
            }
            self.drain(&mut s);
        }
        if s.error.is_none() && !abandoned {
            if let Some(decoder) = self.decoder.as_mut() {
                let mut frames = Vec::new();
                let started = Instant::now();
                let r = decoder.flush(&mut |f| frames.push(f));
                s.decode_time += started.elapsed();
                if let Err(e) = r {
                    s.first_decode_error.get_or_insert(e);
                }
                for f in frames {
                    self.deliver(&mut s, f);
                }
            }
            // OpenH264 cannot decode after FlushFrame (measured: the next segment's IDR fails
            // with "out of memory" and every later picture with "no SPS/PPS"), so the CPU backend
            // starts each segment with a fresh decoder (about a millisecond); encoders persist.
            self.decoder = None;
            if let Some(e) = verdict(&s.report, s.video_pid.is_some(), s.first_decode_error.clone()) {
                self.fail(&mut s, e);
            }
        }
        s.report.demux = s.demux.stats().clone();
        s.report.decode_time = s.decode_time;
        fill_timing(&mut s.report);
        let result = match s.error.take() {
            Some(error) => {
                // Tell every rendition, wait until each has told its sink.
                let mut waits = Vec::new();
                for (tx, _, _) in &self.renditions {
                    let (rtx, rrx) = bounded(1);
                    if tx.send(Work::Abort { error: error.clone(), reply: rtx }).is_ok() {
                        waits.push(rrx);
                    }
                }
                for w in waits {
                    let _ = w.recv();
                }
                // The decoder may hold a broken state: start clean next segment.
                self.decoder = None;
                Err(error)
            }
            None => self.collect(s.report),
        };
        let _ = s.done.send(result);
    }

    fn collect(&mut self, mut report: SegmentReport) -> Result<SegmentReport, TranscodeError> {
        let mut waits = Vec::new();
        for (tx, _, name) in &self.renditions {
            let (rtx, rrx) = bounded(1);
            if tx.send(Work::End { reply: rtx }).is_err() {
                return Err(TranscodeError::WorkerLost { worker: format!("rendition {name}") });
            }
            waits.push((rrx, name.clone()));
        }
        let mut first_err = None;
        for (w, name) in waits {
            match w.recv() {
                Ok(Ok(st)) => report.renditions.push(st),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(TranscodeError::WorkerLost { worker: format!("rendition {name}") });
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rendition worker

struct RenditionWorker {
    profile: Profile,
    scaler: Scaler,
    encoder: Option<H264Encoder>,
    encoder_threads: u16,
    muxer: Option<Muxer>,
    cadence: Cadence,
}

struct RenditionSegment {
    sink: Box<dyn RenditionSink>,
    tracks: Vec<AudioTrack>,
    pending: PendingPes,
    stats: RenditionStats,
    first: bool,
    started: Instant,
    error: Option<TranscodeError>,
    out: Vec<u8>,
}

impl RenditionWorker {
    fn new(profile: Profile, filter: ScaleFilter, encoder_threads: u16) -> Self {
        RenditionWorker {
            cadence: Cadence::new(&profile),
            profile,
            scaler: Scaler::new(filter),
            encoder: None,
            encoder_threads,
            muxer: None,
        }
    }

    fn run(mut self, rx: Receiver<Work>) {
        let mut seg: Option<RenditionSegment> = None;
        while let Ok(msg) = rx.recv() {
            match msg {
                Work::Begin { sink, started } => {
                    seg = Some(RenditionSegment {
                        sink,
                        tracks: Vec::new(),
                        pending: VecDeque::new(),
                        stats: RenditionStats { name: self.profile.name.clone(), ..Default::default() },
                        first: true,
                        started,
                        error: None,
                        out: Vec::with_capacity(64 * 1024),
                    });
                }
                Work::Tracks(tracks) => {
                    if let Some(s) = seg.as_mut() {
                        s.tracks = tracks;
                    }
                }
                Work::Frame(f) => {
                    if let Some(s) = seg.as_mut()
                        && s.error.is_none()
                        && let Err(e) = self.contained(|w| w.frame(s, &f))
                    {
                        s.error = Some(e);
                    }
                }
                Work::Track { index, pes, ext_pts } => {
                    if let Some(s) = seg.as_mut() {
                        s.pending.push_back((index, pes, ext_pts));
                    }
                }
                Work::End { reply } => {
                    let Some(mut s) = seg.take() else { continue };
                    let result = match s.error.take() {
                        Some(e) => {
                            s.sink.fail(&e);
                            Err(e)
                        }
                        None => self.contained(|w| w.end(&mut s)).map(|()| s.stats.clone()),
                    };
                    let _ = reply.send(result);
                }
                Work::Abort { error, reply } => {
                    if let Some(mut s) = seg.take() {
                        s.sink.fail(&error);
                    }
                    // Start the next segment with a clean encoder state.
                    self.encoder = None;
                    let _ = reply.send(());
                }
            }
        }
    }

    /// Runs `f`, turning a panic (a bug, or a sink that panics) into this segment's error: the
    /// encoder and muxer state are reset so the next segment starts clean, and the thread lives.
    fn contained(&mut self, f: impl FnOnce(&mut Self) -> Result<(), TranscodeError>) -> Result<(), TranscodeError> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))) {
            Ok(r) => r,
            Err(p) => {
                self.encoder = None;
                self.muxer = None;
                Err(TranscodeError::Panic {
                    worker: format!("rendition {}", self.profile.name),
                    message: crate::error::panic_message(&*p),
                })
            }
        }
    }

    fn frame(&mut self, s: &mut RenditionSegment, f: &Frame) -> Result<(), TranscodeError> {
        s.stats.frames_in += 1;
        let keyframe = match self.cadence.decide(f.pts, s.first) {
            Decision::Drop => {
                s.stats.frames_dropped += 1;
                return Ok(());
            }
            Decision::Keep { keyframe } => keyframe,
        };

        let (w, h) = self.profile.output_size(f.width, f.height);
        let fps = self.cadence.output_fps();
        if self.encoder.as_ref().is_none_or(|e| (e.settings().width, e.settings().height) != (w, h)) {
            self.encoder = Some(H264Encoder::new(EncoderSettings {
                width: w,
                height: h,
                bitrate: self.profile.bitrate,
                fps,
                threads: self.encoder_threads,
            })?);
        }
        s.stats.width = w;
        s.stats.height = h;

        let t = Instant::now();
        let scaled;
        let pic = if (f.width, f.height) == (w, h) {
            f
        } else {
            scaled = self.scaler.scale(f, w, h)?;
            &scaled
        };
        s.stats.scale_time += t.elapsed();

        let t = Instant::now();
        let encoder = self.encoder.as_mut().expect("created above");
        let Some(enc) = encoder.encode(pic, keyframe)? else {
            return Ok(());
        };
        s.stats.encode_time += t.elapsed();
        if enc.keyframe {
            s.stats.keyframes += 1;
            s.stats.keyframe_pts.push(f.pts);
        }
        s.first = false;

        let t = Instant::now();
        let muxer = muxer_for(&mut self.muxer, &s.tracks);
        s.stats.copied_pes += write_pending(muxer, &mut s.pending, Some(f.pts), &mut s.out);
        let pts = wrap33(f.pts);
        muxer.write_video(&enc.data, pts, pts, enc.keyframe, &mut s.out);
        s.stats.video_bytes += enc.data.len() as u64;
        s.stats.frames_out += 1;
        s.stats.mux_time += t.elapsed();
        self.emit(s)
    }

    fn emit(&mut self, s: &mut RenditionSegment) -> Result<(), TranscodeError> {
        if s.out.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut s.out, Vec::with_capacity(64 * 1024)));
        s.stats.first_chunk_after.get_or_insert_with(|| s.started.elapsed());
        s.stats.ts_bytes += chunk.len() as u64;
        s.stats.chunks += 1;
        s.sink
            .chunk(chunk)
            .map_err(|e| TranscodeError::Sink { rendition: self.profile.name.clone(), message: e.to_string() })
    }

    fn end(&mut self, s: &mut RenditionSegment) -> Result<(), TranscodeError> {
        let muxer = muxer_for(&mut self.muxer, &s.tracks);
        s.stats.copied_pes += write_pending(muxer, &mut s.pending, None, &mut s.out);
        let r = self.emit(s).and_then(|()| {
            s.sink
                .finish(&s.stats)
                .map_err(|e| TranscodeError::Sink { rendition: self.profile.name.clone(), message: e.to_string() })
        });
        if let Err(e) = &r {
            s.sink.fail(e);
        }
        r
    }
}

// ---------------------------------------------------------------------------------------------
// Shared with the accelerated ladder (`accel`): what a segment's program and pictures mean, and
// how a rendition's output is muxed.

/// Copied PES waiting for the video to reach their time: (track index, PES, unwrapped PTS).
pub(crate) type PendingPes = VecDeque<(usize, Arc<Pes>, Option<i64>)>;

/// The rendition's muxer for `tracks` (a new one when the program's copied streams changed;
/// otherwise kept across segments, so continuity counters carry on).
pub(crate) fn muxer_for<'a>(muxer: &'a mut Option<Muxer>, tracks: &[AudioTrack]) -> &'a mut Muxer {
    if muxer.as_ref().is_none_or(|m| m.config().tracks != tracks) {
        *muxer = Some(Muxer::new(MuxerConfig { tracks: tracks.to_vec() }));
    }
    muxer.as_mut().expect("just set")
}

/// Writes the copied PES due by `until` (every one when `None`) ahead of the next picture, so
/// the output stays interleaved. Returns how many were written.
pub(crate) fn write_pending(muxer: &mut Muxer, pending: &mut PendingPes, until: Option<i64>, out: &mut Vec<u8>) -> u64 {
    let mut n = 0;
    while pending.front().is_some_and(|(_, _, p)| until.is_none_or(|u| p.is_none_or(|p| p <= u))) {
        let (index, pes, _) = pending.pop_front().expect("front exists");
        muxer.write_track(index, pes.stream_id, pes.pts, pes.dts, &pes.payload, out);
        n += 1;
    }
    n
}

/// A program as the pipelines use it: the video PID, the copied streams' PIDs -> track index,
/// and the copied streams' layout for the muxer.
pub(crate) type ProgramLayout = (u16, HashMap<u16, usize>, Vec<AudioTrack>);

/// The program's layout, or why it cannot be transcoded.
pub(crate) fn program_layout(p: &ProgramInfo) -> Result<ProgramLayout, TranscodeError> {
    let Some(video) = p.video() else {
        let streams = p
            .streams
            .iter()
            .map(|e| format!("{} on PID {}", stream_type::name(e.stream_type), e.pid))
            .collect::<Vec<_>>()
            .join(", ");
        let streams = if streams.is_empty() { "no streams".into() } else { streams };
        return Err(TranscodeError::NoVideo { streams });
    };
    if video.stream_type != stream_type::H264 {
        let e = Unsupported::Codec { found: stream_type::name(video.stream_type), stream_type: video.stream_type };
        return Err(e.into());
    }
    let mut pids = HashMap::new();
    let mut tracks = Vec::new();
    for (i, e) in p.others().enumerate() {
        pids.insert(e.pid, i);
        tracks.push(AudioTrack { stream_type: e.stream_type, descriptors: e.descriptors.to_vec() });
    }
    Ok((video.pid, pids, tracks))
}

/// A segment whose decoding ended: no video, no picture, or fewer pictures than access units
/// (the renditions would be incomplete) fail it.
pub(crate) fn verdict(r: &SegmentReport, video_seen: bool, first_error: Option<CodecError>) -> Option<TranscodeError> {
    if video_seen && r.frames_decoded == 0 {
        Some(TranscodeError::NoPictures { access_units: r.access_units, first_error })
    } else if r.frames_decoded < r.access_units {
        Some(TranscodeError::FramesLost { expected: r.access_units, decoded: r.frames_decoded, first_error })
    } else if !video_seen {
        Some(TranscodeError::NoVideo { streams: "no program seen".into() })
    } else {
        None
    }
}

/// Media duration (and the frame rate when the SPS had none) from the pictures' PTS.
pub(crate) fn fill_timing(r: &mut SegmentReport) {
    if let (Some(a), Some(b)) = (r.first_pts, r.last_pts) {
        let frame = if r.frames_decoded > 1 { (b - a) as f64 / (r.frames_decoded - 1) as f64 } else { 3000.0 };
        if r.input.fps == 0.0 && frame > 0.0 {
            r.input.fps = TICKS_PER_SECOND as f64 / frame;
        }
        r.media_duration = Duration::from_secs_f64(((b - a) as f64 + frame).max(0.0) / TICKS_PER_SECOND as f64);
    }
}

// ---------------------------------------------------------------------------------------------
// Backend-neutral sessions: for callers that pick the backend at run time.

/// A stream's session on any backend: the CPU [`Session`] or an accelerated
/// [`crate::accel::AccelSession`].
pub trait StreamSession: Send {
    fn ladder(&self) -> &Ladder;
    /// Starts a segment (one sink per rendition, in ladder order).
    fn begin_segment(
        &mut self,
        sinks: Vec<Box<dyn RenditionSink>>,
    ) -> Result<Box<dyn SegmentInput + '_>, TranscodeError>;
    /// What runs it: "cpu", "cuda:0", ...
    fn backend(&self) -> String;
}

/// A segment in progress on a [`StreamSession`]. Dropping it without `finish` abandons it.
pub trait SegmentInput {
    fn push(&mut self, data: Bytes) -> Result<(), TranscodeError>;
    fn finish(self: Box<Self>) -> Result<SegmentReport, TranscodeError>;
}

impl StreamSession for Session {
    fn ladder(&self) -> &Ladder {
        &self.ladder
    }
    fn begin_segment(
        &mut self,
        sinks: Vec<Box<dyn RenditionSink>>,
    ) -> Result<Box<dyn SegmentInput + '_>, TranscodeError> {
        Ok(Box::new(self.begin(sinks)?))
    }
    fn backend(&self) -> String {
        "cpu".into()
    }
}

impl SegmentInput for Segment {
    fn push(&mut self, data: Bytes) -> Result<(), TranscodeError> {
        Segment::push(self, data)
    }
    fn finish(self: Box<Self>) -> Result<SegmentReport, TranscodeError> {
        Segment::finish(*self)
    }
}
