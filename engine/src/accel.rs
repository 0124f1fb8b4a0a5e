//! The accelerated ladder: a segment decoded, scaled and encoded on a device, with the same TS
//! demux, input checks, keyframe/frame-rate [`Cadence`] and muxer around it as the CPU session.
//!
//! ```text
//!  push(Bytes) ─► demux ─► inspect (SPS checks) ─► device.decode ──► one fused scale per picture
//!                   └─ copied PES ─┐                                 (every rung, device memory)
//!                                  ▼                                         │
//!  sink ◄─ mux ◄─ access units ◄─ device.encode(rung, surface) ◄─ cadence ◄─┘
//! ```
//!
//! [`LadderDevice`] is the boundary: on NVIDIA it is NVDEC -> the `kernels/` ladder kernel ->
//! NVENC (`cuda::ladder_device`, feature `cuda`), where pictures never leave device memory and
//! only bitstreams cross the bus — [`DeviceTraffic`] counts both so a run proves it. Everything
//! above the boundary is plain Rust and runs in `cargo test` against an emulated device (the
//! CPU codec plus the kernel compiled for the CPU: a test double of the driver, named as such).
//! One thread drives a segment: the device works asynchronously on its own streams and engines.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::cadence::{Cadence, Decision};
use crate::error::TranscodeError;
use crate::h264::inspect_access_unit;
use crate::profile::{Ladder, Profile};
use crate::session::{PendingPes, RenditionSink, muxer_for, write_pending};
use crate::stats::{InputInfo, RenditionStats, SegmentReport};
use crate::ts::{AudioTrack, DemuxEvent, Demuxer, Muxer, Pes, Unwrapper, wrap33};

/// A device failure: the API that failed and its status, with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{api} failed: {message}")]
pub struct DeviceError {
    /// Stable code (`gpu_session_limit`, `gpu_unsupported`, `gpu_error`, ...).
    pub code: &'static str,
    pub api: String,
    pub message: String,
}

/// One decoded picture, scaled: rung `i` of the ladder is in the device's surface
/// `surfaces[i]` of that rung's pool, until encoded or released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePicture {
    pub pts: i64,
    pub width: u32,
    pub height: u32,
    pub surfaces: Vec<usize>,
}

/// What one rung's encoder makes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RungSettings {
    pub width: u32,
    pub height: u32,
    pub bitrate: u32,
    pub fps: f64,
}

/// One encoded access unit (Annex B), copied to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAu {
    pub data: Vec<u8>,
    pub pts: i64,
    pub keyframe: bool,
}

/// Bytes that crossed between host and device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceTraffic {
    /// Compressed input handed to the decoder.
    pub bitstream_in: u64,
    /// Encoded output read back.
    pub bitstream_out: u64,
    /// Picture bytes copied host<->device: 0 on the zero-copy path.
    pub frame_bytes: u64,
}

/// Decode, scale and encode on a device. Surfaces are per rung; `decode` fills one of each
/// rung's surfaces per picture and `encode` or `release` gives it back.
pub trait LadderDevice: Send {
    /// Feeds one access unit with its PTS; returns the pictures it completed, each already scaled
    /// into every rung size of `rungs` (one per picture: sizes may follow the picture's size).
    fn decode(
        &mut self,
        au: &[u8],
        pts: i64,
        rungs: &dyn Fn(u32, u32) -> Vec<(u32, u32)>,
    ) -> Result<Vec<DevicePicture>, DeviceError>;
    /// End of the segment's input: the pictures the decoder still holds.
    fn flush(&mut self, rungs: &dyn Fn(u32, u32) -> Vec<(u32, u32)>) -> Result<Vec<DevicePicture>, DeviceError>;
    /// Encodes surface `surface` of rung `rung` (an IDR when `keyframe`); returns the access
    /// units that became ready, in order. The surface is free again afterwards.
    fn encode(
        &mut self,
        rung: usize,
        surface: usize,
        pts: i64,
        keyframe: bool,
        settings: &RungSettings,
    ) -> Result<Vec<DeviceAu>, DeviceError>;
    /// Gives a surface back unencoded (the cadence dropped the picture for this rung).
    fn release(&mut self, rung: usize, surface: usize);
    /// End of the segment for `rung`: everything its encoder still holds.
    fn finish(&mut self, rung: usize) -> Result<Vec<DeviceAu>, DeviceError>;
    /// Totals since the device was opened.
    fn traffic(&self) -> DeviceTraffic;
    /// For logs and stats: "cuda:0 NVIDIA H100", "emulated".
    fn describe(&self) -> String;
}

