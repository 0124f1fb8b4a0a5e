//! A CPU rendition worker: scales and encodes the pictures its [`RenditionOutput`]'s cadence
//! keeps; everything else about the rendition (mux, stats, sink) is the shared back half.

use std::time::Instant;

use crossbeam_channel::Receiver;

use super::Work;
use crate::codec::{CpuEncoder, Encoder, EncoderSettings};
use crate::error::TranscodeError;
use crate::frame::Frame;
use crate::profile::Profile;
use crate::rendition::{Rendition, RenditionOutput};
use crate::scale::{ScaleFilter, Scaler};
use crate::timeline::Stage;

pub(super) struct RenditionWorker {
    /// Its index in the ladder.
    rung: usize,
    /// Nice levels below the decode thread ([`crate::priority`]).
    nice: i32,
    rendition: Rendition,
    scaler: Scaler,
    encoder: Option<Encoder>,
    encoder_threads: u16,
    cpu_encoder: CpuEncoder,
}

/// A segment in progress on this worker.
struct InProgress {
    out: RenditionOutput,
    error: Option<TranscodeError>,
}

impl RenditionWorker {
    pub(super) fn new(
        rung: usize,
        nice: i32,
        profile: Profile,
        filter: ScaleFilter,
        encoder_threads: u16,
        cpu_encoder: CpuEncoder,
    ) -> Self {
        RenditionWorker {
            rung,
            nice,
            rendition: Rendition::new(profile),
            scaler: Scaler::new(filter),
            encoder: None,
            encoder_threads,
            cpu_encoder,
        }
    }

    pub(super) fn run(mut self, rx: Receiver<Work>) {
        // Below the decode thread every rendition waits for (crate::priority).
        if let Err(e) = crate::priority::lower_this_thread(self.nice) {
            tracing::debug!(rendition = %self.rendition.profile.name, "rendition worker keeps its priority: {e}");
        }
        let mut seg: Option<InProgress> = None;
        while let Ok(msg) = rx.recv() {
            match msg {
                Work::Begin { sink, started, options } => {
                    let out = RenditionOutput::new(&self.rendition.profile.name, self.rung, sink, started, &options);
                    seg = Some(InProgress { out, error: None });
                }
                Work::Rate(fps) => self.rendition.cadence.declare_rate(fps),
                Work::Tracks(tracks) => {
                    if let Some(s) = seg.as_mut() {
                        s.out.set_tracks(tracks);
                    }
                }
                Work::Frame(f) => {
                    if let Some(s) = seg.as_mut()
                        && s.error.is_none()
                        && let Err(e) = self.contained(|w| w.frame(&mut s.out, &f))
                    {
                        s.error = Some(e);
                    }
                }
                Work::Copied(c) => {
                    if let Some(s) = seg.as_mut() {
                        s.out.copy(c);
                    }
                }
                Work::End { reply } => {
                    let Some(s) = seg.take() else { continue };
                    let result = match s.error {
                        Some(e) => {
                            s.out.fail(&e);
                            Err(e)
                        }
                        None => {
                            let out = s.out;
                            self.contained(|w| out.finish(&mut w.rendition))
                        }
                    };
                    // The decode thread waits for this; it is gone only when the session is.
                    reply.send(result).ok();
                }
                Work::Abort { error, reply } => {
                    if let Some(s) = seg.take() {
                        s.out.fail(&error);
                    }
                    // Start the next segment with a clean encoder state.
                    self.encoder = None;
                    reply.send(()).ok();
                }
            }
        }
    }

    /// Runs `f`, turning a panic (a bug, or a sink that panics) into this segment's error: the
    /// encoder and muxer state are reset so the next segment starts clean, and the thread lives.
    fn contained<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, TranscodeError>) -> Result<T, TranscodeError> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))) {
            Ok(r) => r,
            Err(p) => {
                self.encoder = None;
                Err(self.rendition.panicked(&*p))
            }
        }
    }

    fn frame(&mut self, out: &mut RenditionOutput, f: &Frame) -> Result<(), TranscodeError> {
        let Some(keyframe) = out.keep(&mut self.rendition, f.pts) else {
            return Ok(());
        };
        let (w, h) = self.rendition.profile.output_size(f.width, f.height);
        // The rung's frame rate as the cadence knows it now (it measures the source's per
        // segment): rate control budgets each picture as bitrate / fps.
        let settings = EncoderSettings {
            width: w,
            height: h,
            bitrate: self.rendition.profile.bitrate,
            fps: self.rendition.cadence.output_fps(),
            threads: self.encoder_threads,
            encoder: self.cpu_encoder,
        };
        crate::codec::ensure(&mut self.encoder, settings, keyframe)?;
        out.set_size(w, h);

        let t = Instant::now();
        let scaled;
        let pic = if (f.width, f.height) == (w, h) {
            f
        } else {
            scaled = self.scaler.scale(f, w, h)?;
            &scaled
        };
        out.stats.scale_time += t.elapsed();
        out.mark(Stage::Scaled, f.pts);

        let t = Instant::now();
        let encoder = self.encoder.as_mut().expect("ensured above");
        let Some(enc) = encoder.encode(pic, keyframe)? else {
            return Ok(());
        };
        out.stats.encode_time += t.elapsed();
        out.mux(&mut self.rendition, &enc.data, f.pts, enc.keyframe);
        out.emit()
    }
}
