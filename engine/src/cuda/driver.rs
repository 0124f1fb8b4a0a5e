//! The CUDA driver side, through cudarc (dynamic loading, CUDA 12.9 bindings, its result layer
//! and safe owners): finding GPUs, one context and stream per GPU ([`DeviceContext`]), the
//! ladder kernel (the SASS embedded for the GPU's architecture, else PTX compiled by NVRTC at run
//! time, once per architecture per process; one module per GPU context), device buffers for NVENC ([`DeviceNv12`]:
//! a pitched `cuMemAlloc` allocation, never a stream-ordered one, see [`DeviceAllocation`]), and
//! a kernel self-test against the CPU emulation.
//!
//! The kernel is launched only on owned or borrowed device objects: a [`MappedFrame`] or a
//! [`DeviceNv12`] as source, `&mut DeviceNv12` as destinations, all checked to be of this GPU's
//! context; device addresses appear only inside the `unsafe` launch.
//!
//! cudarc panics when a library is missing, so every entry point here first checks that
//! `libcuda` (and for run-time compilation `libnvrtc`) can be loaded and returns
//! [`CudaError::NoDriver`] otherwise.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg};
use zerohop_kernels::{BLOCK, MAX_RUNGS, Nv12, ZhLadder, ZhPlane};

use super::context::Copy2d;
pub use super::context::DeviceContext;
use super::error::{CudaError, driver_error};
pub use super::memory::{DeviceNv12, pinned_picture};
use super::nvdec::{CuvidApi, DecodeCaps, MappedFrame};
use super::nvenc::{Encoder, EncoderConfig, NvencApi, Preset};
use crate::accel::host_nv12::HostNv12;

/// Checks that the CUDA driver library loads and initialises. Never panics.
pub fn driver() -> Result<(), CudaError> {
    // SAFETY: only tries to dlopen the library candidates; nothing is called through them.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(CudaError::NoDriver { lib: "libcuda.so.1", why: "not found by the dynamic loader".into() });
    }
    cudarc::driver::result::init().map_err(driver_error("cuInit"))
}

/// How many GPUs the driver sees (after [`driver`] succeeded).
pub fn device_count() -> Result<usize, CudaError> {
    driver()?;
    let n = CudaContext::device_count().map_err(driver_error("cuDeviceGetCount"))?;
    Ok(n.max(0) as usize)
}

/// What one GPU offers zerohop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    pub ordinal: usize,
    pub name: String,
    pub memory_bytes: usize,
    pub compute_capability: (i32, i32),
    /// NVDEC for 8-bit 4:2:0 H.264, or why not.
    pub nvdec: Result<DecodeCaps, String>,
    /// NVENC H.264 sessions that opened in the probe, or why none did: `NoEncoder` only when
    /// the GPU has none (H100, H200, A100), `NoVideoCapability` when the driver's video part is
    /// missing, anything else a failure of the probe; `None` when not probed.
    pub nvenc_sessions: Option<Result<u32, CudaError>>,
}

