//! The back half of every segment, once: for each rendition, the cadence decides which pictures
//! it keeps (and which become keyframes), encoded access units are muxed with the copied streams
//! interleaved, stats are counted, and whole TS packets go to the sink as soon as they exist.
//! The CPU rendition workers and the accelerated session both drive a [`RenditionOutput`]; they
//! differ only in who scales and encodes. A segment's clip ([`Clip`]) is applied here too, before
//! the cadence, so every backend clips the same way.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cadence::{Cadence, Decision};
use crate::error::{TranscodeError, panic_message};
use crate::intake::CopiedPes;
use crate::profile::Profile;
use crate::sink::RenditionSink;
use crate::stats::RenditionStats;
use crate::stream::{Clip, SegmentOptions};
use crate::timeline::{Stage, Timeline, mark};
use crate::ts::{AudioTrack, Muxer, MuxerConfig, TICKS_PER_SECOND, wrap33};

const CHUNK_CAPACITY: usize = 64 * 1024;

/// What a rendition keeps across a stream's segments: its profile, its cadence (keyframe grid,
/// frame-rate reduction) and its muxer (continuity counters carry on).
#[derive(Debug)]
pub(crate) struct Rendition {
    pub(crate) profile: Profile,
    pub(crate) cadence: Cadence,
    muxer: Option<Muxer>,
}

impl Rendition {
    pub(crate) fn new(profile: Profile) -> Rendition {
        Rendition { cadence: Cadence::new(&profile), profile, muxer: None }
    }

    /// Forgets the muxer (after a panic its state is unknown).
    pub(crate) fn reset_muxer(&mut self) {
        self.muxer = None;
    }

    /// A panic caught while this rendition was being worked on: its muxer is forgotten and the
    /// segment's error names the rendition.
    pub(crate) fn panicked(&mut self, p: &(dyn std::any::Any + Send)) -> TranscodeError {
        self.reset_muxer();
        TranscodeError::Panic { worker: format!("rendition {}", self.profile.name), message: panic_message(p) }
    }

    /// The muxer for `tracks` (a new one when the program's copied streams changed).
    fn muxer_for(&mut self, tracks: &[AudioTrack]) -> &mut Muxer {
        if self.muxer.as_ref().is_none_or(|m| m.config().tracks != tracks) {
            self.muxer = Some(Muxer::new(MuxerConfig { tracks: tracks.to_vec() }));
        }
        self.muxer.as_mut().expect("just set")
    }
}

/// One rendition's output for one segment.
pub(crate) struct RenditionOutput {
    sink: Box<dyn RenditionSink>,
    tracks: Vec<AudioTrack>,
    /// Copied PES waiting for the video to reach their time.
    pending: VecDeque<CopiedPes>,
    /// Copied PES set aside for kept pictures not yet muxed, in order.
    set_aside: VecDeque<CopiedPes>,
    /// Per kept picture not yet muxed: its PTS and how many of `set_aside` (from the front) were
    /// due by it when it was kept, muxed right before its access unit.
    due: VecDeque<(i64, usize)>,
    pub(crate) stats: RenditionStats,
    /// No picture kept yet in this segment: the next kept one is an IDR.
    first: bool,
    /// The part of the segment to keep (`None`: all of it).
    clip: Option<Clip>,
    /// The PTS of the segment's first picture offered here: where the clip is counted from.
    start: Option<i64>,
    started: Instant,
    out: Vec<u8>,
    /// Its index in the ladder, for the timeline's marks.
    rung: usize,
    timeline: Option<Timeline>,
}

