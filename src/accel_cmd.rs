//! Which backend runs the sessions: `--accel cpu|cuda|auto` and `--gpus 0,1`. With CUDA, each
//! new stream session goes to the GPU with the lowest pixel-rate load (the sum of width x
//! height x fps of the ladders of the sessions open on it) and stays there (sticky per stream:
//! the session keeps its decoder and encoders). Per-GPU sessions and pixel rate are Prometheus
//! gauges. The control plane sees only a `SessionFactory`: it knows nothing of CUDA.

use anyhow::Result;
#[cfg(not(feature = "cuda"))]
use anyhow::bail;
use clap::ValueEnum;
use zerohop_control::relay::SessionFactory;
use zerohop_engine::codec::CpuEncoder;
use zerohop_engine::profile::CodecProfile;
use zerohop_engine::scale::ScaleFilter;
use zerohop_engine::{Ladder, Session, SessionConfig, StreamSession};

use crate::encoder_args::GpuOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Accel {
    Cpu,
    Cuda,
    Auto,
}

/// Which backend runs the sessions (combined node, transcoder).
#[derive(Debug, clap::Args)]
pub struct AccelArgs {
    /// cpu; cuda (NVDEC -> CUDA kernel -> NVENC, frames kept on the GPU; a build with
    /// `--features cuda`); auto (cuda when the GPUs open, else cpu, saying why).
    #[arg(long, value_enum, default_value_t = Accel::Cpu)]
    pub accel: Accel,
    /// GPUs to use with --accel cuda/auto: each new stream goes to the one with the lowest
    /// pixel-rate load and stays there.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub gpus: Vec<usize>,
    #[command(flatten)]
    pub encoder: crate::encoder_args::EncoderArgs,
}

impl AccelArgs {
    pub fn gpu_options(&self) -> GpuOptions {
        self.encoder.gpu_options()
    }
}

#[cfg(not(feature = "cuda"))]
const NO_CUDA: &str = "this zerohop was built without the CUDA backend (cargo build --release --features cuda)";

/// One session on the backend asked for (`zerohop transcode`).
pub fn open_session(
    ladder: &Ladder,
    filter: ScaleFilter,
    accel: Accel,
    gpu: usize,
    encode: GpuOptions,
) -> Result<Box<dyn StreamSession>> {
    let cpu = || -> Result<Box<dyn StreamSession>> {
        let mut config = SessionConfig::new(ladder.clone());
        config.filter = filter;
        Ok(Box::new(Session::open(config)?))
    };
    if accel == Accel::Cpu {
        return cpu();
    }
    #[cfg(feature = "cuda")]
    {
        use zerohop_engine::accel::AccelSession;
        use zerohop_engine::cuda::ladder_device::CudaLadderDevice;
        match CudaLadderDevice::open_with(gpu, ladder.len(), encode.into()) {
            Ok(d) => Ok(Box::new(AccelSession::new(d, ladder.clone()))),
            Err(e) if accel == Accel::Auto => {
                eprintln!("--accel auto: GPU {gpu} unavailable ({e}); using the CPU backend");
                cpu()
            }
            Err(e) => Err(anyhow::anyhow!("GPU {gpu}: {e} [{}]", e.code())),
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = encode;
        if accel == Accel::Auto {
            eprintln!("--accel auto: {NO_CUDA}; using the CPU backend (GPU {gpu} not tried)");
            return cpu();
        }
        bail!("--accel cuda: {NO_CUDA}")
    }
}

/// Pixels per second a ladder makes (its load on a GPU).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub fn pixel_rate(ladder: &Ladder) -> u64 {
    ladder
        .profiles()
        .iter()
        .map(|p| u64::from(p.width) * u64::from(p.height) * p.frame_rate().unwrap_or(30.0).round() as u64)
        .sum()
}

