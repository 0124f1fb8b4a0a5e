//! The CPU session's decode thread: drives the segment's [`Intake`], decodes its access units
//! with OpenH264 and fans each picture out to the rendition workers.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded};
use parking_lot::Mutex;

use super::{Input, Work};
use crate::codec::H264Decoder;
use crate::error::{TranscodeError, panic_message};
use crate::frame::Frame;
use crate::intake::{Intake, IntakeEvent, VideoUnit};
use crate::stats::SegmentReport;

/// A rendition worker as the decode thread sees it.
pub(super) struct RenditionHandle {
    pub(super) work: Sender<Work>,
    pub(super) thread: JoinHandle<()>,
    pub(super) name: String,
}

pub(super) struct DecodeWorker {
    renditions: Vec<RenditionHandle>,
    decoder: Option<H264Decoder>,
    /// The segment's error as soon as it is known, so `push` fails early.
    failed: Arc<Mutex<Option<TranscodeError>>>,
}

/// Per-segment state of the decode worker.
struct SegmentState {
    done: Sender<Result<SegmentReport, TranscodeError>>,
    intake: Intake,
}

impl DecodeWorker {
    pub(super) fn new(renditions: Vec<RenditionHandle>, failed: Arc<Mutex<Option<TranscodeError>>>) -> Self {
        DecodeWorker { renditions, decoder: None, failed }
    }

    pub(super) fn run(mut self, rx: Receiver<Input>) {
        let mut seg: Option<SegmentState> = None;
        while let Ok(msg) = rx.recv() {
            match msg {
                Input::Begin { sinks, options, done } => {
                    let mut s = SegmentState { done, intake: Intake::with_timeline(options.timeline.clone()) };
                    let started = s.intake.started();
                    for (r, sink) in self.renditions.iter().zip(sinks) {
                        if r.work.send(Work::Begin { sink, started, options: options.clone() }).is_err() {
                            s.intake.fail(TranscodeError::WorkerLost { worker: format!("rendition {}", r.name) });
                        }
                    }
                    seg = Some(s);
                }
                Input::Data(data) => {
                    if let Some(s) = seg.as_mut()
                        && s.intake.error().is_none()
                    {
                        s.intake.push(&data);
                        self.contained(s, |w, s| w.drain(s));
                    }
                }
                Input::End => {
                    if let Some(mut s) = seg.take() {
                        if s.intake.error().is_none() {
                            self.contained(&mut s, |w, s| w.end_input(s));
                        }
                        self.end(s);
                    }
                }
                Input::Abandon => {
                    if let Some(mut s) = seg.take() {
                        s.intake.fail(TranscodeError::Abandoned);
                        self.end(s);
                    }
                }
            }
        }
        for r in self.renditions.drain(..) {
            drop(r.work);
            if r.thread.join().is_err() {
                tracing::error!(rendition = %r.name, "rendition worker ended in a panic");
            }
        }
    }

    /// Runs `f`, turning a panic (a bug) into the segment's error: the decoder's state is
    /// unknown, so the next segment opens a new one, and the thread lives.
    fn contained(&mut self, s: &mut SegmentState, f: impl FnOnce(&mut Self, &mut SegmentState)) {
        if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self, s))) {
            self.decoder = None;
            s.intake.fail(TranscodeError::Panic { worker: "decode".into(), message: panic_message(&*p) });
        }
        if let Some(e) = s.intake.error() {
            self.failed.lock().get_or_insert_with(|| e.clone());
        }
    }

    fn drain(&mut self, s: &mut SegmentState) {
        while let Some(ev) = s.intake.poll() {
            match ev {
                IntakeEvent::Layout(tracks) => self.broadcast(|| Work::Tracks(tracks.clone())),
                IntakeEvent::Rate(fps) => self.broadcast(|| Work::Rate(fps)),
                IntakeEvent::Copied(c) => self.broadcast(|| Work::Copied(c.clone())),
                IntakeEvent::Video(unit) => self.video(s, unit),
            }
        }
    }

    /// Sends to every rendition worker; one that is gone is noticed when the segment ends.
    fn broadcast(&self, work: impl Fn() -> Work) {
        for r in &self.renditions {
            r.work.send(work()).ok();
        }
    }

    fn video(&mut self, s: &mut SegmentState, unit: VideoUnit) {
        let decoder = match self.decoder.as_mut() {
            Some(d) => d,
            None => match H264Decoder::new() {
                Ok(d) => self.decoder.insert(d),
                Err(e) => return s.intake.fail(e.into()),
            },
        };
        let started = Instant::now();
        let mut frames = Vec::new();
        let r = decoder.decode_releasing(&unit.data, unit.pts, unit.releases, &mut |f| frames.push(f));
        s.intake.add_decode_time(started.elapsed());
        if let Err(e) = r {
            s.intake.decode_error(e);
        }
        self.deliver(s, frames);
    }

    fn deliver(&self, s: &mut SegmentState, frames: Vec<Frame>) {
        for f in frames {
            s.intake.picture(f.pts, f.width, f.height);
            let f = Arc::new(f);
            self.broadcast(|| Work::Frame(f.clone()));
        }
    }

    /// The end of the input: the last units, then the pictures the decoder still holds.
    fn end_input(&mut self, s: &mut SegmentState) {
        s.intake.end_input();
        self.drain(s);
        if s.intake.error().is_some() {
            return;
        }
        if let Some(decoder) = self.decoder.as_mut() {
            let mut frames = Vec::new();
            let started = Instant::now();
            let r = decoder.flush(&mut |f| frames.push(f));
            s.intake.add_decode_time(started.elapsed());
            if let Err(e) = r {
                s.intake.decode_error(e);
            }
            self.deliver(s, frames);
        }
        // OpenH264 cannot decode after FlushFrame (measured: the next segment's IDR fails with
        // "out of memory" and every later picture with "no SPS/PPS"), so the CPU backend starts
        // each segment with a fresh decoder (about a millisecond); encoders persist.
        self.decoder = None;
    }

    fn end(&mut self, mut s: SegmentState) {
        let result = match s.intake.finish() {
            Err(error) => {
                // Tell every rendition, wait until each has told its sink.
                let mut waits = Vec::new();
                for r in &self.renditions {
                    let (rtx, rrx) = bounded(1);
                    if r.work.send(Work::Abort { error: error.clone(), reply: rtx }).is_ok() {
                        waits.push(rrx);
                    }
                }
                for w in waits {
                    w.recv().ok();
                }
                // The decoder may hold a broken state: start clean next segment.
                self.decoder = None;
                Err(error)
            }
            Ok(report) => self.collect(report),
        };
        // A caller that dropped its segment no longer waits for the answer.
        s.done.send(result).ok();
    }

    fn collect(&mut self, mut report: SegmentReport) -> Result<SegmentReport, TranscodeError> {
        let mut waits = Vec::new();
        for r in &self.renditions {
            let (rtx, rrx) = bounded(1);
            if r.work.send(Work::End { reply: rtx }).is_err() {
                return Err(TranscodeError::WorkerLost { worker: format!("rendition {}", r.name) });
            }
            waits.push((rrx, &r.name));
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
