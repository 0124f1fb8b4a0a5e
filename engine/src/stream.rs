//! Backend-neutral sessions, for callers that pick the backend at run time: the CPU session and
//! the accelerated session both implement these (this file names neither).
#![forbid(unsafe_code)]

use std::time::Duration;

use bytes::Bytes;

use crate::error::TranscodeError;
use crate::profile::Ladder;
use crate::sink::Sinks;
use crate::stats::SegmentReport;
use crate::timeline::Timeline;

/// A part of a segment to keep (Livepeer's segment slicing): the pictures from `from` after the
/// segment's first picture up to `to` after it (inclusive; `None`: to the end), by PTS. The first
/// picture kept is a keyframe; copied streams (audio) are cut to the same span. Timestamps are
/// kept as they are (not moved to start at zero), so a clip still lines up with its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clip {
    pub from: Duration,
    pub to: Option<Duration>,
}

/// What a segment is asked for beyond its ladder.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SegmentOptions {
    /// `None`: the whole segment.
    pub clip: Option<Clip>,
    /// Where the pipeline marks what each stage does, and when (`None`: nowhere).
    pub timeline: Option<Timeline>,
}

/// A stream's session on any backend.
pub trait StreamSession: Send {
    fn ladder(&self) -> &Ladder;
    /// Starts a segment (one sink per rendition, in ladder order).
    fn begin_segment(&mut self, sinks: Sinks) -> Result<Box<dyn SegmentInput + '_>, TranscodeError> {
        self.begin_segment_with(sinks, SegmentOptions::default())
    }
    /// Starts a segment with `options`; every backend honours every option.
    fn begin_segment_with(
        &mut self,
        sinks: Sinks,
        options: SegmentOptions,
    ) -> Result<Box<dyn SegmentInput + '_>, TranscodeError>;
    /// What runs it: "cpu", "cuda:0", ...
    fn backend(&self) -> String;

    /// Transcodes a whole segment held in memory, pushed in network-sized pieces so that
    /// decoding overlaps with the (simulated) arrival, as a segment arriving over the network.
    fn transcode(&mut self, data: Bytes, sinks: Sinks) -> Result<SegmentReport, TranscodeError> {
        const PIECE: usize = 64 * 1024;
        let mut seg = self.begin_segment(sinks)?;
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

/// A segment in progress on a [`StreamSession`]. Dropping it without `finish` abandons it.
pub trait SegmentInput {
    fn push(&mut self, data: Bytes) -> Result<(), TranscodeError>;
    fn finish(self: Box<Self>) -> Result<SegmentReport, TranscodeError>;
}