impl std::fmt::Debug for RenditionOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenditionOutput").field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl RenditionOutput {
    /// Rung `rung` of the ladder; `options`: the part of the segment to keep and where to mark
    /// what is done.
    pub(crate) fn new(
        name: &str,
        rung: usize,
        sink: Box<dyn RenditionSink>,
        started: Instant,
        options: &SegmentOptions,
    ) -> RenditionOutput {
        RenditionOutput {
            sink,
            tracks: Vec::new(),
            pending: VecDeque::new(),
            set_aside: VecDeque::new(),
            due: VecDeque::new(),
            stats: RenditionStats { name: name.to_string(), ..Default::default() },
            first: true,
            clip: options.clip,
            start: None,
            started,
            out: Vec::with_capacity(CHUNK_CAPACITY),
            rung,
            timeline: options.timeline.clone(),
        }
    }

    /// Marks `stage` for this rung on the segment's timeline, if it has one.
    pub(crate) fn mark(&self, stage: Stage, value: i64) {
        mark(&self.timeline, stage, Some(self.rung), value);
    }

    /// The program's copied streams.
    pub(crate) fn set_tracks(&mut self, tracks: Vec<AudioTrack>) {
        self.tracks = tracks;
    }

    /// A copied PES, muxed once the video reaches its time.
    pub(crate) fn copy(&mut self, pes: CopiedPes) {
        self.pending.push_back(pes);
    }

    /// Whether the rendition keeps the picture at `pts`, and as a keyframe or not. The
    /// segment's first kept picture is decided here, at submission: asynchronous encoders
    /// answer later, and the decision cannot wait for them. The copied PES due by a kept
    /// picture's time are set aside with it here and muxed just before its access unit, so the
    /// output depends on the input alone, not on when an asynchronous encoder answers.
    ///
    /// A picture outside the segment's clip is dropped before the cadence sees it (so the first
    /// picture inside is the segment's first kept one, an IDR), and so is a copied PES whose time
    /// is outside it.
    pub(crate) fn keep(&mut self, rendition: &mut Rendition, pts: i64) -> Option<bool> {
        self.stats.frames_in += 1;
        let span = self.span(pts);
        if !span.holds(pts) {
            self.stats.frames_clipped += 1;
            return None;
        }
        match rendition.cadence.decide(pts, self.first) {
            Decision::Drop => {
                self.stats.frames_dropped += 1;
                None
            }
            Decision::Keep { keyframe } => {
                self.first = false;
                let mut due = 0;
                while self.pending.front().is_some_and(|c| c.ext_pts.is_none_or(|p| p <= pts)) {
                    let c = self.pending.pop_front().expect("front exists");
                    if span.holds_copied(&c) {
                        self.set_aside.push_back(c);
                        due += 1;
                    }
                }
                self.due.push_back((pts, due));
                Some(keyframe)
            }
        }
    }

    /// The size pictures are encoded at.
    pub(crate) fn set_size(&mut self, width: u32, height: u32) {
        self.stats.width = width;
        self.stats.height = height;
    }

    /// Muxes one encoded access unit (the copied PES due by its time went out when it was kept).
    pub(crate) fn mux(&mut self, rendition: &mut Rendition, data: &[u8], pts: i64, keyframe: bool) {
        self.mark(Stage::Encoded, pts);
        let t = Instant::now();
        let muxer = rendition.muxer_for(&self.tracks);
        while self.due.front().is_some_and(|(p, _)| *p <= pts) {
            let (_, due) = self.due.pop_front().expect("front exists");
            self.stats.copied_pes += write_copied(muxer, self.set_aside.drain(..due), &mut self.out);
        }
        let pts33 = wrap33(pts);
        muxer.write_video(data, pts33, pts33, keyframe, &mut self.out);
        if keyframe {
            self.stats.keyframes += 1;
            self.stats.keyframe_pts.push(pts);
        }
        self.stats.video_bytes += data.len() as u64;
        self.stats.frames_out += 1;
        self.stats.mux_time += t.elapsed();
    }

    /// Hands what is muxed so far to the sink.
    pub(crate) fn emit(&mut self) -> Result<(), TranscodeError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.out, Vec::with_capacity(CHUNK_CAPACITY)));
        self.stats.first_chunk_after.get_or_insert_with(|| self.started.elapsed());
        self.stats.ts_bytes += chunk.len() as u64;
        self.stats.chunks += 1;
        self.mark(Stage::Chunk, chunk.len() as i64);
        let r = self.sink.chunk(chunk);
        r.map_err(|e| self.sink_error(e))
    }

    /// The end of the segment: the remaining copied PES, the last chunk, the sink told. On a
    /// sink failure the sink is told that instead.
    ///
    /// A clip that kept no picture fails the segment ([`TranscodeError::EmptyClip`]).
    pub(crate) fn finish(mut self, rendition: &mut Rendition) -> Result<RenditionStats, TranscodeError> {
        if let Some(clip) = self.clip
            && self.first
        {
            let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            let e = TranscodeError::EmptyClip { from_ms: ms(clip.from), to_ms: clip.to.map(ms) };
            self.sink.fail(&e);
            return Err(e);
        }
        let muxer = rendition.muxer_for(&self.tracks);
        self.due.clear();
        // Set aside: already checked against the clip when their picture was kept.
        let span = self.start.map_or(Span::ALL, |s| self.span(s));
        let rest = self.set_aside.drain(..).chain(self.pending.drain(..).filter(|c| span.holds_copied(c)));
        self.stats.copied_pes += write_copied(muxer, rest, &mut self.out);
        let r = self.emit().and_then(|()| {
            let r = self.sink.finish(&self.stats);
            r.map_err(|e| self.sink_error(e))
        });
        self.mark(Stage::Finished, 0);
        match r {
            Ok(()) => Ok(self.stats),
            Err(e) => {
                self.sink.fail(&e);
                Err(e)
            }
        }
    }

    /// The segment failed: the sink is told; what it got is incomplete.
    pub(crate) fn fail(mut self, e: &TranscodeError) {
        self.sink.fail(e);
    }

    fn sink_error(&self, e: std::io::Error) -> TranscodeError {
        TranscodeError::Sink { rendition: self.stats.name.clone(), message: e.to_string() }
    }

    /// The PTS span the clip keeps, counted from the segment's first picture (`pts` when this is
    /// the first).
    fn span(&mut self, pts: i64) -> Span {
        let start = *self.start.get_or_insert(pts);
        match self.clip {
            None => Span::ALL,
            // A clip from 0 has no lower bound (LPMS's `clip_from` of 0 is "not set"), so the
            // copied streams' packets stamped before the first picture stay.
            Some(c) => Span {
                from: if c.from.is_zero() { i64::MIN } else { start.saturating_add(ticks(c.from)) },
                to: c.to.map_or(i64::MAX, |t| start.saturating_add(ticks(t))),
            },
        }
    }
}

