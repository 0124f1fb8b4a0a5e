//! [`LadderDevice`] on an NVIDIA GPU: NVDEC decodes into its own surfaces, each picture is
//! mapped, scaled into one NVENC input buffer per rung by one launch of the fused kernel on the
//! scaling stream, and unmapped; NVENC (handed the same stream) encodes from those buffers.
//! Pictures never leave device memory: only the access units in and the bitstreams out cross
//! the bus, and [`DeviceTraffic`] counts exactly those.
//!
//! GPUs without NVENC (H100, H200, A100) keep decode and scale on the GPU and encode on the
//! CPU ([`EncodeOn`]): each rung's scaled picture is copied to the host once and handed to
//! `accel::host_encode`, and those copies are counted as frame bytes, so a run says which path
//! it took.
//!
//! Ownership: the decoder and every NVENC session hold an `Arc` of the GPU's
//! [`DeviceContext`] and bind it to release; a session registers its pool's buffers by borrow,
//! and each registration keeps its buffer's allocation until unregistered; `Drop` releases the
//! rungs (each pool's session before its buffers) and then the decoder, and failed releases are
//! counted ([`CudaLadderDevice::release_failures`]).
//!
//! Not run on a GPU in this repository's CI (there is none): `hw-ci/run` exercises it on GPU
//! runners. Here the whole device runs against test doubles of NVDEC, NVENC and the GPU
//! (`composed`, through [`LadderGpu`]), and the pipeline above it against `accel::emulated`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::CudaError;
use super::context::DeviceContext;
use super::driver::{DeviceNv12, Gpu, ScaleTarget, pinned_picture};
use super::nvdec::{CuvidApi, MappedFrame, NvDecoder};
use super::nvenc::{Encoder, EncoderConfig, InputBuffer, NvencApi, Preset};
use super::rung_pools::{self, RungPools};
use crate::accel::host_encode::{HostEncoders, HostNv12};
use crate::accel::{
    DeviceAu, DeviceError, DevicePicture, DeviceTraffic, EncodeJob, LadderDevice, RungPlan, RungSettings,
};

/// Where a CUDA ladder encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodeOn {
    /// NVENC when the GPU has it, else the CPU (after GPU decode and scale).
    #[default]
    Auto,
    /// NVENC or an error (`no_nvenc`).
    Nvenc,
    /// The CPU, even where NVENC exists (hw-ci checks this path on any GPU).
    Host,
}

/// How a ladder is opened on a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LadderOptions {
    pub encode: EncodeOn,
    /// NVENC preset; P1 (fastest) by default, with low-latency tuning: live segments.
    pub preset: Preset,
}

impl Default for LadderOptions {
    fn default() -> LadderOptions {
        LadderOptions { encode: EncodeOn::Auto, preset: Preset::P1 }
    }
}

/// Where a ladder encodes, and, on the CPU, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding<A> {
    Nvenc(A),
    Cpu { why: String },
}

/// What `want` comes to, given the GPU's NVENC probe (run only when needed). A busy NVENC
/// (session limit) or a broken driver stays an error: only a GPU without NVENC
/// (`NO_ENCODE_DEVICE`/`UNSUPPORTED_DEVICE`) or a driver without its video part (no
/// `libnvidia-encode`: a container without the `video` capability, or too old a driver) falls
/// back, and the fallback says why.
pub fn choose_encoder<A>(
    want: EncodeOn,
    probe: impl FnOnce() -> Result<A, CudaError>,
) -> Result<Encoding<A>, CudaError> {
    match want {
        EncodeOn::Host => Ok(Encoding::Cpu { why: "CPU encode chosen (--gpu-encode cpu)".into() }),
        EncodeOn::Nvenc => probe().map(Encoding::Nvenc),
        EncodeOn::Auto => match probe() {
            Ok(a) => Ok(Encoding::Nvenc(a)),
            Err(
                e @ (CudaError::NoEncoder { .. }
                | CudaError::NoVideoCapability { .. }
                | CudaError::NoDriver { .. }
                | CudaError::MissingSymbol { .. }),
            ) => Ok(Encoding::Cpu { why: e.to_string() }),
            Err(e) => Err(e),
        },
    }
}

/// Per GPU, whether an NVENC session opened (a definite answer: a busy encoder is not one).
/// Probed once per process, because every probe takes a session for a moment.
fn nvenc_probed() -> &'static Mutex<HashMap<usize, Result<(), String>>> {
    static PROBED: OnceLock<Mutex<HashMap<usize, Result<(), String>>>> = OnceLock::new();
    PROBED.get_or_init(Default::default)
}

