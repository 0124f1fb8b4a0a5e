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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, bounded};
use parking_lot::Mutex;

use crate::codec::{CpuEncoder, H264Decoder};
use crate::error::TranscodeError;
use crate::frame::Frame;
use crate::intake::CopiedPes;
use crate::profile::Ladder;
use crate::scale::ScaleFilter;
use crate::sink::{RenditionSink, Sinks};
use crate::stats::{RenditionStats, SegmentReport};
use crate::stream::{SegmentInput, SegmentOptions, StreamSession};
use crate::timeline::{Stage, Timeline, mark};
use crate::ts::AudioTrack;

mod decode;
mod render;

use decode::{DecodeWorker, RenditionHandle};
use render::RenditionWorker;

/// Session settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub ladder: Ladder,
    pub filter: ScaleFilter,
    /// Decoded frames queued per rendition (shared: the pictures in flight are about this many
    /// plus one, whatever the ladder). Deep enough that the decode thread never waits for a
    /// rendition worker, which runs below it ([`crate::priority`]). A 1080p frame is 3 MB, so
    /// 8 is about 27 MB per 1080p stream (doc/performance.md, "The live edge").
    pub frame_queue: usize,
    /// Input chunks queued before `push` blocks.
    pub input_queue: usize,
    /// Encoder threads per rendition.
    pub encoder_threads: u16,
    /// The CPU encoder (default: the process's, [`CpuEncoder::process_default`]).
    pub cpu_encoder: CpuEncoder,
}

impl SessionConfig {
    pub fn new(ladder: Ladder) -> SessionConfig {
        SessionConfig {
            ladder,
            filter: ScaleFilter::default(),
            frame_queue: 8,
            input_queue: 64,
            encoder_threads: 1,
            cpu_encoder: CpuEncoder::process_default(),
        }
    }
}

pub(crate) enum Input {
    Begin { sinks: Sinks, options: SegmentOptions, done: Sender<Result<SegmentReport, TranscodeError>> },
    Data(Bytes),
    End,
    Abandon,
}

pub(crate) enum Work {
    Begin {
        sink: Box<dyn RenditionSink>,
        started: Instant,
        /// Its clip and timeline.
        options: SegmentOptions,
    },
    /// The program's copied streams, once the PMT is known.
    Tracks(Vec<AudioTrack>),
    /// The frame rate the segment's SPS declares, before its first picture.
    Rate(f64),
    Frame(Arc<Frame>),
    Copied(CopiedPes),
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
        f.debug_struct("Session").field("renditions", &self.ladder.len()).finish_non_exhaustive()
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
        let pixels: Vec<u64> =
            config.ladder.profiles().iter().map(|p| u64::from(p.width) * u64::from(p.height)).collect();
        let nice = crate::priority::rendition_steps(&pixels);
        for (i, profile) in config.ladder.profiles().iter().enumerate() {
            let (wtx, wrx) = bounded::<Work>(config.frame_queue.max(1));
            let worker = RenditionWorker::new(
                i,
                nice[i],
                profile.clone(),
                config.filter,
                config.encoder_threads,
                config.cpu_encoder,
            );
            let handle = std::thread::Builder::new()
                .name(format!("zerohop-r{i}-{}", profile.name))
                .spawn(move || worker.run(wrx))
                .map_err(|e| TranscodeError::WorkerLost { worker: format!("rendition {}: {e}", profile.name) })?;
            renditions.push(RenditionHandle { work: wtx, thread: handle, name: profile.name.clone() });
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
}

impl Drop for Session {
    fn drop(&mut self) {
        drop(self.input.take());
        if let Some(h) = self.decode.take()
            && h.join().is_err()
        {
            tracing::error!("the session's decode thread ended in a panic");
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
    timeline: Option<Timeline>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment").field("started", &self.started).finish_non_exhaustive()
    }
}

impl Segment {
    /// Pushes the next bytes of the segment. Blocks while the pipeline is full. Fails early
    /// once the segment is known to be bad (the same error `finish` returns).
    pub fn push(&mut self, data: Bytes) -> Result<(), TranscodeError> {
        if let Some(e) = self.failed.lock().clone() {
            return Err(e);
        }
        mark(&self.timeline, Stage::Input, None, data.len() as i64);
        self.input.send(Input::Data(data)).map_err(|_| TranscodeError::WorkerLost { worker: "decode".into() })
    }

    /// Ends the input and waits for every rendition to finish.
    pub fn finish(mut self) -> Result<SegmentReport, TranscodeError> {
        self.ended = true;
        mark(&self.timeline, Stage::InputEnd, None, 0);
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
            // The answer to an abandoned segment is `Abandoned`: only waited for, so the session
            // is idle again when this returns.
            self.done.recv().ok();
        }
        self.busy.store(false, Ordering::Release);
    }
}

impl StreamSession for Session {
    fn ladder(&self) -> &Ladder {
        &self.ladder
    }
    /// `sinks` has one entry per rendition, in ladder order (panics otherwise: that is a
    /// programming error, not bad input).
    fn begin_segment_with(
        &mut self,
        sinks: Sinks,
        options: SegmentOptions,
    ) -> Result<Box<dyn SegmentInput + '_>, TranscodeError> {
        assert_eq!(sinks.len(), self.ladder.len(), "one sink per rendition of the ladder");
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(TranscodeError::SegmentInProgress);
        }
        *self.failed.lock() = None;
        let lost = || TranscodeError::WorkerLost { worker: "decode".into() };
        let input = self.input.clone().ok_or_else(lost)?;
        let (done_tx, done_rx) = bounded(1);
        let timeline = options.timeline.clone();
        input.send(Input::Begin { sinks, options, done: done_tx }).map_err(|_| lost())?;
        Ok(Box::new(Segment {
            input,
            done: done_rx,
            failed: self.failed.clone(),
            busy: self.busy.clone(),
            ended: false,
            started: Instant::now(),
            timeline,
        }))
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
