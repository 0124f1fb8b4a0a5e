//! Where a rendition's bytes go: the [`RenditionSink`] trait and the two sinks the engine ships
//! (in memory, and down a channel to a consumer on another thread).
#![forbid(unsafe_code)]

use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::Sender;
use parking_lot::Mutex;

use crate::error::TranscodeError;
use crate::stats::RenditionStats;

/// One sink per rendition of a ladder, in ladder order: where a segment's renditions go.
pub type Sinks = Vec<Box<dyn RenditionSink>>;

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
    /// `n` memory sinks (one per rendition) and the same sinks boxed for a segment: keep the
    /// first to read what the segment wrote.
    pub fn ladder(n: usize) -> (Vec<MemorySink>, Sinks) {
        let kept: Vec<MemorySink> = (0..n).map(|_| MemorySink::new()).collect();
        let boxed = kept.iter().map(|s| Box::new(s.clone()) as Box<dyn RenditionSink>).collect();
        (kept, boxed)
    }
}

impl RenditionSink for MemorySink {
    fn chunk(&mut self, data: Bytes) -> std::io::Result<()> {
        self.0.lock().extend_from_slice(&data);
        Ok(())
    }
}

/// What a channel sink hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum RenditionEvent {
    Chunk(Bytes),
    Done(RenditionStats),
    Failed(String),
}

/// Sends a rendition's chunks down a channel to a consumer on another thread, which sees each
/// chunk as soon as it is muxed. A consumer that hung up fails the rendition (`BrokenPipe`).
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
        // A consumer that hung up has nothing left to tell.
        self.0.send(RenditionEvent::Failed(error.to_string())).ok();
    }
}