fn probe_nvenc(gpu: &Gpu) -> Result<Arc<NvencApi>, CudaError> {
    let api = NvencApi::load()?;
    let known = nvenc_probed().lock().get(&gpu.ordinal).cloned();
    let r = match known {
        Some(r) => r,
        None => {
            let r = match gpu.probe_sessions(&api, 1) {
                Ok(_) => Ok(()),
                Err(CudaError::NoEncoder { why, .. }) => Err(why),
                Err(e) => return Err(e),
            };
            nvenc_probed().lock().insert(gpu.ordinal, r.clone());
            r
        }
    };
    r.map(|()| api).map_err(|why| CudaError::NoEncoder { ordinal: gpu.ordinal, why })
}

/// What the ladder needs of a GPU: its context, buffers, the fused kernel, and (for CPU
/// encode) the download of the scaled pictures. [`Gpu`] is the real one; the tests below drive
/// the whole device through a host-memory double of it, with the recording doubles of NVDEC and
/// NVENC.
pub trait LadderGpu: Send {
    /// A rung picture's buffer: an NVENC input (registrations keep its allocation).
    type Buffer: InputBuffer + Send;
    /// The context (and scaling stream) decoders and encoders are made on.
    fn context(&self) -> &Arc<DeviceContext>;
    /// An NV12 buffer for one rung picture.
    fn alloc(&self, width: u32, height: u32) -> Result<Self::Buffer, CudaError>;
    /// One kernel launch from the mapped decoder picture into the device buffer of every rung
    /// of `rungs`, then (CPU encode) each rung's buffer copied into its host picture; all of it
    /// waited for with one sync (the decoder picture is unmapped when the caller returns).
    /// Returns the bytes copied to the host.
    fn scale(&self, src: &MappedFrame<'_>, rungs: &mut [ScaleTarget<'_, Self::Buffer>]) -> Result<u64, CudaError>;
}

impl LadderGpu for Gpu {
    type Buffer = DeviceNv12;
    fn context(&self) -> &Arc<DeviceContext> {
        Gpu::context(self)
    }
    fn alloc(&self, width: u32, height: u32) -> Result<DeviceNv12, CudaError> {
        self.alloc_nv12(width, height)
    }
    fn scale(&self, src: &MappedFrame<'_>, rungs: &mut [ScaleTarget<'_>]) -> Result<u64, CudaError> {
        self.scale_mapped(src, rungs)
    }
}

/// The encoders of a ladder on one GPU.
enum Encoders {
    /// One NVENC session per rung, in its [`RungPool`].
    Nvenc(Arc<NvencApi>),
    /// The CPU, fed with pictures copied from the rung buffers into page-locked host buffers
    /// (recycled by the encoders), kept by rung and picture handle until encoded or released.
    Host(HostEncoders, Vec<HashMap<usize, HostNv12>>),
}

/// NVENC input buffers per rung before the stream's format is known (see [`buffers_per_rung`]).
const SURFACES_PER_RUNG: usize = 4;

/// Pictures each rung's NVENC session keeps in flight before locking their bitstreams (NvEncoder's
/// default extra output delay is 3): every rung's picture is submitted before the oldest is
/// locked, so the rungs' encodes overlap instead of running one after another.
const NVENC_OUTPUT_DELAY: u32 = 3;

/// Pictures NVENC may hold per rung: its bitstream buffers (B-frames + output delay + 2, see
/// `Encoder::open`; the ladder encodes without B-frames).
const ENCODER_DELAY: usize = NVENC_OUTPUT_DELAY as usize + 2;

/// NVENC input buffers per rung for a decoder with `decode_surfaces` surfaces: one parse call
/// can release every picture the decoder holds (the end-of-segment flush releases the whole
/// DPB), each scaled into a buffer of every rung before any is encoded, and the encoder holds
/// up to [`ENCODER_DELAY`] more.
fn buffers_per_rung(decode_surfaces: u32) -> usize {
    decode_surfaces as usize + ENCODER_DELAY
}

