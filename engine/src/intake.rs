//! The front half of every segment, once: bytes -> demux -> program -> SPS checks -> access units
//! with PTS -> verdict. Sans-IO: [`Intake::push`] takes bytes, [`Intake::poll`] gives what the
//! pipelines act on, [`Intake::picture`] counts what the decoder made of it, and
//! [`Intake::finish`] says whether the segment can stand. The CPU session, the accelerated
//! session and `probe` all run it; none of them demuxes or judges a segment itself.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::CodecError;
use crate::error::TranscodeError;
use crate::h264::{SpsInfo, Unsupported, inspect_access_unit};
use crate::stats::{InputInfo, SegmentReport};
use crate::timeline::{Stage, Timeline, mark};
use crate::ts::{AudioTrack, DemuxEvent, Demuxer, Pes, ProgramInfo, TICKS_PER_SECOND, Unwrapper, stream_type};

/// PTS step for a video access unit that carries none, when the frame rate is not known yet.
pub const DEFAULT_FRAME_TICKS: i64 = 3000;

/// One video access unit, checked, on the extended (unwrapped) 90 kHz timeline.
#[derive(Debug, Clone)]
pub struct VideoUnit {
    pub data: Bytes,
    pub pts: i64,
    /// The unit carries a picture (not only parameter sets or SEI).
    pub has_picture: bool,
    pub idr: bool,
    /// No picture decoded later comes before this unit's in output order, and the decoder may
    /// hand its pictures out at once instead of holding them to look for an earlier one: the
    /// segment's first picture (an IDR), or any picture of a stream whose SPS says it does not
    /// reorder. Not a later IDR of a stream with B-frames: OpenH264, flushed there, fails the
    /// pictures after it ("out of memory"; measured on the 1080p fixture, GOP 30).
    pub releases: bool,
}

/// A copied (non-video) PES, to be muxed unchanged into every rendition.
#[derive(Debug, Clone)]
pub struct CopiedPes {
    /// The stream's index in [`IntakeEvent::Layout`].
    pub index: usize,
    pub pes: Arc<Pes>,
    /// PTS on the extended timeline.
    pub ext_pts: Option<i64>,
}

/// What the pipelines act on, in stream order.
#[derive(Debug, Clone)]
pub enum IntakeEvent {
    /// The program's copied streams, once per segment (a PMT change mid-segment keeps the first
    /// layout).
    Layout(Vec<AudioTrack>),
    /// The frame rate the segment's first SPS declares (VUI timing), before its first unit:
    /// encoders can be set for it from the first picture on, not from the second.
    Rate(f64),
    Video(VideoUnit),
    Copied(CopiedPes),
}

/// A segment's front half. See the module documentation.
#[derive(Debug)]
pub struct Intake {
    demux: Demuxer,
    video_pid: Option<u16>,
    tracks: HashMap<u16, usize>,
    unwrap: HashMap<u16, Unwrapper>,
    last_au_pts: Option<i64>,
    sps: Option<SpsInfo>,
    /// A unit held back for one poll while the [`IntakeEvent::Rate`] before it goes out.
    held: Option<VideoUnit>,
    idr_units: u64,
    report: SegmentReport,
    error: Option<TranscodeError>,
    first_decode_error: Option<CodecError>,
    input_ended: bool,
    started: Instant,
    timeline: Option<Timeline>,
}

impl Default for Intake {
    fn default() -> Self {
        Intake::new()
    }
}

impl Intake {
    pub fn new() -> Intake {
        Intake::with_timeline(None)
    }

    /// An intake that marks what it takes and gives on `timeline`.
    pub fn with_timeline(timeline: Option<Timeline>) -> Intake {
        Intake {
            demux: Demuxer::new(),
            video_pid: None,
            tracks: HashMap::new(),
            unwrap: HashMap::new(),
            last_au_pts: None,
            sps: None,
            held: None,
            idr_units: 0,
            report: SegmentReport::default(),
            error: None,
            first_decode_error: None,
            input_ended: false,
            started: Instant::now(),
            timeline,
        }
    }