/// Every GPU with its decode/encode capabilities. `probe_sessions`: open up to this many NVENC
/// sessions to find the real limit (Livepeer's self-test, generalised); 0 skips the probe.
pub fn gpus(probe_sessions: u32) -> Result<Vec<GpuInfo>, CudaError> {
    let n = device_count()?;
    let cuvid = CuvidApi::load();
    let nvenc = NvencApi::load();
    let mut out = Vec::new();
    for ordinal in 0..n {
        // Capabilities need no kernel (and so no NVRTC).
        let gpu = Gpu::open_bare(ordinal)?;
        let ctx = &gpu.ctx;
        let nvdec = match &cuvid {
            Ok(api) => api.h264_caps(&gpu.device).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let nvenc_sessions = match &nvenc {
            Ok(api) if probe_sessions > 0 => Some(gpu.probe_sessions(api, probe_sessions)),
            Ok(_) => None,
            Err(e) => Some(Err(e.clone())),
        };
        out.push(GpuInfo {
            ordinal,
            name: ctx.name().map_err(driver_error("cuDeviceGetName"))?,
            memory_bytes: ctx.total_mem().map_err(driver_error("cuDeviceTotalMem"))?,
            compute_capability: ctx.compute_capability().map_err(driver_error("cuDeviceGetAttribute"))?,
            nvdec,
            nvenc_sessions,
        });
    }
    Ok(out)
}

/// Opens NVENC sessions (256x256, P1) on `ctx` until one fails or `max` are open; returns how
/// many opened. `NoEncoder` only when the first open says the GPU has no encoder
/// (`NV_ENC_ERR_NO_ENCODE_DEVICE` / `NV_ENC_ERR_UNSUPPORTED_DEVICE`: H100, H200, A100); a busy
/// encoder (`SessionLimit`) or any other failure (a buffer NVENC would not register, a driver
/// error) is returned as it is, never taken for "no NVENC".
pub fn probe_sessions(ctx: &Arc<DeviceContext>, api: &Arc<NvencApi>, max: u32) -> Result<u32, CudaError> {
    let buf = DeviceNv12::alloc(ctx, 256, 256)?;
    let cfg = EncoderConfig {
        width: 256,
        height: 256,
        fps_num: 30,
        fps_den: 1,
        bitrate: 500_000,
        preset: Preset::P1,
        low_latency: true,
        b_frames: 0,
        profile_idc: 77,
        output_delay: 0,
    };
    let mut open: Vec<Encoder> = Vec::new();
    while open.len() < max as usize {
        match Encoder::open(api.clone(), ctx, cfg.clone(), &[&buf]) {
            Ok(e) => open.push(e),
            Err(e) if open.is_empty() => return Err(e),
            // The limit (or a failure) after at least one session: what opened is the answer.
            Err(_) => break,
        }
    }
    Ok(open.len() as u32)
}

/// The ladder kernel's parameter block as a launch argument.
#[repr(transparent)]
struct LadderArg(ZhLadder);

// SAFETY: `ZhLadder` is `#[repr(C)]` plain data (pointers and integers) mirroring the kernel's
// by-value parameter struct exactly; the device pointers in it are valid device addresses.
unsafe impl DeviceRepr for LadderArg {}

/// How the kernel gets to the GPU in this build, for `gpu-info` and logs: the SASS embedded at
/// build time, or (a build without the NVIDIA compilers) NVRTC at run time.
pub fn kernel_form() -> String {
    zerohop_kernels::kernel_form()
}

/// NVRTC compilations made by this process (each architecture is compiled once).
pub fn nvrtc_compiles() -> u64 {
    NVRTC_COMPILES.load(std::sync::atomic::Ordering::Relaxed)
}

static NVRTC_COMPILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// PTX for the ladder kernel compiled by NVRTC for `arch` (e.g. "compute_89") with the options
/// the CI check uses: the fallback for architectures with no embedded cubin (and builds without
/// the compilers). Compiled once per architecture per process (an NVRTC compile takes 240-300
/// ms; it used to run at every session open).
pub fn ladder_ptx(arch: &'static str) -> Result<cudarc::nvrtc::Ptx, CudaError> {
    static COMPILED: OnceLock<Mutex<HashMap<&'static str, String>>> = OnceLock::new();
    let cache = COMPILED.get_or_init(Default::default);
    // Held while compiling: two sessions opening at once compile once.
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(ptx) = cache.get(arch) {
        return Ok(cudarc::nvrtc::Ptx::from_src(ptx.clone()));
    }
    // Whichever NVRTC major the host has (super::nvrtc), with the options the CI check uses.
    let mut options: Vec<String> = zerohop_kernels::NVRTC_OPTIONS.iter().map(|o| o.to_string()).collect();
    options.push(format!("--gpu-architecture={arch}"));
    NVRTC_COMPILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ptx = super::nvrtc::compile_ptx(zerohop_kernels::SCALE_LADDER_CU, "scale_ladder.cu", &options)?;
    cache.insert(arch, ptx.clone());
    Ok(cudarc::nvrtc::Ptx::from_src(ptx))
}

/// The module image of the ladder kernel for a GPU of compute capability `cc`: the embedded
/// cubin of its architecture, else NVRTC's PTX; pre-Turing GPUs are refused by name.
fn ladder_image(ordinal: usize, cc: (i32, i32)) -> Result<cudarc::nvrtc::Ptx, CudaError> {
    match zerohop_kernels::cubin_for(cc, zerohop_kernels::CUBINS) {
        Err(why) => Err(CudaError::Unsupported { ordinal, why }),
        Ok(Some((_, cubin))) => Ok(cudarc::nvrtc::Ptx::from_binary(cubin.to_vec())),
        Ok(None) => ladder_ptx(arch_of(cc)),
    }
}

fn arch_of(cc: (i32, i32)) -> &'static str {
    match cc {
        (9, _) | (10.., _) => "compute_90",
        (8, 9) => "compute_89",
        (8, 6..) => "compute_86",
        (8, _) => "compute_80",
        _ => "compute_75",
    }
}

/// One GPU: its primary context and scaling stream (as a shared [`DeviceContext`]) and the
/// loaded ladder kernel.
#[derive(Debug)]
pub struct Gpu {
    pub ordinal: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    device: Arc<DeviceContext>,
    ladder: Option<CudaFunction>,
}