/// The sessions of a node or transcoder: CPU, or placed on `gpus`.
pub fn factory(accel: Accel, gpus: &[usize], encode: GpuOptions) -> Result<SessionFactory> {
    if accel == Accel::Cpu {
        return Ok(SessionFactory::cpu());
    }
    #[cfg(feature = "cuda")]
    {
        match gpu::factory(gpus, encode.into()) {
            Ok(f) => Ok(f),
            Err(e) if accel == Accel::Auto => {
                eprintln!("--accel auto: {e:#}; using the CPU backend");
                Ok(SessionFactory::cpu())
            }
            Err(e) => Err(e),
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = encode;
        if accel == Accel::Auto {
            eprintln!("--accel auto: {NO_CUDA}; using the CPU backend (GPUs {gpus:?} not tried)");
            return Ok(SessionFactory::cpu());
        }
        bail!("--accel cuda: {NO_CUDA}")
    }
}

/// Sessions placed on devices (GPUs): each new stream goes to the device with the lowest
/// pixel-rate load and stays there; per device, Prometheus figures of its sessions, load,
/// pictures and host<->device bytes (frame copies are 0 on the zero-copy path, so a dashboard
/// shows which GPUs encode on the CPU). Independent of CUDA: the factory's `open` makes the
/// device session.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub mod placement {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use bytes::Bytes;
    use zerohop_control::relay::{DeviceCaps, SessionFactory};
    use zerohop_engine::{Ladder, SegmentInput, SegmentOptions, SegmentReport, Sinks, StreamSession, TranscodeError};

    /// One device's open sessions and what went through it.
    #[derive(Debug, Default)]
    pub struct DeviceLoad {
        pub ordinal: usize,
        pub sessions: AtomicU64,
        pub pixel_rate: AtomicU64,
        /// Pictures decoded on it (also the `zerohop_gpu_frames_total` counter).
        pub frames: AtomicU64,
    }

    impl DeviceLoad {
        fn publish(&self) {
            let gpu = self.ordinal.to_string();
            metrics::gauge!("zerohop_gpu_sessions", "gpu" => gpu.clone())
                .set(self.sessions.load(Ordering::Relaxed) as f64);
            metrics::gauge!("zerohop_gpu_pixel_rate", "gpu" => gpu).set(self.pixel_rate.load(Ordering::Relaxed) as f64);
        }

        fn count(&self, r: &SegmentReport) {
            let gpu = self.ordinal.to_string();
            self.frames.fetch_add(r.frames_decoded, Ordering::Relaxed);
            metrics::counter!("zerohop_gpu_frames_total", "gpu" => gpu.clone()).increment(r.frames_decoded);
            if let Some(t) = r.device_traffic {
                metrics::counter!("zerohop_gpu_bitstream_bytes_total", "gpu" => gpu.clone(), "direction" => "in")
                    .increment(t.bitstream_in);
                metrics::counter!("zerohop_gpu_bitstream_bytes_total", "gpu" => gpu.clone(), "direction" => "out")
                    .increment(t.bitstream_out);
                metrics::counter!("zerohop_gpu_frame_copy_bytes_total", "gpu" => gpu).increment(t.frame_bytes);
            }
        }
    }

    /// A session placed on a device; its load is given back when it closes.
    struct Placed {
        /// `None` only while being dropped.
        inner: Option<Box<dyn StreamSession>>,
        load: Arc<DeviceLoad>,
        weight: u64,
    }

    impl Placed {
        fn inner(&self) -> &dyn StreamSession {
            self.inner.as_deref().expect("present until dropped")
        }
    }

    impl Drop for Placed {
        /// The session is released on a thread of its own: destroying a GPU decoder and its
        /// encoders takes milliseconds of driver calls, which must not stall the async worker
        /// that happened to drop the last reference (idle sessions are closed from there).
        fn drop(&mut self) {
            self.load.sessions.fetch_sub(1, Ordering::Relaxed);
            self.load.pixel_rate.fetch_sub(self.weight, Ordering::Relaxed);
            self.load.publish();
            if let Some(inner) = self.inner.take() {
                // Where no thread can be had, the refused closure drops the session right here.
                std::thread::Builder::new().name("zh-gpu-release".into()).spawn(move || drop(inner)).ok();
            }
        }
    }

    impl StreamSession for Placed {
        fn ladder(&self) -> &Ladder {
            self.inner().ladder()
        }
        fn begin_segment_with(
            &mut self,
            sinks: Sinks,
            options: SegmentOptions,
        ) -> Result<Box<dyn SegmentInput + '_>, TranscodeError> {
            let inner = self.inner.as_deref_mut().expect("present until dropped").begin_segment_with(sinks, options)?;
            Ok(Box::new(Counted { inner, load: self.load.clone() }))
        }
        fn backend(&self) -> String {
            self.inner().backend()
        }
    }

    /// A segment whose figures go to its device's counters when it completes.
    struct Counted<'a> {
        inner: Box<dyn SegmentInput + 'a>,
        load: Arc<DeviceLoad>,
    }

    impl SegmentInput for Counted<'_> {
        fn push(&mut self, data: Bytes) -> Result<(), TranscodeError> {
            self.inner.push(data)
        }
        fn finish(self: Box<Self>) -> Result<SegmentReport, TranscodeError> {
            let r = self.inner.finish()?;
            self.load.count(&r);
            Ok(r)
        }
    }

    /// A factory placing each new session on the least-loaded of `devices` (ordinals), opened by
    /// `open(ordinal, ladder)`. Returns the loads, for status and tests.
    pub fn factory(
        name: String,
        devices: &[usize],
        caps: Vec<DeviceCaps>,
        open: impl Fn(usize, &Ladder) -> Result<Box<dyn StreamSession>, TranscodeError> + Send + Sync + 'static,
    ) -> (SessionFactory, Vec<Arc<DeviceLoad>>) {
        let loads: Vec<Arc<DeviceLoad>> =
            devices.iter().map(|&ordinal| Arc::new(DeviceLoad { ordinal, ..Default::default() })).collect();
        let placed = loads.clone();
        let f = SessionFactory::new(name, move |ladder: &Ladder| {
            let weight = super::pixel_rate(ladder);
            // Least loaded first; a device that refuses (its encoder sessions all taken, its
            // memory full) passes the stream to the next one. All refuse: the first error.
            let mut order: Vec<&Arc<DeviceLoad>> = placed.iter().collect();
            order.sort_by_key(|l| (l.pixel_rate.load(Ordering::Relaxed), l.ordinal));
            let mut first_error = None;
            for load in order {
                match open(load.ordinal, ladder) {
                    Ok(inner) => {
                        load.sessions.fetch_add(1, Ordering::Relaxed);
                        load.pixel_rate.fetch_add(weight, Ordering::Relaxed);
                        load.publish();
                        let load = load.clone();
                        return Ok(Box::new(Placed { inner: Some(inner), load, weight }) as Box<dyn StreamSession>);
                    }
                    Err(e) => {
                        metrics::counter!("zerohop_gpu_open_failures_total", "gpu" => load.ordinal.to_string(), "code" => e.code()).increment(1);
                        first_error.get_or_insert(e);
                    }
                }
            }
            Err(first_error.expect("at least one device"))
        })
        .with_devices(caps);
        (f, loads)
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use anyhow::{Context, Result};
    use zerohop_control::relay::{DeviceCaps, SessionFactory};
    use zerohop_engine::accel::AccelSession;
    use zerohop_engine::cuda::ladder_device::{CudaLadderDevice, LadderOptions};
    use zerohop_engine::{Ladder, StreamSession, TranscodeError};

    pub fn factory(gpus: &[usize], encode: LadderOptions) -> Result<SessionFactory> {
        let gpus: Vec<usize> = if gpus.is_empty() { vec![0] } else { gpus.to_vec() };
        // Fail at start, not at the first segment: every GPU must open with NVDEC (and NVENC
        // unless it has none, or the CPU encodes by choice). What each one does is stated in
        // the node's capabilities.
        let names = zerohop_engine::cuda::driver::gpus(0).context("listing GPUs")?;
        let mut devices = Vec::new();
        for &g in &gpus {
            let d = CudaLadderDevice::open_with(g, 1, encode).with_context(|| format!("GPU {g}"))?;
            // Which engine each GPU encodes on, and why (never a silent CPU fallback).
            eprintln!("GPU {g}: decode and scale on the GPU, encode on {}", d.encoder_and_why());
            let name = names.iter().find(|i| i.ordinal == g).map(|i| i.name.as_str()).unwrap_or_default();
            devices.push(DeviceCaps::gpu(&format!("cuda:{g}"), name, d.encodes_on_nvenc()));
        }
        let name = format!("cuda:{}", gpus.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(","));
        let (f, _) = super::placement::factory(name, &gpus, devices, move |ordinal, ladder: &Ladder| {
            let device = CudaLadderDevice::open_with(ordinal, ladder.len(), encode)
                .map_err(|e| TranscodeError::from(zerohop_engine::accel::DeviceError::from(e)))?;
            Ok(Box::new(AccelSession::new(device, ladder.clone())) as Box<dyn StreamSession>)
        });
        Ok(f)
    }
}