    /// The segment's timeline, if it has one.
    pub fn timeline(&self) -> Option<&Timeline> {
        self.timeline.as_ref()
    }

    /// When the segment started (its first byte was expected).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The next bytes of the segment (ignored once it has failed).
    pub fn push(&mut self, data: &[u8]) {
        if self.error.is_none() && !self.input_ended {
            mark(&self.timeline, Stage::Intake, None, data.len() as i64);
            self.demux.push(data);
        }
    }

    /// The end of the input: a truncated last packet or a missing program fails the segment.
    /// The demuxer completes what it holds even when the segment has already failed, so its
    /// counts ([`Intake::demuxer`]) cover every byte that was pushed.
    pub fn end_input(&mut self) {
        if self.input_ended {
            return;
        }
        self.input_ended = true;
        if let Err(e) = self.demux.finish() {
            self.fail(e.into()); // the first failure stays
        }
    }

    /// The next event, or `None` when more bytes are needed or the segment has failed.
    pub fn poll(&mut self) -> Option<IntakeEvent> {
        if let Some(unit) = self.held.take() {
            return Some(IntakeEvent::Video(unit));
        }
        while self.error.is_none() {
            match self.demux.poll()? {
                DemuxEvent::Program(p) => {
                    if self.video_pid.is_some() {
                        continue; // a PMT version change mid-segment keeps the first layout
                    }
                    match program_layout(&p) {
                        Ok((video, pids, tracks)) => {
                            self.video_pid = Some(video);
                            self.tracks = pids;
                            return Some(IntakeEvent::Layout(tracks));
                        }
                        Err(e) => self.fail(e),
                    }
                }
                DemuxEvent::Pes(pes) => {
                    if Some(pes.pid) == self.video_pid {
                        let first_sps = self.sps.is_none();
                        if let Some(unit) = self.video(pes) {
                            // The segment's first SPS declares a rate: say it before the unit.
                            if let Some(fps) = self.sps.as_ref().and_then(|s| s.fps).filter(|_| first_sps) {
                                self.held = Some(unit);
                                return Some(IntakeEvent::Rate(fps));
                            }
                            return Some(IntakeEvent::Video(unit));
                        }
                    } else if let Some(&index) = self.tracks.get(&pes.pid) {
                        let ext_pts = pes.pts.map(|p| self.unwrap.entry(pes.pid).or_default().unwrap(p));
                        return Some(IntakeEvent::Copied(CopiedPes { index, pes: Arc::new(pes), ext_pts }));
                    }
                }
            }
        }
        None
    }

    fn video(&mut self, pes: Pes) -> Option<VideoUnit> {
        let info = inspect_access_unit(&pes.payload);
        match info.sps {
            Some(Ok(sps)) => {
                let supported = sps.check_supported();
                self.sps.get_or_insert_with(|| sps.clone());
                if let Err(e) = supported {
                    self.fail(e.into());
                    return None;
                }
                if self.report.input.width == 0 {
                    self.report.input = InputInfo {
                        width: sps.width,
                        height: sps.height,
                        profile: sps.profile_name().to_string(),
                        level_idc: sps.level_idc,
                        fps: sps.fps.unwrap_or(0.0),
                    };
                }
            }
            Some(Err(e)) => {
                self.fail(e.into());
                return None;
            }
            None => {}
        }
        let pts = match pes.pts {
            Some(p) => self.unwrap.entry(pes.pid).or_default().unwrap(p),
            // No PTS: one frame after the previous unit.
            None => self.last_au_pts.map_or(0, |p| p + DEFAULT_FRAME_TICKS),
        };
        self.last_au_pts = Some(pts);
        self.report.access_units += u64::from(info.has_picture);
        self.idr_units += u64::from(info.idr);
        mark(&self.timeline, Stage::Unit, None, pts);
        let in_order = self.sps.as_ref().is_some_and(|s| s.reorder_frames == Some(0));
        // The segment's first picture is its IDR: nothing can come before it.
        let first = self.report.access_units == u64::from(info.has_picture);
        Some(VideoUnit {
            data: pes.payload,
            pts,
            has_picture: info.has_picture,
            idr: info.idr,
            releases: info.has_picture && (in_order || (info.idr && first)),
        })
    }