/// A launch's source picture: NV12, luma at `ptr`, chroma `pitch * rows` bytes after it.
struct Source {
    ptr: u64,
    pitch: u32,
    rows: u32,
    width: u32,
    height: u32,
}

impl Gpu {
    /// Context, stream and the ladder kernel of GPU `ordinal`. The kernel's module is loaded
    /// once per GPU (primary) context and shared by every `Gpu` of it.
    pub fn open(ordinal: usize) -> Result<Gpu, CudaError> {
        static LOADED: OnceLock<Mutex<HashMap<usize, CudaFunction>>> = OnceLock::new();
        let mut gpu = Gpu::open_bare(ordinal)?;
        let mut loaded = LOADED.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
        let f = match loaded.get(&ordinal) {
            Some(f) => f.clone(),
            None => {
                let cc = gpu.ctx.compute_capability().map_err(driver_error("cuDeviceGetAttribute"))?;
                let module =
                    gpu.ctx.load_module(ladder_image(ordinal, cc)?).map_err(driver_error("cuModuleLoadData"))?;
                let f = module
                    .load_function(zerohop_kernels::SCALE_LADDER_ENTRY)
                    .map_err(driver_error("cuModuleGetFunction"))?;
                loaded.insert(ordinal, f.clone());
                f
            }
        };
        gpu.ladder = Some(f);
        Ok(gpu)
    }

    fn open_bare(ordinal: usize) -> Result<Gpu, CudaError> {
        driver()?;
        let ctx = CudaContext::new(ordinal).map_err(driver_error("cuDevicePrimaryCtxRetain"))?;
        let stream = ctx.new_stream().map_err(driver_error("cuStreamCreate"))?;
        let device = DeviceContext::cuda(ordinal, ctx.clone(), stream.clone());
        Ok(Gpu { ordinal, ctx, stream, device, ladder: None })
    }

    /// The context and scaling stream, for NVDEC decoders and NVENC encoders (each keeps an
    /// `Arc` of it).
    pub fn context(&self) -> &Arc<DeviceContext> {
        &self.device
    }

    /// Makes the context current on this thread.
    pub fn bind(&self) -> Result<(), CudaError> {
        self.device.bind()
    }

    /// An NV12 device buffer of `width` x `height` for NVENC, zeroed ([`DeviceNv12::alloc`]).
    pub fn alloc_nv12(&self, width: u32, height: u32) -> Result<DeviceNv12, CudaError> {
        DeviceNv12::alloc(&self.device, width, height)
    }

