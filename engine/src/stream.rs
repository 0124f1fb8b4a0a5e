//! Backend-neutral sessions, for callers that pick the backend at run time: the CPU session and
//! the accelerated session both implement these (this file names neither).
#![forbid(unsafe_code)]

use bytes::Bytes;

use crate::error::TranscodeError;
use crate::profile::Ladder;
use crate::sink::RenditionSink;
use crate::stats::SegmentReport;

/// A stream's session on any backend.
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