impl From<CudaError> for DeviceError {
    fn from(e: CudaError) -> DeviceError {
        let api = match &e {
            CudaError::Driver { api, .. } | CudaError::Nvenc { api, .. } | CudaError::Cuvid { api, .. } => {
                (*api).to_string()
            }
            CudaError::SessionLimit { api, .. } => (*api).to_string(),
            CudaError::NoDriver { lib, .. }
            | CudaError::MissingSymbol { lib, .. }
            | CudaError::NoVideoCapability { lib, .. } => (*lib).to_string(),
            CudaError::NoEncoder { .. } => "NVENC".into(),
            CudaError::NoDecoder { .. } => "NVDEC".into(),
            CudaError::Unsupported { .. } => "CUDA".into(),
            CudaError::Nvrtc(_) => "NVRTC".into(),
            CudaError::Invalid(_) => "zerohop".into(),
        };
        DeviceError { code: e.code(), api, message: e.to_string() }
    }
}

/// A rung's NVENC input buffers by size, with the NVENC session of each size.
type Pools<B> = RungPools<B, (Encoder, RungSettings)>;
type Pool<B> = rung_pools::Pool<B, (Encoder, RungSettings)>;

/// One stream's decoder and encoders on one GPU. Each decoder and encoder holds an `Arc` of the
/// GPU's context, so none outlives it; `Drop` releases the rungs (each pool's encoder before its
/// buffers) and then the decoder.
pub struct CudaLadderDevice<G: LadderGpu = Gpu> {
    decoder: NvDecoder,
    rungs: Vec<Pools<G::Buffer>>,
    encoders: Encoders,
    preset: Preset,
    gpu: G,
    traffic: DeviceTraffic,
    name: String,
    /// Why this ladder encodes on the CPU (set by `open_with`).
    cpu_encode_why: Option<String>,
}

impl<G: LadderGpu> std::fmt::Debug for CudaLadderDevice<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl CudaLadderDevice {
    /// A decoder on GPU `ordinal` for a ladder of `rungs` renditions, encoding on NVENC where
    /// the GPU has it; encoders and their buffers are created at the first picture (their sizes
    /// follow the source's).
    pub fn open(ordinal: usize, rungs: usize) -> Result<CudaLadderDevice, CudaError> {
        CudaLadderDevice::open_with(ordinal, rungs, LadderOptions::default())
    }

    /// As [`open`](Self::open), encoding where and how `options` say.
    pub fn open_with(ordinal: usize, rungs: usize, options: LadderOptions) -> Result<CudaLadderDevice, CudaError> {
        let gpu = Gpu::open(ordinal)?;
        let (nvenc, why) = match choose_encoder(options.encode, || probe_nvenc(&gpu))? {
            Encoding::Nvenc(api) => (Some(api), None),
            Encoding::Cpu { why } => (None, Some(why)),
        };
        let mut device = CudaLadderDevice::with_parts(gpu, CuvidApi::load()?, nvenc, rungs, options.preset)?;
        device.cpu_encode_why = why;
        Ok(device)
    }
}

impl<G: LadderGpu> CudaLadderDevice<G> {
    /// A ladder of `rungs` on `gpu`, decoding through `cuvid` and encoding on NVENC through
    /// `nvenc`, or on the CPU when `None`.
    pub fn with_parts(
        gpu: G,
        cuvid: Arc<CuvidApi>,
        nvenc: Option<Arc<NvencApi>>,
        rungs: usize,
        preset: Preset,
    ) -> Result<CudaLadderDevice<G>, CudaError> {
        let ordinal = gpu.context().ordinal();
        let encoders = match nvenc {
            Some(api) => Encoders::Nvenc(api),
            None => Encoders::Host(
                HostEncoders::new(rungs).map_err(|e| CudaError::Invalid(e.to_string()))?,
                (0..rungs).map(|_| HashMap::new()).collect(),
            ),
        };
        let decoder = NvDecoder::new(cuvid, gpu.context())?;
        let name = match &encoders {
            Encoders::Nvenc(_) => format!("cuda:{ordinal} (NVDEC, CUDA scale, NVENC {preset:?})"),
            Encoders::Host(..) => format!("cuda:{ordinal} (NVDEC, CUDA scale, CPU encode)"),
        };
        Ok(CudaLadderDevice {
            name,
            gpu,
            encoders,
            preset,
            decoder,
            rungs: (0..rungs).map(|_| RungPools::new(SURFACES_PER_RUNG)).collect(),
            traffic: DeviceTraffic::default(),
            cpu_encode_why: None,
        })
    }

    /// Whether this ladder encodes on NVENC (else on the CPU).
    pub fn encodes_on_nvenc(&self) -> bool {
        matches!(self.encoders, Encoders::Nvenc(_))
    }