/// A span of the extended 90 kHz timeline, both ends included.
#[derive(Debug, Clone, Copy)]
struct Span {
    from: i64,
    to: i64,
}

impl Span {
    const ALL: Span = Span { from: i64::MIN, to: i64::MAX };

    fn holds(self, pts: i64) -> bool {
        self.from <= pts && pts <= self.to
    }

    /// A copied PES without a timestamp goes with the video, as without a clip.
    fn holds_copied(self, c: &CopiedPes) -> bool {
        c.ext_pts.is_none_or(|p| self.holds(p))
    }
}

/// `d` in 90 kHz ticks (rounded down; saturating).
fn ticks(d: Duration) -> i64 {
    i64::try_from(d.as_nanos() * u128::from(TICKS_PER_SECOND) / 1_000_000_000).unwrap_or(i64::MAX)
}

/// Writes copied PES in order; returns how many.
fn write_copied(muxer: &mut Muxer, copied: impl IntoIterator<Item = CopiedPes>, out: &mut Vec<u8>) -> u64 {
    let mut n = 0;
    for c in copied {
        muxer.write_track(c.index, c.pes.stream_id, c.pes.pts, c.pes.dts, &c.pes.payload, out);
        n += 1;
    }
    n
}

#[cfg(test)]
mod clip_tests;