    /// The decoder made a picture of `width` x `height` at `pts`.
    pub fn picture(&mut self, pts: i64, width: u32, height: u32) {
        mark(&self.timeline, Stage::Decoded, None, pts);
        let r = &mut self.report;
        r.first_picture_after.get_or_insert_with(|| self.started.elapsed());
        r.frames_decoded += 1;
        r.first_pts = Some(r.first_pts.map_or(pts, |p| p.min(pts)));
        r.last_pts = Some(r.last_pts.map_or(pts, |p| p.max(pts)));
        if r.input.width == 0 {
            r.input.width = width;
            r.input.height = height;
        }
    }

    /// Time spent decoding (the caller measures it around its decoder).
    pub fn add_decode_time(&mut self, d: Duration) {
        self.report.decode_time += d;
    }

    /// The decoder refused a unit. Not fatal by itself: the verdict at the end says whether the
    /// pictures that came out are enough, and names this first error.
    pub fn decode_error(&mut self, e: CodecError) {
        self.first_decode_error.get_or_insert(e);
    }

    /// Fails the segment (the first failure stays).
    pub fn fail(&mut self, e: TranscodeError) {
        self.error.get_or_insert(e);
    }

    pub fn error(&self) -> Option<&TranscodeError> {
        self.error.as_ref()
    }

    /// The demuxer: the program and what it saw of each stream (every byte pushed before a
    /// failure is demuxed).
    pub fn demuxer(&self) -> &Demuxer {
        &self.demux
    }

    /// The first SPS seen.
    pub fn sps(&self) -> Option<&SpsInfo> {
        self.sps.as_ref()
    }

    /// Video access units with an IDR picture.
    pub fn idr_units(&self) -> u64 {
        self.idr_units
    }

    /// The segment's report so far (counters grow as events are polled and pictures counted).
    pub fn report(&self) -> &SegmentReport {
        &self.report
    }

    /// The end of decoding: the verdict (no video, no picture, or fewer pictures than access
    /// units fail the segment, since renditions would be incomplete), timing filled in. Call
    /// after [`Intake::end_input`], polling every event and counting every flushed picture.
    pub fn finish(&mut self) -> Result<SegmentReport, TranscodeError> {
        self.end_input();
        if self.error.is_none()
            && let Some(e) = verdict(&self.report, self.video_pid.is_some(), self.first_decode_error.clone())
        {
            self.fail(e);
        }
        self.close()
    }