impl From<DeviceError> for TranscodeError {
    fn from(e: DeviceError) -> TranscodeError {
        TranscodeError::Device { code: e.code, api: e.api, message: e.message }
    }
}

/// One rendition's state across segments.
struct Rung {
    profile: Profile,
    cadence: Cadence,
    muxer: Option<Muxer>,
}

/// A stream's session on a device: decoder and encoders persist across its segments.
pub struct AccelSession<D: LadderDevice> {
    device: D,
    ladder: Ladder,
    rungs: Vec<Rung>,
}

impl<D: LadderDevice> std::fmt::Debug for AccelSession<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccelSession").field("device", &self.device.describe()).field("ladder", &self.ladder).finish()
    }
}

impl<D: LadderDevice> AccelSession<D> {
    pub fn new(device: D, ladder: Ladder) -> AccelSession<D> {
        let rungs = ladder
            .profiles()
            .iter()
            .map(|p| Rung { profile: p.clone(), cadence: Cadence::new(p), muxer: None })
            .collect();
        AccelSession { device, ladder, rungs }
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    /// Starts a segment; `sinks` has one sink per rendition.
    pub fn begin(&mut self, sinks: Vec<Box<dyn RenditionSink>>) -> AccelSegment<'_, D> {
        assert_eq!(sinks.len(), self.rungs.len(), "one sink per rendition");
        let outs = sinks
            .into_iter()
            .zip(&self.rungs)
            .map(|(sink, r)| Output {
                sink,
                tracks: Vec::new(),
                pending: VecDeque::new(),
                stats: RenditionStats { name: r.profile.name.clone(), ..Default::default() },
                first: true,
                out: Vec::with_capacity(64 * 1024),
            })
            .collect();
        AccelSegment {
            traffic0: self.device.traffic(),
            session: self,
            outs,
            demux: Demuxer::new(),
            video_pid: None,
            tracks: Default::default(),
            unwrap: Default::default(),
            report: SegmentReport::default(),
            last_au_pts: None,
            error: None,
            started: Instant::now(),
        }
    }

    /// A whole segment at once.
    pub fn transcode(
        &mut self,
        data: Bytes,
        sinks: Vec<Box<dyn RenditionSink>>,
    ) -> Result<SegmentReport, TranscodeError> {
        let mut seg = self.begin(sinks);
        seg.push(data)?;
        seg.finish()
    }
}

/// One rendition's output for one segment.
struct Output {
    sink: Box<dyn RenditionSink>,
    tracks: Vec<AudioTrack>,
    /// Copied PES waiting for the video to reach their time.
    pending: PendingPes,
    stats: RenditionStats,
    first: bool,
    out: Vec<u8>,
}

/// A segment in progress on an [`AccelSession`].
pub struct AccelSegment<'s, D: LadderDevice> {
    session: &'s mut AccelSession<D>,
    outs: Vec<Output>,
    demux: Demuxer,
    video_pid: Option<u16>,
    tracks: std::collections::HashMap<u16, usize>,
    unwrap: std::collections::HashMap<u16, Unwrapper>,
    report: SegmentReport,
    last_au_pts: Option<i64>,
    error: Option<TranscodeError>,
    started: Instant,
    traffic0: DeviceTraffic,
}

impl<D: LadderDevice> std::fmt::Debug for AccelSegment<'_, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccelSegment").field("report", &self.report).field("error", &self.error).finish()
    }
}