    /// Which engine encodes and why, for the start-up line of each GPU: "NVENC", or "the CPU:
    /// <reason>" (no NVENC on this GPU, no video capability in this container, or chosen).
    pub fn encoder_and_why(&self) -> String {
        match (&self.encoders, &self.cpu_encode_why) {
            (Encoders::Nvenc(_), _) => format!("NVENC ({:?})", self.preset),
            (Encoders::Host(..), Some(why)) => format!("the CPU: {why}"),
            (Encoders::Host(..), None) => "the CPU".into(),
        }
    }

    /// Releases that failed in `Drop` for this device's decoder and encoders (and anything else
    /// made on its GPU context).
    pub fn release_failures(&self) -> u64 {
        self.gpu.context().release_failures()
    }

    fn decoded(
        &mut self,
        flush: bool,
        au: &[u8],
        pts: i64,
        plan: RungPlan<'_>,
    ) -> Result<Vec<DevicePicture>, DeviceError> {
        let ctx = self.gpu.context().clone();
        let _current = ctx.push()?;
        let CudaLadderDevice { gpu, decoder, rungs, encoders, traffic, .. } = self;
        let mut pics = Vec::new();
        let mut on_frame = |m: &MappedFrame<'_>| -> Result<(), CudaError> {
            // Pools made from here on hold what one parse call can release (defect: a fixed 4
            // ran out when an end-of-segment flush released the whole DPB).
            for pools in rungs.iter_mut() {
                pools.set_per_pool(buffers_per_rung(m.decode_surfaces()));
            }
            // Only the rungs whose cadence keeps the picture get a buffer and a scaled copy.
            let want = plan(m.pts(), m.width(), m.height());
            let mut taken = vec![None; want.len()];
            // CPU encode: a page-locked host picture per kept rung (recycled by the encoders),
            // filled by the same launch-and-sync as the rung buffers.
            let mut host = Vec::new();
            for (r, (pools, size)) in rungs.iter_mut().zip(&want).enumerate() {
                let Some(size) = *size else { continue };
                let handle = pools.take(size, || gpu.alloc(size.0, size.1));
                let picture = match (&handle, &mut *encoders) {
                    (Ok(_), Encoders::Host(enc, _)) => {
                        let (w, h) = size;
                        Some(enc.buffer_or(r, (w, h, HostNv12::row_bytes(w)), || pinned_picture(gpu.context(), w, h)))
                    }
                    _ => None,
                };
                let failed = match (handle, picture.transpose()) {
                    (Ok(handle), Ok(picture)) => {
                        taken[r] = Some(handle);
                        host.extend(picture.map(|p| (r, p)));
                        None
                    }
                    (Ok(handle), Err(e)) => {
                        taken[r] = Some(handle);
                        Some(e)
                    }
                    (Err(e), _) => Some(e),
                };
                if let Some(e) = failed {
                    for (pools, handle) in rungs.iter_mut().zip(&taken) {
                        if let Some(handle) = *handle {
                            pools.release(handle);
                        }
                    }
                    return Err(e);
                }
            }
            // Each kept rung's buffer, with its host picture on the CPU-encode path.
            let mut pictures = host.iter_mut().peekable();
            let mut targets = Vec::new();
            for (r, (p, h)) in rungs.iter_mut().zip(&taken).enumerate() {
                let Some(h) = *h else { continue };
                let host = pictures.next_if(|(hr, _)| *hr == r).map(|(_, p)| p);
                targets.push(ScaleTarget { device: p.surface_mut(h).expect("just taken"), host });
            }
            // Host pictures are made only for kept rungs (above), so each found its rung.
            debug_assert!(pictures.next().is_none(), "a host picture for a rung not kept");
            // Waited for: the decoder surface is unmapped when this returns. No launch when no
            // rung keeps the picture.
            if !targets.is_empty() {
                traffic.frame_bytes += gpu.scale(m, &mut targets)?;
            }
            if let Encoders::Host(_, downloaded) = encoders {
                for (r, picture) in host {
                    downloaded[r].insert(taken[r].expect("kept"), picture);
                }
            }
            pics.push(DevicePicture { pts: m.pts(), width: m.width(), height: m.height(), surfaces: taken });
            Ok(())
        };
        if flush {
            decoder.flush(&mut on_frame)?;
        } else {
            decoder.push(au, pts, &mut on_frame)?;
        }
        self.traffic.bitstream_in += au.len() as u64;
        Ok(pics)
    }
}

