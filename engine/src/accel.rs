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
use std::time::Instant;

use bytes::Bytes;

use crate::error::{TranscodeError, panic_message};
use crate::intake::{Intake, IntakeEvent, VideoUnit};
use crate::profile::Ladder;
use crate::rendition::{Rendition, RenditionOutput};
use crate::sink::Sinks;
pub use crate::stats::DeviceTraffic;
use crate::stats::SegmentReport;
use crate::stream::{SegmentInput, SegmentOptions, StreamSession};
use crate::timeline::Stage;

/// A device failure: the API that failed and its status, with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{api} failed: {message}")]
pub struct DeviceError {
    /// Stable code (`gpu_session_limit`, `gpu_unsupported`, `gpu_error`, ...).
    pub code: &'static str,
    pub api: String,
    pub message: String,
}

/// One decoded picture, scaled: rung `i` of the ladder is in surface `surfaces[i]` of that
/// rung's pool until encoded or released, or `None` where the rung's cadence dropped the picture
/// (the device did not scale it for that rung).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePicture {
    pub pts: i64,
    pub width: u32,
    pub height: u32,
    pub surfaces: Vec<Option<usize>>,
}

/// Asked by the device for every picture it decodes, before it scales it: given the picture's
/// PTS and size, the size each rung wants it at, or `None` for a rung that does not keep it.
pub type RungPlan<'a> = &'a mut dyn FnMut(i64, u32, u32) -> Vec<Option<(u32, u32)>>;

/// What one rung's encoder makes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RungSettings {
    pub width: u32,
    pub height: u32,
    pub bitrate: u32,
    pub fps: f64,
}

/// One picture of one rung to encode: surface `surface` of rung `rung`, an IDR when `keyframe`.
#[derive(Debug, Clone, Copy)]
pub struct EncodeJob<'a> {
    pub rung: usize,
    pub surface: usize,
    pub pts: i64,
    pub keyframe: bool,
    pub settings: &'a RungSettings,
}

/// One encoded access unit (Annex B), copied to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAu {
    pub data: Vec<u8>,
    pub pts: i64,
    pub keyframe: bool,
}

/// Decode, scale and encode on a device. Surfaces are per rung; `decode` fills one of each
/// rung's surfaces per picture and `encode` or `release` gives it back.
pub trait LadderDevice: Send {
    /// Feeds one access unit with its PTS; returns the pictures it completed, each scaled into
    /// the rungs that `plan` says keep it (one call per picture, in output order: sizes may
    /// follow the picture's size).
    fn decode(&mut self, au: &[u8], pts: i64, plan: RungPlan<'_>) -> Result<Vec<DevicePicture>, DeviceError>;
    /// End of the segment's input: the pictures the decoder still holds.
    fn flush(&mut self, plan: RungPlan<'_>) -> Result<Vec<DevicePicture>, DeviceError>;
    /// Encodes surface `surface` of rung `rung` (an IDR when `keyframe`); returns the access
    /// units that became ready, in order. The surface is free again afterwards.
    fn encode(&mut self, job: EncodeJob<'_>) -> Result<Vec<DeviceAu>, DeviceError>;
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

/// A stream's session on a device: decoder and encoders persist across its segments.
pub struct AccelSession<D: LadderDevice> {
    device: D,
    ladder: Ladder,
    rungs: Vec<Rendition>,
}

impl<D: LadderDevice> std::fmt::Debug for AccelSession<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccelSession")
            .field("device", &self.device.describe())
            .field("ladder", &self.ladder)
            .finish_non_exhaustive()
    }
}

impl<D: LadderDevice> AccelSession<D> {
    pub fn new(device: D, ladder: Ladder) -> AccelSession<D> {
        let rungs = ladder.profiles().iter().map(|p| Rendition::new(p.clone())).collect();
        AccelSession { device, ladder, rungs }
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    /// Mutable access to the device (tests that make a double fail on purpose).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Starts a segment; `sinks` has one sink per rendition.
    pub fn begin(&mut self, sinks: Sinks) -> AccelSegment<'_, D> {
        self.begin_with(sinks, SegmentOptions::default())
    }

    /// Starts a segment with `options` (a clip: the pictures outside it are never scaled);
    /// `sinks` has one sink per rendition.
    pub fn begin_with(&mut self, sinks: Sinks, options: SegmentOptions) -> AccelSegment<'_, D> {
        assert_eq!(sinks.len(), self.rungs.len(), "one sink per rendition");
        let intake = Intake::with_timeline(options.timeline.clone());
        let started = intake.started();
        let outs = sinks
            .into_iter()
            .zip(&self.rungs)
            .enumerate()
            .map(|(i, (sink, r))| RenditionOutput::new(&r.profile.name, i, sink, started, &options))
            .collect();
        AccelSegment {
            traffic0: self.device.traffic(),
            session: self,
            outs,
            intake,
            at: None,
            decided: VecDeque::new(),
        }
    }
}

/// A segment in progress on an [`AccelSession`].
pub struct AccelSegment<'s, D: LadderDevice> {
    session: &'s mut AccelSession<D>,
    outs: Vec<RenditionOutput>,
    intake: Intake,
    traffic0: DeviceTraffic,
    /// The rendition being worked on, to name it when a panic is caught.
    at: Option<usize>,
    /// Per picture the device was asked about and has not handed back: each rung's decision
    /// (`Some(keyframe)` when it keeps the picture).
    decided: VecDeque<Vec<Option<bool>>>,
}