    fn check_buffers<'b>(&self, bufs: impl IntoIterator<Item = &'b DeviceNv12>) -> Result<(), CudaError> {
        for b in bufs {
            if !Arc::ptr_eq(b.allocation().context(), &self.device) {
                return Err(CudaError::Invalid("a device buffer of another GPU".into()));
            }
        }
        Ok(())
    }

    /// One launch of the fused kernel: the picture in `src` into every buffer of `dst`, on the
    /// scaling stream (not waited for: what reads `dst` next is ordered after it on the stream).
    pub fn scale_ladder(&self, src: &DeviceNv12, dst: &mut [&mut DeviceNv12]) -> Result<(), CudaError> {
        self.check_buffers(std::iter::once(src).chain(dst.iter().map(|d| &**d)))?;
        // SAFETY: read by the launch below while `src` is borrowed; work on the buffer is ordered
        // on this stream and its free (`cuMemFree`) waits for the device.
        let ptr = unsafe { src.allocation().device_ptr() };
        let source =
            Source { ptr, pitch: src.pitch() as u32, rows: src.height(), width: src.width(), height: src.height() };
        // SAFETY: `src` is a live buffer of this context of pitch x height x 3/2 bytes, borrowed
        // for the call and freed (cudarc) only after the stream's work on it; `dst` are distinct
        // (`&mut`) from it and from each other.
        unsafe { self.launch(source, dst) }
    }

    /// One launch of the fused kernel from a mapped decoder picture into the device buffer of
    /// every rung of `rungs`, and then (the CPU-encode path) each rung with a host picture
    /// copied into it: the launch and every copy queued on the scaling stream and waited for with
    /// ONE sync ([`download_ladder`]), so the picture may be unmapped as soon as this returns.
    /// Returns the bytes copied.
    pub fn scale_mapped(&self, src: &MappedFrame<'_>, rungs: &mut [ScaleTarget<'_>]) -> Result<u64, CudaError> {
        if !Arc::ptr_eq(src.context(), &self.device) {
            return Err(CudaError::Invalid("a picture decoded on another context".into()));
        }
        let mut dst: Vec<&mut DeviceNv12> = rungs.iter_mut().map(|t| &mut *t.device).collect();
        self.check_buffers(dst.iter().map(|d| &**d))?;
        let source = Source {
            // SAFETY: read only by the launch below, which is waited for before this returns,
            // while `src` (and so its mapping) is borrowed.
            ptr: unsafe { src.device_ptr() },
            pitch: src.pitch(),
            rows: src.surface_height(),
            width: src.width(),
            height: src.height(),
        };
        // SAFETY: the mapped surface is pitch x surface_height x 3/2 bytes in this context and
        // stays mapped until the sync below; decoder surfaces and `dst` never overlap.
        unsafe { self.launch(source, &mut dst) }?;
        let mut pairs = downloads(rungs);
        if pairs.is_empty() {
            return self.sync().map(|()| 0);
        }
        let copied = download_ladder(&self.device, &mut pairs);
        if copied.is_err() {
            // The launch reads the mapped picture: wait for it whatever failed after it.
            let _ = self.sync();
        }
        copied
    }

    /// # Safety
    /// `src` describes a readable NV12 picture in this context that stays valid until the
    /// launched work completes, not overlapping any of `dst`.
    unsafe fn launch(&self, src: Source, dst: &mut [&mut DeviceNv12]) -> Result<(), CudaError> {
        if dst.is_empty() || dst.len() > MAX_RUNGS {
            return Err(CudaError::Invalid(format!("{} rungs; one launch writes 1 to {MAX_RUNGS}", dst.len())));
        }
        if src.width > src.pitch || src.height > src.rows {
            return Err(CudaError::Invalid(format!(
                "source {}x{} in {} rows of {} bytes",
                src.width, src.height, src.rows, src.pitch
            )));
        }
        let Some(kernel) = &self.ladder else {
            return Err(CudaError::Invalid("this GPU handle was opened without kernels".into()));
        };
        let source = ZhPlane::new(
            src.ptr as *mut u8,
            (src.ptr + u64::from(src.pitch) * u64::from(src.rows)) as *mut u8,
            src.pitch as usize,
            src.width,
            src.height,
        );
        let p = ZhLadder::new(
            source,
            dst.iter().map(|d| {
                // SAFETY: written by the launch below while `dst` is borrowed (see `src`).
                let base = unsafe { d.allocation().device_ptr() };
                let uv = base + (d.pitch() * d.height() as usize) as u64;
                ZhPlane::new(base as *mut u8, uv as *mut u8, d.pitch(), d.width(), d.height())
            }),
        );
        let grid = p.grid(BLOCK);
        let cfg = LaunchConfig { grid_dim: grid, block_dim: (BLOCK.0, BLOCK.1, 1), shared_mem_bytes: 0 };
        let arg = LadderArg(p);
        let mut launch = self.stream.launch_builder(kernel);
        launch.arg(&arg);
        // SAFETY: the kernel takes exactly one by-value `ZhLadder`; its source pointers address a
        // picture of at least pitch x rows x 3/2 bytes (the caller's contract), each destination
        // a live DeviceNv12 of its size, exclusively borrowed; the kernel reads only clamped
        // source coordinates and writes only inside each rung; all work is ordered on this
        // stream.
        unsafe { launch.launch(cfg) }.map_err(driver_error("cuLaunchKernel"))?;
        Ok(())
    }

    /// Waits for the scaling stream.
    pub fn sync(&self) -> Result<(), CudaError> {
        self.device.sync()
    }

    /// CHECKS ONLY (hw-ci's NVDEC = CPU decoder test in `tests/cuda_gpu.rs`; the pipeline never
    /// copies a decoded picture): copies a mapped decoder picture to the host.
    pub fn download_mapped(&self, m: &MappedFrame<'_>) -> Result<HostNv12, CudaError> {
        if !Arc::ptr_eq(m.context(), &self.device) {
            return Err(CudaError::Invalid("a picture decoded on another context".into()));
        }
        let (width, height, pitch, rows) = (m.width(), m.height(), m.pitch(), m.surface_height());
        if height > rows || width > pitch {
            return Err(CudaError::Invalid(format!(
                "mapped picture {width}x{height} in a {rows}-row, {pitch}-byte-pitch surface"
            )));
        }
        let pitch = pitch as usize;
        let mut pic = HostNv12::new(width, height, pitch);
        let luma = pitch * height as usize;
        self.sync()?;
        let _current = self.device.push()?;
        let (y, uv) = pic.data.split_at_mut(luma);
        // SAFETY: `m` is a decoder surface mapped while borrowed here: `pitch` x `rows` luma bytes
        // followed by `pitch` x ceil(rows / 2) chroma bytes. The synchronous copies read `height`
        // <= `rows` luma rows from its start and ceil(height / 2) chroma rows from the chroma
        // plane, into host slices of exactly those sizes; the scaling stream was synchronised
        // first and the context is current.
        unsafe {
            let ptr = m.device_ptr();
            cudarc::driver::result::memcpy_dtoh_sync(y, ptr).map_err(driver_error("cuMemcpyDtoH"))?;
            cudarc::driver::result::memcpy_dtoh_sync(uv, ptr + (pitch * rows as usize) as u64)
                .map_err(driver_error("cuMemcpyDtoH"))?;
        }
        Ok(pic)
    }

    /// Wall time of `iterations` back-to-back ladder launches (1080p source into 720p, 480p,
    /// 360p and 240p device buffers), after one warm-up launch: the scaling cost per picture.
    pub fn time_ladder(&self, iterations: u32) -> Result<std::time::Duration, CudaError> {
        let src = self.alloc_nv12(1920, 1080)?;
        let mut dsts = [(1280, 720), (854, 480), (640, 360), (426, 240)]
            .iter()
            .map(|&(w, h)| self.alloc_nv12(w, h))
            .collect::<Result<Vec<_>, _>>()?;
        let mut refs: Vec<&mut DeviceNv12> = dsts.iter_mut().collect();
        self.scale_ladder(&src, &mut refs)?;
        self.sync()?;
        let t = std::time::Instant::now();
        for _ in 0..iterations {
            self.scale_ladder(&src, &mut refs)?;
        }
        self.sync()?;
        Ok(t.elapsed() / iterations.max(1))
    }

    /// Opens NVENC sessions (256x256, P1) until one fails or `max` are open; see
    /// [`probe_sessions`].
    pub fn probe_sessions(&self, api: &Arc<NvencApi>, max: u32) -> Result<u32, CudaError> {
        probe_sessions(&self.device, api, max)
    }

    /// The kernel self-test: a 1080p test picture scaled to 720p/480p/360p/240p on this GPU
    /// and by the CPU emulation of the same source; returns the largest sample difference
    /// (must be <= 1).
    pub fn self_test(&self) -> Result<u8, CudaError> {
        let mut src = Nv12::new(1920, 1080, 1920, 0);
        for (i, b) in src.y.iter_mut().chain(src.uv.iter_mut()).enumerate() {
            *b = ((i * 7) ^ (i >> 10)) as u8;
        }
        let sizes = [(1280, 720), (854, 480), (640, 360), (426, 240)];
        let on_gpu = self.scale_host(&src, &sizes)?;
        let mut on_cpu: Vec<Nv12> = sizes.iter().map(|&(w, h)| Nv12::new(w, h, w as usize, 0)).collect();
        zerohop_kernels::emu::scale_ladder(&src, &mut on_cpu, BLOCK).map_err(|e| CudaError::Invalid(e.to_string()))?;
        Ok(on_gpu.iter().zip(&on_cpu).map(|(g, c)| g.max_abs_diff(c)).max().unwrap_or(0))
    }

    /// Copies a host picture to the GPU, scales it to `sizes` with the ladder kernel and copies
    /// the results back: the GPU half of the kernel self-test (the other half is the CPU
    /// emulation of the same source). Host<->device copies here are the test's, not the
    /// pipeline's.
    pub fn scale_host(&self, src: &Nv12, sizes: &[(u32, u32)]) -> Result<Vec<Nv12>, CudaError> {
        let dev_src = self.alloc_nv12(src.width, src.height)?;
        let mut host = vec![0u8; dev_src.allocation().len()];
        for r in 0..src.height as usize {
            host[r * dev_src.pitch()..][..src.width as usize]
                .copy_from_slice(&src.y[r * src.pitch..][..src.width as usize]);
        }
        let luma = dev_src.pitch() * src.height as usize;
        let cw = 2 * src.width.div_ceil(2) as usize;
        for r in 0..src.height.div_ceil(2) as usize {
            host[luma + r * dev_src.pitch()..][..cw].copy_from_slice(&src.uv[r * src.pitch..][..cw]);
        }
        {
            let _current = self.device.push()?;
            // SAFETY: `dev_src` is a live allocation of this (pushed) context of `host.len()`
            // bytes; the copy is synchronous.
            unsafe { cudarc::driver::result::memcpy_htod_sync(dev_src.allocation().device_ptr(), &host) }
                .map_err(driver_error("cuMemcpyHtoD"))?;
        }
        let mut dsts = sizes.iter().map(|&(w, h)| self.alloc_nv12(w, h)).collect::<Result<Vec<_>, _>>()?;
        self.scale_ladder(&dev_src, &mut dsts.iter_mut().collect::<Vec<_>>())?;
        let mut out = Vec::new();
        self.sync()?;
        let _current = self.device.push()?;
        for d in &dsts {
            let mut bytes = vec![0u8; d.allocation().len()];
            // SAFETY: a live allocation of this (pushed) context of `bytes.len()` bytes, written
            // by the launch above, which was waited for; the copy is synchronous.
            unsafe { cudarc::driver::result::memcpy_dtoh_sync(&mut bytes, d.allocation().device_ptr()) }
                .map_err(driver_error("cuMemcpyDtoH"))?;
            let mut pic = Nv12::new(d.width(), d.height(), d.pitch(), 0);
            let luma = d.pitch() * d.height() as usize;
            pic.y.copy_from_slice(&bytes[..luma]);
            pic.uv.copy_from_slice(&bytes[luma..luma + d.pitch() * d.height().div_ceil(2) as usize]);
            out.push(pic);
        }
        Ok(out)
    }
}