/// Everything a rung's NVENC session still holds; its buffers are free again.
fn flush_pool<B>(pool: &mut Pool<B>, aus: &mut Vec<DeviceAu>) -> Result<(), CudaError> {
    if let Some((enc, _)) = pool.encoder.as_mut() {
        enc.flush(&mut |e| aus.push(DeviceAu { data: e.data.to_vec(), pts: e.pts as i64, keyframe: e.keyframe }))?;
    }
    pool.returned(0);
    Ok(())
}

impl<G: LadderGpu> LadderDevice for CudaLadderDevice<G> {
    fn decode(&mut self, au: &[u8], pts: i64, plan: RungPlan<'_>) -> Result<Vec<DevicePicture>, DeviceError> {
        self.decoded(false, au, pts, plan)
    }

    fn flush(&mut self, plan: RungPlan<'_>) -> Result<Vec<DevicePicture>, DeviceError> {
        self.decoded(true, &[], 0, plan)
    }

    fn encode(&mut self, job: EncodeJob<'_>) -> Result<Vec<DeviceAu>, DeviceError> {
        let EncodeJob { rung, surface, pts, keyframe, settings: s } = job;
        let mut aus = Vec::new();
        let (older, pool, slot) = self.rungs[rung].for_encode(surface)?;
        // Pictures of an older size are all encoded: their sessions' last units come first.
        for mut old in older {
            flush_pool(&mut old, &mut aus)?;
        }
        let nvenc = match &mut self.encoders {
            Encoders::Host(host, downloaded) => {
                // Downloaded when it was scaled: the device buffer is free again.
                Pools::<G::Buffer>::free(pool, slot);
                let Some(buf) = downloaded[rung].remove(&surface) else {
                    return Err(CudaError::Invalid(format!("no downloaded picture {surface} in rung {rung}")).into());
                };
                aus.extend(host.encode(rung, buf, pts, keyframe, s)?);
                self.traffic.bitstream_out += aus.iter().map(|a| a.data.len() as u64).sum::<u64>();
                return Ok(aus);
            }
            Encoders::Nvenc(api) => api.clone(),
        };
        if pool.encoder.as_ref().is_none_or(|(_, cur)| (cur.width, cur.height) != (s.width, s.height)) {
            pool.encoder = None; // release the old session (and its registrations) first
            let inputs: Vec<&G::Buffer> = pool.surfaces.iter().collect();
            let cfg = EncoderConfig {
                width: s.width,
                height: s.height,
                fps_num: (s.fps * 1000.0).round().max(1.0) as u32,
                fps_den: 1000,
                bitrate: s.bitrate,
                preset: self.preset,
                low_latency: true,
                b_frames: 0,
                profile_idc: 100,
                output_delay: NVENC_OUTPUT_DELAY,
            };
            let enc = Encoder::open(nvenc, self.gpu.context(), cfg, &inputs)?;
            pool.encoder = Some((enc, *s));
        } else if let Some((enc, cur)) = pool.encoder.as_mut()
            && (cur.bitrate != s.bitrate || cur.fps != s.fps)
        {
            // The rate the cadence measured (the session opened at the first picture's guess)
            // or a new bitrate: no new session, no IDR.
            enc.set_rate(s.bitrate, (s.fps * 1000.0).round().max(1.0) as u32, 1000)?;
            (cur.bitrate, cur.fps) = (s.bitrate, s.fps);
        }
        let (enc, _) = pool.encoder.as_mut().expect("opened above");
        pool.in_flight.push_back(slot);
        let r = enc.encode(slot, pts as u64, keyframe, &mut |e| {
            aus.push(DeviceAu { data: e.data.to_vec(), pts: e.pts as i64, keyframe: e.keyframe })
        });
        // Buffers whose pictures came back are free for the kernel again.
        let held = enc.in_flight();
        pool.returned(held);
        r?;
        self.traffic.bitstream_out += aus.iter().map(|a| a.data.len() as u64).sum::<u64>();
        Ok(aus)
    }

    fn release(&mut self, rung: usize, surface: usize) {
        self.rungs[rung].release(surface);
        if let Encoders::Host(host, downloaded) = &mut self.encoders
            && let Some(buf) = downloaded[rung].remove(&surface)
        {
            host.give_back(rung, buf);
        }
    }

    fn finish(&mut self, rung: usize) -> Result<Vec<DeviceAu>, DeviceError> {
        let mut aus = Vec::new();
        match &mut self.encoders {
            Encoders::Host(host, _) => aus.extend(host.finish(rung)?),
            Encoders::Nvenc(_) => {
                for pool in self.rungs[rung].all() {
                    flush_pool(pool, &mut aus)?;
                }
            }
        }
        self.rungs[rung].drop_older();
        self.traffic.bitstream_out += aus.iter().map(|a| a.data.len() as u64).sum::<u64>();
        Ok(aus)
    }