impl<D: LadderDevice> std::fmt::Debug for AccelSegment<'_, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccelSegment").field("intake", &self.intake).finish()
    }
}

impl<D: LadderDevice> AccelSegment<'_, D> {
    /// The next bytes of the segment; rendition bytes go to the sinks as they are encoded.
    pub fn push(&mut self, data: Bytes) -> Result<(), TranscodeError> {
        if let Some(t) = self.intake.timeline() {
            t.mark(Stage::Input, None, data.len() as i64);
        }
        if self.intake.error().is_none() {
            self.intake.push(&data);
            self.contained(Self::drain);
        }
        self.intake.error().cloned().map_or(Ok(()), Err)
    }

    /// End of input: flushes the decoder and encoders, ends every rendition.
    pub fn finish(mut self) -> Result<SegmentReport, TranscodeError> {
        if let Some(t) = self.intake.timeline() {
            t.mark(Stage::InputEnd, None, 0);
        }
        if self.intake.error().is_none() {
            self.contained(Self::end_input);
        }
        let result = self.intake.finish();
        let outs = std::mem::take(&mut self.outs);
        let mut report = match result {
            Ok(report) => report,
            Err(e) => {
                self.discard();
                for o in outs {
                    o.fail(&e);
                }
                return Err(e);
            }
        };
        let mut outs = outs.into_iter().enumerate();
        let mut failed = None;
        for (i, o) in outs.by_ref() {
            let rung = &mut self.session.rungs[i];
            let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| o.finish(rung)));
            match finished {
                Ok(Ok(stats)) => report.renditions.push(stats),
                Ok(Err(e)) => failed = Some(e),
                Err(p) => failed = Some(rung.panicked(&*p)),
            }
            if failed.is_some() {
                break;
            }
        }
        if let Some(e) = failed {
            // Every rendition not finished yet is told too.
            for (_, o) in outs {
                o.fail(&e);
            }
            return Err(e);
        }
        let (t, t0) = (self.session.device.traffic(), self.traffic0);
        report.device_traffic = Some(DeviceTraffic {
            bitstream_in: t.bitstream_in - t0.bitstream_in,
            bitstream_out: t.bitstream_out - t0.bitstream_out,
            frame_bytes: t.frame_bytes - t0.frame_bytes,
        });
        report.wall_time = self.intake.started().elapsed();
        Ok(report)
    }

    /// Runs `f`, turning a panic (a bug in the device layer, a sink that panics) into the
    /// segment's error, as the CPU workers do: the segment fails, the session goes on.
    fn contained(&mut self, f: impl FnOnce(&mut Self)) {
        if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))) {
            for r in &mut self.session.rungs {
                r.reset_muxer();
            }
            let worker = match self.at.take() {
                Some(i) => format!("rendition {}", self.session.rungs[i].profile.name),
                None => "device".into(),
            };
            self.intake.fail(TranscodeError::Panic { worker, message: panic_message(&*p) });
        }
    }

    /// The end of the input: the last units, the pictures the decoder holds, then what every
    /// encoder holds.
    fn end_input(&mut self) {
        self.intake.end_input();
        self.drain();
        if self.intake.error().is_none() {
            match self.planned(|device, plan| device.flush(plan)) {
                Ok(pics) => self.pictures(pics),
                Err(e) => self.intake.fail(e.into()),
            }
        }
        for i in 0..self.outs.len() {
            if self.intake.error().is_some() {
                break;
            }
            self.at = Some(i);
            match self.session.device.finish(i) {
                Ok(aus) => self.mux(i, aus),
                Err(e) => self.intake.fail(e.into()),
            }
            self.at = None;
        }
    }

    /// A failed or abandoned segment: whatever the decoder and the encoders still hold belongs to
    /// it, and must not come out at the start of the stream's next segment. The device's own
    /// errors here are beside the point: the segment already failed.
    fn discard(&mut self) {
        let device = &mut self.session.device;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // No rung wants these pictures: the device need not scale them.
            let rungs = self.outs.len();
            if let Ok(pics) = device.flush(&mut |_, _, _| vec![None; rungs]) {
                for pic in pics {
                    for (rung, surface) in pic.surfaces.iter().enumerate() {
                        if let Some(surface) = *surface {
                            device.release(rung, surface);
                        }
                    }
                }
            }
            for rung in 0..self.session.rungs.len() {
                device.finish(rung).ok();
            }
        }));
        if let Err(p) = r {
            tracing::error!(message = %panic_message(&*p), "the device panicked while discarding a failed segment");
        }
    }

    /// Calls the device with the plan that asks each rung's cadence, before the device scales
    /// a picture, whether the rung keeps it (a dropped picture is never scaled for that rung).
    fn planned(
        &mut self,
        call: impl FnOnce(&mut D, RungPlan<'_>) -> Result<Vec<DevicePicture>, DeviceError>,
    ) -> Result<Vec<DevicePicture>, DeviceError> {
        let AccelSession { device, rungs, .. } = &mut *self.session;
        let (outs, decided) = (&mut self.outs, &mut self.decided);
        let mut plan = |pts: i64, width: u32, height: u32| {
            let mut keys = Vec::with_capacity(rungs.len());
            let sizes = (rungs.iter_mut().zip(outs.iter_mut()))
                .map(|(r, o)| {
                    let key = o.keep(r, pts);
                    keys.push(key);
                    key.map(|_| r.profile.output_size(width, height))
                })
                .collect();
            decided.push_back(keys);
            sizes
        };
        call(device, &mut plan)
    }

    fn drain(&mut self) {
        while let Some(ev) = self.intake.poll() {
            match ev {
                IntakeEvent::Layout(tracks) => self.outs.iter_mut().for_each(|o| o.set_tracks(tracks.clone())),
                IntakeEvent::Rate(fps) => self.session.rungs.iter_mut().for_each(|r| r.cadence.declare_rate(fps)),
                IntakeEvent::Copied(c) => self.outs.iter_mut().for_each(|o| o.copy(c.clone())),
                IntakeEvent::Video(unit) => self.video(unit),
            }
        }
    }

    fn video(&mut self, unit: VideoUnit) {
        let t = Instant::now();
        let r = self.planned(|device, plan| device.decode(&unit.data, unit.pts, plan));
        self.intake.add_decode_time(t.elapsed());
        match r {
            Ok(pics) => self.pictures(pics),
            Err(e) => self.intake.fail(e.into()),
        }
    }

    fn pictures(&mut self, pics: Vec<DevicePicture>) {
        for pic in pics {
            self.intake.picture(pic.pts, pic.width, pic.height);
            let keys = self.decided.pop_front().unwrap_or_default();
            for (i, surface) in pic.surfaces.iter().enumerate() {
                let Some(surface) = *surface else { continue };
                match keys.get(i).copied().flatten() {
                    Some(keyframe) if self.intake.error().is_none() => {
                        if let Err(e) = self.rung(i, &pic, surface, keyframe) {
                            self.intake.fail(e);
                        }
                    }
                    // A failed segment, or a surface the plan did not ask for.
                    _ => self.session.device.release(i, surface),
                }
            }
        }
    }

    fn rung(&mut self, i: usize, pic: &DevicePicture, surface: usize, keyframe: bool) -> Result<(), TranscodeError> {
        self.at = Some(i);
        let r = self.encode_rung(i, pic, surface, keyframe);
        self.at = None;
        r
    }

    fn encode_rung(
        &mut self,
        i: usize,
        pic: &DevicePicture,
        surface: usize,
        keyframe: bool,
    ) -> Result<(), TranscodeError> {
        let rung = &self.session.rungs[i];
        let (width, height) = rung.profile.output_size(pic.width, pic.height);
        let settings = RungSettings { width, height, bitrate: rung.profile.bitrate, fps: rung.cadence.output_fps() };
        self.outs[i].set_size(width, height);
        let t = Instant::now();
        let job = EncodeJob { rung: i, surface, pts: pic.pts, keyframe, settings: &settings };
        let aus = self.session.device.encode(job)?;
        self.outs[i].stats.encode_time += t.elapsed();
        self.mux(i, aus);
        self.outs[i].emit()
    }

    fn mux(&mut self, i: usize, aus: Vec<DeviceAu>) {
        for au in aus {
            self.outs[i].mux(&mut self.session.rungs[i], &au.data, au.pts, au.keyframe);
        }
    }
}