/// One rung of a picture to scale into: its device buffer and, on the CPU-encode path, the host
/// picture it is then downloaded into.
#[derive(Debug)]
pub struct ScaleTarget<'a, B = DeviceNv12> {
    pub device: &'a mut B,
    pub host: Option<&'a mut HostNv12>,
}

/// The rungs of `rungs` that download, as [`download_ladder`] takes them.
pub fn downloads<'r>(rungs: &'r mut [ScaleTarget<'_>]) -> Vec<(&'r DeviceNv12, &'r mut HostNv12)> {
    rungs.iter_mut().filter_map(|t| Some((&*t.device, &mut **t.host.as_mut()?))).collect()
}

/// The CPU-encode path's download of one picture's rungs: for each `(device, host)` pair, one
/// `cuMemcpy2DAsync` of the picture's luma and chroma rows (the same layout on both sides, so
/// one 2D copy: device pitch to host pitch, the [`HostNv12::row_bytes`] of each row) on `ctx`'s
/// stream, ordered after the kernel that wrote them, then ONE `cuStreamSynchronize` for the
/// whole ladder (as NvDecoder queues a picture's planes with cuMemcpy2DAsync on its stream and
/// synchronises once). Host pictures should be page-locked ([`pinned_picture`]): into pageable
/// memory each copy is synchronous. Returns the bytes copied (what `frame_bytes` counts).
pub fn download_ladder(ctx: &Arc<DeviceContext>, pairs: &mut [(&DeviceNv12, &mut HostNv12)]) -> Result<u64, CudaError> {
    for (src, dst) in pairs.iter() {
        if !Arc::ptr_eq(src.allocation().context(), ctx) {
            return Err(CudaError::Invalid("a device buffer of another GPU".into()));
        }
        let row = HostNv12::row_bytes(src.width());
        if (dst.width, dst.height) != (src.width(), src.height())
            || dst.pitch < row
            || dst.data.len() != HostNv12::len(dst.pitch, dst.height)
        {
            return Err(CudaError::Invalid(format!(
                "download of a {}x{} picture into a {}x{} (pitch {}, {} bytes) buffer; make it with pinned_picture",
                src.width(),
                src.height(),
                dst.width,
                dst.height,
                dst.pitch,
                dst.data.len()
            )));
        }
    }
    if pairs.is_empty() {
        return Ok(0);
    }
    let _current = ctx.push()?;
    let (mut copied, mut queued) = (0u64, Ok(()));
    for (src, dst) in pairs.iter_mut() {
        let rows = src.height() as usize + src.height().div_ceil(2) as usize;
        let copy = Copy2d {
            // SAFETY: handed to the driver while `src` is borrowed; the copy is waited for below.
            src: unsafe { src.allocation().device_ptr() },
            src_pitch: src.pitch(),
            dst: dst.data.as_mut_ptr(),
            dst_pitch: dst.pitch,
            width: HostNv12::row_bytes(src.width()),
            rows,
        };
        // SAFETY: `src` is a live buffer of this (pushed) context of pitch x rows bytes, `dst` a
        // host picture of dst_pitch x rows bytes (both checked above), each at least `width`
        // bytes per row; both stay borrowed, and `dst` untouched, until the sync below, which
        // runs whether or not a later copy is refused.
        match unsafe { ctx.memcpy_2d_dtoh_async(&copy) } {
            Ok(()) => copied += (copy.width * rows) as u64,
            Err(e) => {
                queued = Err(e);
                break;
            }
        }
    }
    let synced = ctx.sync();
    queued?;
    synced?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::host_nv12::HostBytes;
    use crate::cuda::context::double::{self, Alloc};
    use crate::cuda::error::thread_release_failures;
    use crate::cuda::nvenc::fake;
    use nvidia_video_codec_sdk::sys::nvEncodeAPI::NVENCSTATUS;

    /// Defect 1: NVENC inputs are `cuMemAllocPitch` allocations (never stream-ordered), made and
    /// freed with their context pushed, freed only after NVENC unregistered them.
    #[test]
    fn nvenc_inputs_are_pitched_allocations_freed_with_their_context_after_unregistering() {
        fake::reset();
        let ctx = double::context(0xC0, 0x5EA);
        let other = double::context(0xD0, 0x5EB);
        other.bind().expect("bind");
        let buf = DeviceNv12::alloc(&ctx, 1280, 720).expect("alloc");
        assert_eq!(double::current(), 0xD0, "the caller's context is restored");
        // SAFETY: only looked up in the memory double.
        let addr = unsafe { buf.allocation().device_ptr() };
        let pitch = 1280usize.next_multiple_of(double::PITCH_ALIGNMENT);
        assert_eq!(double::block(addr), Some((0xC0, Alloc::Pitched { pitch }, pitch * 1080)));
        assert_eq!(buf.pitch(), pitch, "the pitch the driver chose, not one assumed");
        let cfg = EncoderConfig {
            width: 1280,
            height: 720,
            fps_num: 30,
            fps_den: 1,
            bitrate: 1_000_000,
            preset: Preset::P1,
            low_latency: true,
            b_frames: 0,
            profile_idc: 100,
            output_delay: 0,
        };
        let enc = Encoder::open(NvencApi::from_table(fake::table()), &ctx, cfg, &[&buf]).expect("NVENC registers it");
        let failures = thread_release_failures();
        drop(buf);
        assert!(double::block(addr).is_some(), "registered: still allocated");
        drop(enc);
        assert_eq!(double::block(addr), None, "unregistered, then freed");
        assert_eq!(thread_release_failures(), failures, "cuMemFree ran with its context current");
        assert_eq!(double::current(), 0xD0);
    }

    /// A device picture of `w` x `h` in `ctx` whose every byte says where it is (row, column).
    fn painted(ctx: &Arc<DeviceContext>, w: u32, h: u32, seed: u8) -> DeviceNv12 {
        let d = DeviceNv12::alloc(ctx, w, h).expect("alloc");
        let pitch = d.pitch();
        // SAFETY: only looked up in the memory double.
        double::with_bytes(unsafe { d.allocation().device_ptr() }, |b| {
            for (i, x) in b.iter_mut().enumerate() {
                *x = ((i / pitch) as u8).wrapping_mul(7) ^ (i % pitch) as u8 ^ seed;
            }
        })
        .expect("block");
        d
    }

    /// Defect 8: the rungs of a picture are copied with one cuMemcpy2DAsync each, from the device
    /// pitch to the host pitch, into page-locked memory, and waited for with one sync; the host
    /// sees the bytes only after that sync (the double does the copies there).
    #[test]
    fn a_ladder_downloads_into_pinned_memory_with_one_sync() {
        let (c, stream) = (double::handle(), double::handle());
        let ctx = double::context(c, stream);
        let sizes = [(640, 360), (427, 241)]; // an odd width and height too
        let src: Vec<DeviceNv12> = sizes.iter().enumerate().map(|(i, &(w, h))| painted(&ctx, w, h, i as u8)).collect();
        let mut host: Vec<HostNv12> =
            sizes.iter().map(|&(w, h)| pinned_picture(&ctx, w, h).expect("page-locked")).collect();
        assert!(host.iter().all(|p| p.data.is_pinned()));
        assert_eq!(double::host_allocs(c), 2);
        let mut pairs: Vec<(&DeviceNv12, &mut HostNv12)> = src.iter().zip(host.iter_mut()).collect();
        let copied = download_ladder(&ctx, &mut pairs).expect("download");
        assert_eq!(double::stream_syncs(stream), (1, 2), "one sync for both rungs' copies");
        let mut want = 0;
        for (i, (d, p)) in src.iter().zip(&host).enumerate() {
            let (row, rows) = (HostNv12::row_bytes(d.width()), (d.height() + d.height().div_ceil(2)) as usize);
            assert_eq!((p.pitch, p.data.len()), (row, row * rows), "rung {i}: rows packed on the host");
            assert!(d.pitch() > row, "rung {i}: the device pitch is padded");
            want += (row * rows) as u64;
            for y in 0..rows {
                for x in 0..row {
                    let v = (y as u8).wrapping_mul(7) ^ x as u8 ^ i as u8;
                    assert_eq!(p.data[y * row + x], v, "rung {i} row {y} byte {x}");
                }
            }
        }
        assert_eq!(copied, want, "the bytes that crossed the bus");
        drop(host);
        assert_eq!(double::host_live(c), 0);
        assert_eq!(ctx.release_failures(), 0, "cuMemFreeHost with the context pushed");
    }

    /// The stream double's rules: an "async" copy into pageable memory is refused (the driver
    /// would copy synchronously, see `double::memcpy_2d_dtoh_async`), and page-locked memory that
    /// a queued copy still writes into cannot be freed before the stream is synchronised.
    #[test]
    fn the_stream_double_refuses_pageable_destinations_and_frees_under_a_queued_copy() {
        let (c, stream) = (double::handle(), double::handle());
        let ctx = double::context(c, stream);
        let src = painted(&ctx, 64, 32, 1);
        let mut pageable = HostNv12::new(64, 32, 64);
        let e = download_ladder(&ctx, &mut [(&src, &mut pageable)]).expect_err("pageable");
        assert!(
            matches!(&e, CudaError::Driver { api: "cuMemcpy2DAsync", status } if status.contains("pageable")),
            "{e}"
        );
        assert_eq!(double::stream_syncs(stream), (1, 0), "what was queued before the refusal is still waited for");
        assert!(pageable.data.iter().all(|&b| b == 0), "nothing written");

        let mut pinned = pinned_picture(&ctx, 64, 32).expect("page-locked");
        let _current = ctx.push().expect("push");
        let copy = Copy2d {
            // SAFETY: only looked up in the memory double.
            src: unsafe { src.allocation().device_ptr() },
            src_pitch: src.pitch(),
            dst: pinned.data.as_mut_ptr(),
            dst_pitch: 64,
            width: 64,
            rows: 48,
        };
        // SAFETY: both live; synchronised below before either is touched or released.
        unsafe { ctx.memcpy_2d_dtoh_async(&copy) }.expect("queued");
        assert!(pinned.data.iter().all(|&b| b == 0), "not copied before the sync");
        let HostBytes::Pinned(bytes) = &pinned.data else { panic!("pinned") };
        let addr = bytes.bytes().as_ptr().cast_mut();
        let e = double::host_free(c, addr).expect_err("a copy into it is queued");
        assert!(e.to_string().contains("queued"), "{e}");
        ctx.sync().expect("sync");
        assert_eq!(pinned.data[64 + 5], 7 ^ 5 ^ 1, "copied at the sync");
    }

    /// Defect 1: only NO_ENCODE_DEVICE / UNSUPPORTED_DEVICE from opening a session mean "no
    /// NVENC"; a buffer NVENC refuses, or any other failure, is an error of its own.
    #[test]
    fn only_a_missing_encode_device_is_no_nvenc() {
        let ctx = double::context(0xC0, 0x5EA);
        let probe = || probe_sessions(&ctx, &NvencApi::from_table(fake::table()), 3);
        fake::reset();
        assert_eq!(probe(), Ok(3));
        for status in [NVENCSTATUS::NV_ENC_ERR_NO_ENCODE_DEVICE, NVENCSTATUS::NV_ENC_ERR_UNSUPPORTED_DEVICE] {
            fake::reset();
            fake::fail("nvEncOpenEncodeSessionEx", 1, status);
            assert!(matches!(probe(), Err(CudaError::NoEncoder { .. })), "{status:?}");
        }
        fake::reset();
        fake::fail("nvEncRegisterResource", 1, NVENCSTATUS::NV_ENC_ERR_RESOURCE_REGISTER_FAILED);
        let e = probe().expect_err("refused buffer");
        assert_eq!(
            e,
            CudaError::Nvenc { api: "nvEncRegisterResource", status: "NV_ENC_ERR_RESOURCE_REGISTER_FAILED".into() }
        );
        fake::reset();
        fake::fail("nvEncInitializeEncoder", 1, NVENCSTATUS::NV_ENC_ERR_GENERIC);
        assert!(matches!(probe(), Err(CudaError::Nvenc { .. })));
        fake::reset();
        fake::fail("nvEncOpenEncodeSessionEx", 1, NVENCSTATUS::NV_ENC_ERR_OUT_OF_MEMORY);
        assert!(matches!(probe(), Err(CudaError::SessionLimit { .. })));
        // The limit after some sessions opened: what opened is the answer.
        fake::reset();
        fake::fail("nvEncOpenEncodeSessionEx", 3, NVENCSTATUS::NV_ENC_ERR_OUT_OF_MEMORY);
        assert_eq!(probe(), Ok(2));
    }
}