    /// The report and the error as they stand, without judging (an abandoned segment).
    pub fn close(&mut self) -> Result<SegmentReport, TranscodeError> {
        let mut report = self.report.clone();
        report.demux = self.demux.stats().clone();
        fill_timing(&mut report);
        match self.error.clone() {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

/// A program as the pipelines use it: the video PID, the copied streams' PIDs -> track index,
/// and the copied streams' layout for the muxer.
type ProgramLayout = (u16, HashMap<u16, usize>, Vec<AudioTrack>);

/// The program's layout, or why it cannot be transcoded.
fn program_layout(p: &ProgramInfo) -> Result<ProgramLayout, TranscodeError> {
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
fn verdict(r: &SegmentReport, video_seen: bool, first_error: Option<CodecError>) -> Option<TranscodeError> {
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
fn fill_timing(r: &mut SegmentReport) {
    if let (Some(a), Some(b)) = (r.first_pts, r.last_pts) {
        let frame = if r.frames_decoded > 1 {
            (b - a) as f64 / (r.frames_decoded - 1) as f64
        } else {
            DEFAULT_FRAME_TICKS as f64
        };
        if r.input.fps == 0.0 && frame > 0.0 {
            r.input.fps = TICKS_PER_SECOND as f64 / frame;
        }
        r.media_duration = Duration::from_secs_f64(((b - a) as f64 + frame).max(0.0) / TICKS_PER_SECOND as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Every event of a whole segment, and the intake after `end_input`.
    fn run(data: &[u8], piece: usize) -> (Vec<IntakeEvent>, Intake) {
        let mut intake = Intake::new();
        let mut events = Vec::new();
        for chunk in data.chunks(piece.max(1)) {
            intake.push(chunk);
            while let Some(ev) = intake.poll() {
                events.push(ev);
            }
        }
        intake.end_input();
        while let Some(ev) = intake.poll() {
            events.push(ev);
        }
        (events, intake)
    }

    #[test]
    fn a_segment_gives_its_layout_first_then_units_in_order_whatever_the_chunking() {
        let data = fixture("h264_720p30_main_slices_aac.ts");
        let (whole, intake) = run(&data, data.len());
        assert!(matches!(whole.first(), Some(IntakeEvent::Layout(t)) if t.len() == 1), "layout first, one audio track");
        let pts: Vec<i64> =
            whole.iter().filter_map(|e| if let IntakeEvent::Video(v) = e { Some(v.pts) } else { None }).collect();
        assert_eq!(pts.len() as u64, intake.report().access_units);
        assert!(intake.idr_units() >= 1);
        assert_eq!(intake.sps().map(|s| (s.width, s.height)), Some((1280, 720)));
        let (small, _) = run(&data, 1000);
        assert_eq!(whole.len(), small.len(), "chunking changes nothing");
    }

    #[test]
    fn the_rate_the_sps_declares_comes_once_right_before_the_first_unit() {
        for (name, fps) in [("h264_360p25_grain.ts", 25.0), ("h264_360p60_grain.ts", 60.0)] {
            let data = fixture(name);
            let (events, _) = run(&data, 1000);
            let rates: Vec<usize> = (0..events.len()).filter(|&i| matches!(events[i], IntakeEvent::Rate(_))).collect();
            assert_eq!(rates.len(), 1, "{name}: once per segment");
            let i = rates[0];
            assert!(matches!(events[i], IntakeEvent::Rate(r) if (r - fps).abs() < 1e-6), "{name}: {:?}", events[i]);
            let first_video = events.iter().position(|e| matches!(e, IntakeEvent::Video(_)));
            assert_eq!(first_video, Some(i + 1), "{name}: right before the first unit");
        }
    }

    #[test]
    fn the_verdict_counts_pictures_against_units() {
        let data = fixture("h264_360p25_baseline_noaudio.ts");
        let (events, mut intake) = run(&data, 4096);
        let units: Vec<&VideoUnit> =
            events.iter().filter_map(|e| if let IntakeEvent::Video(v) = e { Some(v) } else { None }).collect();
        // One picture short: the renditions would be incomplete.
        for v in units.iter().filter(|v| v.has_picture).skip(1) {
            intake.picture(v.pts, 640, 360);
        }
        assert!(matches!(intake.finish(), Err(TranscodeError::FramesLost { .. })));
    }

    #[test]
    fn no_pictures_and_no_video_are_named() {
        let (_, mut intake) = run(&fixture("h264_360p25_baseline_noaudio.ts"), 4096);
        assert!(matches!(intake.finish(), Err(TranscodeError::NoPictures { .. })));
        let (events, mut intake) = run(&fixture("audio_only.ts"), 4096);
        assert!(events.is_empty());
        assert_eq!(intake.finish().map(|_| ()).expect_err("no video").code(), "no_video");
        let (_, mut intake) = run(&fixture("hevc_320x240.ts"), 4096);
        assert_eq!(intake.finish().map(|_| ()).expect_err("hevc").code(), "unsupported_codec");
    }

    #[test]
    fn a_unit_without_pts_follows_the_previous_one() {
        let mut intake = Intake::new();
        let pes = |pts| Pes {
            pid: 256,
            stream_id: 0xE0,
            pts,
            dts: None,
            random_access: false,
            damaged: false,
            payload: Bytes::from_static(&[0, 0, 0, 1, 0x09, 0xF0]),
        };
        intake.video_pid = Some(256);
        assert_eq!(intake.video(pes(Some(9000))).map(|v| v.pts), Some(9000));
        assert_eq!(intake.video(pes(None)).map(|v| v.pts), Some(9000 + DEFAULT_FRAME_TICKS));
    }
}