impl<D: LadderDevice> Drop for AccelSegment<'_, D> {
    /// Dropped before `finish` (the input broke off): the sinks are told, as on the CPU.
    fn drop(&mut self) {
        if self.outs.is_empty() {
            return; // finished
        }
        self.discard();
        for o in std::mem::take(&mut self.outs) {
            o.fail(&TranscodeError::Abandoned);
        }
    }
}

impl<D: LadderDevice> StreamSession for AccelSession<D> {
    fn ladder(&self) -> &Ladder {
        &self.ladder
    }
    fn begin_segment_with(
        &mut self,
        sinks: Sinks,
        options: SegmentOptions,
    ) -> Result<Box<dyn SegmentInput + '_>, TranscodeError> {
        Ok(Box::new(self.begin_with(sinks, options)))
    }
    fn backend(&self) -> String {
        self.device.describe()
    }
}

impl<D: LadderDevice> SegmentInput for AccelSegment<'_, D> {
    fn push(&mut self, data: Bytes) -> Result<(), TranscodeError> {
        AccelSegment::push(self, data)
    }
    fn finish(self: Box<Self>) -> Result<SegmentReport, TranscodeError> {
        AccelSegment::finish(*self)
    }
}

#[cfg(any(test, feature = "test-doubles"))]
pub mod emulated;
pub mod host_encode;
pub mod host_nv12;