    fn traffic(&self) -> DeviceTraffic {
        // With NVENC, no picture is copied (this device calls no memcpy for pictures): frame
        // bytes stay 0. With CPU encode, every rung picture's download is counted.
        self.traffic
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

impl<G: LadderGpu> Drop for CudaLadderDevice<G> {
    /// The rungs first (each pool's NVENC session unregisters its inputs before the buffers go),
    /// then the decoder; each binds the GPU context itself and records what fails.
    fn drop(&mut self) {
        self.rungs.clear();
    }
}

#[cfg(test)]
mod composed;

#[cfg(test)]
mod tests {
    use super::*;

    fn no_encoder() -> CudaError {
        CudaError::NoEncoder { ordinal: 0, why: "nvEncOpenEncodeSessionEx: NV_ENC_ERR_NO_ENCODE_DEVICE".into() }
    }

    /// Defect 9: a driver without its video part (a container without the `video` capability)
    /// is said as such, never as "no NVIDIA driver here".
    #[test]
    fn a_missing_video_library_with_a_driver_is_no_video_capability() {
        use crate::cuda::error::video_library_missing;
        let e = video_library_missing("libnvidia-encode.so.1", "not found".into(), true);
        assert_eq!(e.code(), "gpu_unavailable");
        let m = e.to_string();
        assert!(m.contains("NVIDIA_DRIVER_CAPABILITIES") && m.contains("video"), "{m}");
        assert!(!m.contains("no NVIDIA driver"), "{m}");
        let e = video_library_missing("libnvcuvid.so.1", "not found".into(), false);
        assert!(matches!(e, CudaError::NoDriver { .. }), "no libcuda either: no driver");
        let why = match choose_encoder::<()>(EncodeOn::Auto, || {
            Err(video_library_missing("libnvidia-encode.so.1", "not found".into(), true))
        }) {
            Ok(Encoding::Cpu { why }) => why,
            other => panic!("{other:?}"),
        };
        assert!(why.contains("NVIDIA_DRIVER_CAPABILITIES"), "the fallback says why: {why}");
    }

    #[test]
    fn only_a_missing_encoder_falls_back_to_the_cpu() {
        let cpu = |why: &str| Ok(Encoding::Cpu { why: why.to_string() });
        // Forced CPU encode never takes an NVENC session to probe.
        assert_eq!(
            choose_encoder::<()>(EncodeOn::Host, || panic!("probed")),
            cpu("CPU encode chosen (--gpu-encode cpu)")
        );
        assert_eq!(choose_encoder(EncodeOn::Auto, || Ok(7)), Ok(Encoding::Nvenc(7)));
        assert_eq!(choose_encoder(EncodeOn::Nvenc, || Ok(7)), Ok(Encoding::Nvenc(7)));
        // H100/H200/A100, or a driver without libnvidia-encode: decode and scale stay on the GPU,
        // and the fallback says why.
        assert_eq!(choose_encoder::<()>(EncodeOn::Auto, || Err(no_encoder())), cpu(&no_encoder().to_string()));
        let no_video = CudaError::NoVideoCapability { lib: "libnvidia-encode.so.1", why: "not found".into() };
        assert_eq!(choose_encoder::<()>(EncodeOn::Auto, || Err(no_video.clone())), cpu(&no_video.to_string()));
        // Asked for NVENC: its absence is the error, with its code.
        let e = choose_encoder::<()>(EncodeOn::Nvenc, || Err(no_encoder())).expect_err("no NVENC");
        assert_eq!(e.code(), "no_nvenc");
        // A busy or failing encoder is not a missing one: the session fails, nothing falls back.
        let busy = CudaError::SessionLimit {
            ordinal: 0,
            api: "nvEncOpenEncodeSessionEx",
            status: "NV_ENC_ERR_OUT_OF_MEMORY".into(),
        };
        assert_eq!(choose_encoder::<()>(EncodeOn::Auto, || Err(busy.clone())), Err(busy));
        let broken = CudaError::Driver { api: "cuMemAlloc", status: "CUDA_ERROR_OUT_OF_MEMORY".into() };
        assert_eq!(choose_encoder::<()>(EncodeOn::Auto, || Err(broken.clone())), Err(broken));
    }
}