impl<D: LadderDevice> AccelSegment<'_, D> {
    /// The next bytes of the segment; rendition bytes go to the sinks as they are encoded.
    pub fn push(&mut self, data: Bytes) -> Result<(), TranscodeError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        self.demux.push(&data);
        self.drain();
        self.error.clone().map_or(Ok(()), Err)
    }

    /// End of input: flushes the decoder and encoders, ends every rendition.
    pub fn finish(mut self) -> Result<SegmentReport, TranscodeError> {
        if self.error.is_none() {
            if let Err(e) = self.demux.finish() {
                self.error = Some(e.into());
            }
            self.drain();
        }
        if self.error.is_none() {
            let sizes = self.sizes();
            match self.session.device.flush(&sizes) {
                Ok(pics) => self.pictures(pics),
                Err(e) => self.error = Some(e.into()),
            }
        }
        for i in 0..self.outs.len() {
            if self.error.is_some() {
                break;
            }
            match self.session.device.finish(i) {
                Ok(aus) => {
                    for au in aus {
                        self.mux(i, au);
                    }
                }
                Err(e) => self.error = Some(e.into()),
            }
        }
        if self.error.is_none() {
            self.error = crate::session::verdict(&self.report, self.video_pid.is_some(), None);
        }
        crate::session::fill_timing(&mut self.report);
        self.report.demux = self.demux.stats().clone();
        let t = self.session.device.traffic();
        self.report.device_traffic = Some(DeviceTraffic {
            bitstream_in: t.bitstream_in - self.traffic0.bitstream_in,
            bitstream_out: t.bitstream_out - self.traffic0.bitstream_out,
            frame_bytes: t.frame_bytes - self.traffic0.frame_bytes,
        });
        let outs = std::mem::take(&mut self.outs);
        if let Some(e) = self.error.take() {
            self.discard();
            for mut o in outs {
                o.sink.fail(&e);
            }
            return Err(e);
        }
        for (i, mut o) in outs.into_iter().enumerate() {
            let muxer = muxer_for(&mut self.session.rungs[i].muxer, &o.tracks);
            o.stats.copied_pes += write_pending(muxer, &mut o.pending, None, &mut o.out);
            let name = o.stats.name.clone();
            let sink_error =
                |e: std::io::Error| TranscodeError::Sink { rendition: name.clone(), message: e.to_string() };
            let r = emit(&mut o, self.started)
                .map_err(&sink_error)
                .and_then(|()| o.sink.finish(&o.stats).map_err(&sink_error));
            if let Err(e) = r {
                o.sink.fail(&e);
                return Err(e);
            }
            self.report.renditions.push(o.stats);
        }
        self.report.wall_time = self.started.elapsed();
        Ok(std::mem::take(&mut self.report))
    }

    /// A failed or abandoned segment: whatever the decoder and the encoders still hold belongs to
    /// it, and must not come out at the start of the stream's next segment.
    fn discard(&mut self) {
        let sizes = self.sizes();
        let device = &mut self.session.device;
        if let Ok(pics) = device.flush(&sizes) {
            for pic in pics {
                for (rung, &surface) in pic.surfaces.iter().enumerate() {
                    device.release(rung, surface);
                }
            }
        }
        for rung in 0..self.session.rungs.len() {
            let _ = device.finish(rung);
        }
    }

    /// The rung sizes for a picture of `w` x `h`.
    fn sizes(&self) -> impl Fn(u32, u32) -> Vec<(u32, u32)> + use<D> {
        let profiles: Vec<Profile> = self.session.rungs.iter().map(|r| r.profile.clone()).collect();
        move |w, h| profiles.iter().map(|p| p.output_size(w, h)).collect()
    }

    fn drain(&mut self) {
        while self.error.is_none() {
            let Some(ev) = self.demux.poll() else { break };
            match ev {
                DemuxEvent::Program(p) => {
                    if self.video_pid.is_some() {
                        continue; // a PMT change mid-segment keeps the first layout
                    }
                    match crate::session::program_layout(&p) {
                        Ok((video, tracks, layout)) => {
                            self.video_pid = Some(video);
                            self.tracks = tracks;
                            for o in &mut self.outs {
                                o.tracks = layout.clone();
                            }
                        }
                        Err(e) => self.error = Some(e),
                    }
                }
                DemuxEvent::Pes(pes) => {
                    if Some(pes.pid) == self.video_pid {
                        self.video(&pes);
                    } else if let Some(&index) = self.tracks.get(&pes.pid) {
                        let ext_pts = pes.pts.map(|p| self.unwrap.entry(pes.pid).or_default().unwrap(p));
                        let pes = Arc::new(pes);
                        for o in &mut self.outs {
                            o.pending.push_back((index, pes.clone(), ext_pts));
                        }
                    }
                }
            }
        }
    }

    fn video(&mut self, pes: &Pes) {
        let info = inspect_access_unit(&pes.payload);
        if let Some(sps) = info.sps {
            match sps {
                Ok(sps) => {
                    if let Err(e) = sps.check_supported() {
                        self.error = Some(e.into());
                        return;
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
                Err(e) => {
                    self.error = Some(e.into());
                    return;
                }
            }
        }
        let pts = match pes.pts {
            Some(p) => self.unwrap.entry(pes.pid).or_default().unwrap(p),
            None => self.last_au_pts.map_or(0, |p| p + 3000),
        };
        self.last_au_pts = Some(pts);
        if info.has_picture {
            self.report.access_units += 1;
        }
        let sizes = self.sizes();
        let t = Instant::now();
        let r = self.session.device.decode(&pes.payload, pts, &sizes);
        self.report.decode_time += t.elapsed();
        match r {
            Ok(pics) => self.pictures(pics),
            Err(e) => self.error = Some(e.into()),
        }
    }

    fn pictures(&mut self, pics: Vec<DevicePicture>) {
        for pic in pics {
            let r = &mut self.report;
            r.first_picture_after.get_or_insert_with(|| self.started.elapsed());
            r.frames_decoded += 1;
            r.first_pts = Some(r.first_pts.map_or(pic.pts, |p| p.min(pic.pts)));
            r.last_pts = Some(r.last_pts.map_or(pic.pts, |p| p.max(pic.pts)));
            for (i, &surface) in pic.surfaces.iter().enumerate() {
                if self.error.is_some() {
                    self.session.device.release(i, surface);
                    continue;
                }
                if let Err(e) = self.rung(i, &pic, surface) {
                    self.error = Some(e);
                }
            }
        }
    }

    fn rung(&mut self, i: usize, pic: &DevicePicture, surface: usize) -> Result<(), TranscodeError> {
        let rung = &mut self.session.rungs[i];
        let o = &mut self.outs[i];
        o.stats.frames_in += 1;
        let keyframe = match rung.cadence.decide(pic.pts, o.first) {
            Decision::Drop => {
                o.stats.frames_dropped += 1;
                self.session.device.release(i, surface);
                return Ok(());
            }
            Decision::Keep { keyframe } => keyframe,
        };
        // The segment's first kept picture is decided: encoders answer asynchronously, so this
        // cannot wait for its access unit to come back.
        o.first = false;
        let (width, height) = rung.profile.output_size(pic.width, pic.height);
        let settings = RungSettings { width, height, bitrate: rung.profile.bitrate, fps: rung.cadence.output_fps() };
        o.stats.width = width;
        o.stats.height = height;
        let t = Instant::now();
        let aus = self.session.device.encode(i, surface, pic.pts, keyframe, &settings)?;
        self.outs[i].stats.encode_time += t.elapsed();
        for au in aus {
            self.mux(i, au);
        }
        emit(&mut self.outs[i], self.started)
            .map_err(|e| TranscodeError::Sink { rendition: self.outs[i].stats.name.clone(), message: e.to_string() })
    }

    fn mux(&mut self, i: usize, au: DeviceAu) {
        let o = &mut self.outs[i];
        let t = Instant::now();
        let muxer = muxer_for(&mut self.session.rungs[i].muxer, &o.tracks);
        o.stats.copied_pes += write_pending(muxer, &mut o.pending, Some(au.pts), &mut o.out);
        let pts = wrap33(au.pts);
        muxer.write_video(&au.data, pts, pts, au.keyframe, &mut o.out);
        if au.keyframe {
            o.stats.keyframes += 1;
            o.stats.keyframe_pts.push(au.pts);
        }
        o.stats.video_bytes += au.data.len() as u64;
        o.stats.frames_out += 1;
        o.stats.mux_time += t.elapsed();
    }
}

impl<D: LadderDevice> Drop for AccelSegment<'_, D> {
    /// Dropped before `finish` (the input broke off): the sinks are told, as on the CPU.
    fn drop(&mut self) {
        if self.outs.is_empty() {
            return; // finished
        }
        self.discard();
        for o in &mut self.outs {
            o.sink.fail(&TranscodeError::Abandoned);
        }
    }
}