/// The H.264 profiles whose decoders read what this node's encoders write: NVENC writes what it
/// is asked; the CPU encoders write what they write (OpenH264 Constrained Baseline, read by all;
/// x264 High).
pub fn profiles_written(sessions: &SessionFactory) -> Vec<CodecProfile> {
    let all = vec![CodecProfile::Baseline, CodecProfile::Main, CodecProfile::High];
    let nvenc_everywhere = !sessions.devices.is_empty() && sessions.devices.iter().all(|d| d.encode == "gpu");
    match CpuEncoder::process_default() {
        _ if nvenc_everywhere => all,
        CpuEncoder::OpenH264 => all,
        CpuEncoder::X264 { .. } => vec![CodecProfile::High],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder_args::{GpuEncode, NvencPreset};
    use zerohop_engine::TranscodeError;

    #[test]
    fn pixel_rate_sums_the_rungs() {
        let l: Ladder = r#"[{"name":"a","width":1280,"height":720,"bitrate":3000000,"fps":30},
                          {"name":"b","width":640,"height":360,"bitrate":800000,"fps":15}]"#
            .parse()
            .expect("ladder");
        assert_eq!(pixel_rate(&l), 1280 * 720 * 30 + 640 * 360 * 15);
    }

    /// Placement with CPU sessions standing in for the GPUs' (only the placement and the
    /// counting are under test; what a GPU session does is the engine's business).
    #[test]
    fn sessions_go_to_the_least_loaded_device_and_their_figures_are_counted() {
        use std::sync::atomic::Ordering;
        let (f, loads) = placement::factory("two".into(), &[0, 1], Vec::new(), |_, l: &Ladder| {
            Ok(Box::new(Session::open(SessionConfig::new(l.clone()))?) as Box<dyn StreamSession>)
        });
        let big: Ladder = "P720p30fps16x9,P360p30fps16x9".parse().expect("ladder");
        let small: Ladder = "P240p30fps16x9".parse().expect("ladder");
        let sessions = |i: usize| loads[i].sessions.load(Ordering::Relaxed);
        let mut a = f.open(&big).expect("a"); // both idle: the lower ordinal
        assert_eq!((sessions(0), sessions(1)), (1, 0));
        let b = f.open(&small).expect("b"); // device 1 is idle
        let c = f.open(&small).expect("c"); // device 1 carries 2 x 240p < one 720p+360p
        assert_eq!((sessions(0), sessions(1)), (1, 2));
        assert_eq!(loads[1].pixel_rate.load(Ordering::Relaxed), 2 * pixel_rate(&small));
        drop((b, c));
        assert_eq!((sessions(1), loads[1].pixel_rate.load(Ordering::Relaxed)), (0, 0), "load given back");
        // A device that refuses a session passes the stream to the next; all refusing is the
        // first refusal, typed.
        let full = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let full_in = full.clone();
        let (f2, loads2) = placement::factory("two".into(), &[0, 1], Vec::new(), move |ordinal, l: &Ladder| {
            if ordinal == 0 || full_in.load(Ordering::Relaxed) {
                return Err(TranscodeError::Device {
                    code: "gpu_session_limit",
                    api: "nvEncOpenEncodeSessionEx".into(),
                    message: format!("GPU {ordinal}: NV_ENC_ERR_OUT_OF_MEMORY (stand-in)"),
                });
            }
            Ok(Box::new(Session::open(SessionConfig::new(l.clone()))?) as Box<dyn StreamSession>)
        });
        let d = f2.open(&small).expect("placed on device 1");
        assert_eq!((loads2[0].sessions.load(Ordering::Relaxed), loads2[1].sessions.load(Ordering::Relaxed)), (0, 1));
        full.store(true, Ordering::Relaxed);
        let e = f2.open(&small).err().expect("every device refuses");
        assert_eq!(e.code(), "gpu_session_limit");
        assert!(e.to_string().contains("GPU 0"), "the least-loaded device's refusal: {e}");
        drop(d);
        // A segment's pictures are counted on its device once it completes.
        let input = bytes::Bytes::from_static(include_bytes!("../tests/fixtures/h264_360p25_baseline_noaudio.ts"));
        let (_, sinks) = zerohop_engine::MemorySink::ladder(2);
        let mut seg = a.begin_segment(sinks).expect("segment");
        seg.push(input).expect("push");
        let r = seg.finish().expect("finish");
        assert!(r.frames_decoded > 0);
        assert_eq!(loads[0].frames.load(Ordering::Relaxed), r.frames_decoded);
        assert_eq!(loads[1].frames.load(Ordering::Relaxed), 0);
    }

    /// A placed session passes a segment's options (a clip) to the session it wraps.
    #[test]
    fn a_placed_session_honours_the_segments_clip() {
        use std::time::Duration;
        use zerohop_engine::{Clip, SegmentOptions};
        let (f, _) = placement::factory("one".into(), &[0], Vec::new(), |_, l: &Ladder| {
            Ok(Box::new(Session::open(SessionConfig::new(l.clone()))?) as Box<dyn StreamSession>)
        });
        let mut s = f.open(&"P240p30fps16x9".parse().expect("ladder")).expect("placed");
        let input = bytes::Bytes::from_static(include_bytes!("../tests/fixtures/h264_360p25_baseline_noaudio.ts"));
        let clip = |from: u64| SegmentOptions {
            clip: Some(Clip { from: Duration::from_millis(from), to: None }),
            ..Default::default()
        };
        let (_, sinks) = zerohop_engine::MemorySink::ladder(1);
        let mut seg = s.begin_segment_with(sinks, clip(500)).expect("segment");
        seg.push(input.clone()).expect("push");
        let r = seg.finish().expect("finish");
        let st = &r.renditions[0];
        assert!(st.frames_clipped > 0 && st.frames_clipped + st.frames_out == st.frames_in, "{st:?}");
        let (_, sinks) = zerohop_engine::MemorySink::ladder(1);
        let mut seg = s.begin_segment_with(sinks, clip(60_000)).expect("segment");
        seg.push(input).expect("push");
        assert_eq!(seg.finish().map(|_| ()).expect_err("past the end").code(), "empty_clip");
    }

    #[test]
    fn cpu_is_always_available_and_auto_falls_back() {
        let cpu = factory(Accel::Cpu, &[], GpuOptions::default()).expect("cpu");
        assert_eq!((cpu.backend.as_str(), cpu.devices.len()), ("cpu", 0));
        if std::env::var_os("ZEROHOP_TEST_HAS_GPU").is_none() {
            assert_eq!(factory(Accel::Auto, &[0], GpuOptions::default()).expect("auto").backend, "cpu");
            for encode in [GpuEncode::Auto, GpuEncode::Nvenc, GpuEncode::Cpu] {
                let o = GpuOptions { encode, preset: NvencPreset::P4 };
                assert!(factory(Accel::Cuda, &[0], o).is_err(), "cuda without a GPU is an error, not a panic");
            }
        }
    }
}
