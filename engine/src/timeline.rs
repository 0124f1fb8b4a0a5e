//! A segment's timeline: when each stage of the pipeline did what, for finding where a live
//! input's tail goes. Opt-in per segment ([`crate::SegmentOptions::timeline`]): the intake, the
//! rendition workers and the shared back half mark what they do on one clock, and the caller
//! reads the marks when the segment is done. Every backend marks the same stages in the same
//! shared code (intake and rendition output), so timelines compare across backends.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A pipeline stage, in the order a picture goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Bytes handed to the engine (`SegmentInput::push`, the caller's thread); value: bytes.
    Input,
    /// Bytes taken by the intake (the decode thread); value: bytes.
    Intake,
    /// The input ended (`finish`).
    InputEnd,
    /// An access unit out of the intake (demuxed, checked); value: PTS.
    Unit,
    /// A picture out of the decoder, in display order; value: PTS.
    Decoded,
    /// A picture scaled for a rung; value: PTS.
    Scaled,
    /// An access unit out of a rung's encoder; value: PTS.
    Encoded,
    /// TS packets handed to a rung's sink; value: bytes.
    Chunk,
    /// A rung's segment finished (its sink told).
    Finished,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Input => "input",
            Stage::Intake => "intake",
            Stage::InputEnd => "input end",
            Stage::Unit => "access unit",
            Stage::Decoded => "decoded",
            Stage::Scaled => "scaled",
            Stage::Encoded => "encoded",
            Stage::Chunk => "chunk out",
            Stage::Finished => "finished",
        }
    }
}

/// One thing a stage did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Since the timeline's origin.
    pub at: Duration,
    pub stage: Stage,
    /// The rung (ladder index) for per-rung stages.
    pub rung: Option<usize>,
    /// PTS or bytes, as the stage says.
    pub value: i64,
}

/// A segment's marks on one clock. Cheap to clone (shared); compared by identity.
#[derive(Debug, Clone)]
pub struct Timeline(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    origin: Instant,
    marks: Mutex<Vec<Mark>>,
}

impl PartialEq for Timeline {
    fn eq(&self, other: &Timeline) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for Timeline {}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new()
    }
}

impl Timeline {
    /// A timeline whose clock starts now.
    pub fn new() -> Timeline {
        Timeline::starting_at(Instant::now())
    }

    /// A timeline whose clock starts at `origin` (e.g. when the upload started).
    pub fn starting_at(origin: Instant) -> Timeline {
        Timeline(Arc::new(Inner { origin, marks: Mutex::new(Vec::with_capacity(1024)) }))
    }

    pub fn origin(&self) -> Instant {
        self.0.origin
    }

    pub fn mark(&self, stage: Stage, rung: Option<usize>, value: i64) {
        let at = self.0.origin.elapsed();
        self.0.marks.lock().push(Mark { at, stage, rung, value });
    }

    /// Every mark so far, by time.
    pub fn marks(&self) -> Vec<Mark> {
        let mut m = self.0.marks.lock().clone();
        m.sort_by_key(|m| m.at);
        m
    }

    /// Per stage (and rung): how many marks, the first and the last.
    pub fn spans(&self) -> Vec<Span> {
        let mut spans: Vec<Span> = Vec::new();
        for m in self.marks() {
            match spans.iter_mut().find(|s| s.stage == m.stage && s.rung == m.rung) {
                Some(s) => {
                    s.count += 1;
                    s.last = m.at;
                    s.total += m.value;
                }
                None => {
                    spans.push(Span { stage: m.stage, rung: m.rung, count: 1, first: m.at, last: m.at, total: m.value })
                }
            }
        }
        spans.sort_by_key(|s| (s.stage, s.rung));
        spans
    }

    /// The last mark of `stage` (any rung).
    pub fn last(&self, stage: Stage) -> Option<Duration> {
        self.0.marks.lock().iter().filter(|m| m.stage == stage).map(|m| m.at).max()
    }

    /// The first mark of `stage` (any rung).
    pub fn first(&self, stage: Stage) -> Option<Duration> {
        self.0.marks.lock().iter().filter(|m| m.stage == stage).map(|m| m.at).min()
    }

    /// The last rendition byte after the last input byte (`None` before both exist).
    pub fn tail(&self) -> Option<Duration> {
        Some(self.last(Stage::Chunk)?.saturating_sub(self.last(Stage::Input)?))
    }

    /// A table of [`Timeline::spans`], rung stages named by `rungs` (ladder order).
    pub fn table(&self, rungs: &[String]) -> String {
        let mut s = format!("{:<12} {:<6} {:>6} {:>9} {:>9}\n", "stage", "rung", "count", "first ms", "last ms");
        for sp in self.spans() {
            let rung = sp.rung.map_or("", |r| rungs.get(r).map_or("?", String::as_str));
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let _ = writeln!(
                s,
                "{:<12} {rung:<6} {:>6} {:>9.1} {:>9.1}",
                sp.stage.name(),
                sp.count,
                ms(sp.first),
                ms(sp.last)
            );
        }
        s
    }
}

/// A stage's marks, summed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub stage: Stage,
    pub rung: Option<usize>,
    pub count: usize,
    pub first: Duration,
    pub last: Duration,
    /// The values added up (bytes for byte stages).
    pub total: i64,
}

/// Marks on an optional timeline: what the pipeline holds, so that a segment without one costs
/// a branch.
pub(crate) fn mark(t: &Option<Timeline>, stage: Stage, rung: Option<usize>, value: i64) {
    if let Some(t) = t {
        t.mark(stage, rung, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_count_and_bound_each_stage_per_rung() {
        let t = Timeline::new();
        t.mark(Stage::Input, None, 100);
        t.mark(Stage::Chunk, Some(1), 188);
        t.mark(Stage::Input, None, 50);
        t.mark(Stage::Chunk, Some(0), 376);
        t.mark(Stage::Chunk, Some(1), 188);
        let spans = t.spans();
        let input = spans.iter().find(|s| s.stage == Stage::Input).expect("input");
        assert_eq!((input.count, input.total), (2, 150));
        let r1 = spans.iter().find(|s| s.stage == Stage::Chunk && s.rung == Some(1)).expect("rung 1");
        assert_eq!((r1.count, r1.total), (2, 376));
        assert!(r1.first <= r1.last);
        assert_eq!(spans.len(), 3);
        assert!(t.tail().is_some());
        assert!(t.table(&["a".into(), "b".into()]).contains("chunk out    b"));
    }
}