impl<D: LadderDevice> crate::session::StreamSession for AccelSession<D> {
    fn ladder(&self) -> &Ladder {
        &self.ladder
    }
    fn begin_segment(
        &mut self,
        sinks: Vec<Box<dyn RenditionSink>>,
    ) -> Result<Box<dyn crate::session::SegmentInput + '_>, TranscodeError> {
        Ok(Box::new(self.begin(sinks)))
    }
    fn backend(&self) -> String {
        self.device.describe()
    }
}

impl<D: LadderDevice> crate::session::SegmentInput for AccelSegment<'_, D> {
    fn push(&mut self, data: Bytes) -> Result<(), TranscodeError> {
        AccelSegment::push(self, data)
    }
    fn finish(self: Box<Self>) -> Result<SegmentReport, TranscodeError> {
        AccelSegment::finish(*self)
    }
}

fn emit(o: &mut Output, started: Instant) -> std::io::Result<()> {
    if o.out.is_empty() {
        return Ok(());
    }
    let chunk = Bytes::from(std::mem::replace(&mut o.out, Vec::with_capacity(64 * 1024)));
    o.stats.first_chunk_after.get_or_insert_with(|| started.elapsed());
    o.stats.ts_bytes += chunk.len() as u64;
    o.stats.chunks += 1;
    o.sink.chunk(chunk)
}

#[cfg(test)]
mod emulated;
pub mod host_encode;
