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
use zerohop_engine::scale::ScaleFilter;
use zerohop_engine::{Ladder, Session, SessionConfig, StreamSession};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Accel {
    Cpu,
    Cuda,
    Auto,
}

/// Where a GPU session encodes: `--gpu-encode auto|nvenc|cpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum GpuEncode {
    /// NVENC where the GPU has one; GPUs without (H100, H200, A100) decode and scale on the GPU
    /// and encode on the CPU.
    #[default]
    Auto,
    /// NVENC, or refuse to start.
    Nvenc,
    /// Decode and scale on the GPU, encode on the CPU, even where NVENC exists.
    Cpu,
}

#[cfg(feature = "cuda")]
impl From<GpuEncode> for zerohop_engine::cuda::ladder_device::EncodeOn {
    fn from(e: GpuEncode) -> Self {
        use zerohop_engine::cuda::ladder_device::EncodeOn;
        match e {
            GpuEncode::Auto => EncodeOn::Auto,
            GpuEncode::Nvenc => EncodeOn::Nvenc,
            GpuEncode::Cpu => EncodeOn::Host,
        }
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
    encode: GpuEncode,
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
pub fn factory(accel: Accel, gpus: &[usize], encode: GpuEncode) -> Result<SessionFactory> {
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

#[cfg(feature = "cuda")]
mod gpu {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use anyhow::{Context, Result};
    use zerohop_control::relay::{DeviceCaps, SessionFactory};
    use zerohop_engine::accel::AccelSession;
    use zerohop_engine::cuda::ladder_device::{CudaLadderDevice, EncodeOn};
    use zerohop_engine::{Ladder, RenditionSink, SegmentInput, StreamSession, TranscodeError};

    /// One GPU's open sessions and their pixel rate.
    struct GpuLoad {
        ordinal: usize,
        sessions: AtomicU64,
        pixel_rate: AtomicU64,
    }

    impl GpuLoad {
        fn publish(&self) {
            let gpu = self.ordinal.to_string();
            metrics::gauge!("zerohop_gpu_sessions", "gpu" => gpu.clone())
                .set(self.sessions.load(Ordering::Relaxed) as f64);
            metrics::gauge!("zerohop_gpu_pixel_rate", "gpu" => gpu).set(self.pixel_rate.load(Ordering::Relaxed) as f64);
        }
    }

    /// A session placed on a GPU; its load is given back when it closes.
    struct OnGpu {
        inner: AccelSession<CudaLadderDevice>,
        gpu: Arc<GpuLoad>,
        weight: u64,
    }

    impl Drop for OnGpu {
        fn drop(&mut self) {
            self.gpu.sessions.fetch_sub(1, Ordering::Relaxed);
            self.gpu.pixel_rate.fetch_sub(self.weight, Ordering::Relaxed);
            self.gpu.publish();
        }
    }

    impl StreamSession for OnGpu {
        fn ladder(&self) -> &Ladder {
            StreamSession::ladder(&self.inner)
        }
        fn begin_segment(
            &mut self,
            sinks: Vec<Box<dyn RenditionSink>>,
        ) -> Result<Box<dyn SegmentInput + '_>, TranscodeError> {
            StreamSession::begin_segment(&mut self.inner, sinks)
        }
        fn backend(&self) -> String {
            self.inner.backend()
        }
    }

    pub fn factory(gpus: &[usize], encode: EncodeOn) -> Result<SessionFactory> {
        let gpus: Vec<usize> = if gpus.is_empty() { vec![0] } else { gpus.to_vec() };
        // Fail at start, not at the first segment: every GPU must open with NVDEC (and NVENC
        // unless it has none, or the CPU encodes by choice). What each one does is stated in
        // the node's capabilities.
        let names = zerohop_engine::cuda::driver::gpus(0).context("listing GPUs")?;
        let mut devices = Vec::new();
        for &g in &gpus {
            let d = CudaLadderDevice::open_with(g, 1, encode).with_context(|| format!("GPU {g}"))?;
            let encode_on = if d.encodes_on_nvenc() { "gpu" } else { "cpu" };
            if !d.encodes_on_nvenc() {
                eprintln!("GPU {g}: decode and scale on the GPU, encode on the CPU ({d:?})");
            }
            devices.push(DeviceCaps {
                id: format!("cuda:{g}"),
                name: names.iter().find(|i| i.ordinal == g).map(|i| i.name.clone()).unwrap_or_default(),
                decode: "gpu".into(),
                scale: "gpu".into(),
                encode: encode_on.into(),
            });
        }
        let loads: Vec<Arc<GpuLoad>> = gpus
            .iter()
            .map(|&ordinal| Arc::new(GpuLoad { ordinal, sessions: AtomicU64::new(0), pixel_rate: AtomicU64::new(0) }))
            .collect();
        let name = format!("cuda:{}", gpus.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(","));
        Ok(SessionFactory::new(name, move |ladder: &Ladder| {
            let weight = super::pixel_rate(ladder);
            let gpu = loads
                .iter()
                .min_by_key(|l| (l.pixel_rate.load(Ordering::Relaxed), l.ordinal))
                .expect("at least one GPU")
                .clone();
            let device = CudaLadderDevice::open_with(gpu.ordinal, ladder.len(), encode)
                .map_err(|e| TranscodeError::from(zerohop_engine::accel::DeviceError::from(e)))?;
            gpu.sessions.fetch_add(1, Ordering::Relaxed);
            gpu.pixel_rate.fetch_add(weight, Ordering::Relaxed);
            gpu.publish();
            Ok(Box::new(OnGpu { inner: AccelSession::new(device, ladder.clone()), gpu, weight })
                as Box<dyn StreamSession>)
        })
        .with_devices(devices))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_rate_sums_the_rungs() {
        let l: Ladder = r#"[{"name":"a","width":1280,"height":720,"bitrate":3000000,"fps":30},
                          {"name":"b","width":640,"height":360,"bitrate":800000,"fps":15}]"#
            .parse()
            .expect("ladder");
        assert_eq!(pixel_rate(&l), 1280 * 720 * 30 + 640 * 360 * 15);
    }

    #[test]
    fn cpu_is_always_available_and_auto_falls_back() {
        let cpu = factory(Accel::Cpu, &[], GpuEncode::Auto).expect("cpu");
        assert_eq!((cpu.backend.as_str(), cpu.devices.len()), ("cpu", 0));
        if std::env::var_os("ZEROHOP_TEST_HAS_GPU").is_none() {
            assert_eq!(factory(Accel::Auto, &[0], GpuEncode::Auto).expect("auto").backend, "cpu");
            for encode in [GpuEncode::Auto, GpuEncode::Nvenc, GpuEncode::Cpu] {
                assert!(factory(Accel::Cuda, &[0], encode).is_err(), "cuda without a GPU is an error, not a panic");
            }
        }
    }
}
