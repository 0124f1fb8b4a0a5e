//! The CUDA driver side, through cudarc (dynamic loading, CUDA 12.9 bindings): finding GPUs,
//! one context and stream per GPU, the ladder kernel (embedded PTX or NVRTC at run time), device
//! buffers for NVENC, and a kernel self-test against the CPU emulation.
//!
//! cudarc panics when a library is missing, so every entry point here first checks that
//! `libcuda` (and for run-time compilation `libnvrtc`) can be loaded and returns
//! [`CudaError::NoDriver`] otherwise.

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg,
};
use zerohop_kernels::{BLOCK, MAX_RUNGS, Nv12, ZhLadder, ZhPlane};

use super::error::CudaError;
use super::nvdec::{CuvidApi, DecodeCaps};
use super::nvenc::{Encoder, EncoderConfig, InputSurface, NvencApi, Preset};
use crate::accel::host_encode::HostNv12;

fn driver_error(api: &'static str) -> impl FnOnce(cudarc::driver::DriverError) -> CudaError {
    move |e| CudaError::Driver { api, status: format!("{e:?}") }
}

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
    /// NVENC H.264 sessions that opened in the probe (0: no NVENC, e.g. H100/A100), or why not.
    pub nvenc_sessions: Result<u32, String>,
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
            Ok(api) => ctx
                .bind_to_thread()
                .map_err(|e| format!("{e:?}"))
                .and_then(|()| api.h264_caps().map_err(|e| e.to_string())),
            Err(e) => Err(e.to_string()),
        };
        let nvenc_sessions = match &nvenc {
            Ok(api) if probe_sessions > 0 => gpu.probe_sessions(api, probe_sessions).map_err(|e| e.to_string()),
            Ok(_) => Err("not probed".into()),
            Err(e) => Err(e.to_string()),
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

/// The ladder kernel's parameter block as a launch argument.
#[repr(transparent)]
struct LadderArg(ZhLadder);

// SAFETY: `ZhLadder` is `#[repr(C)]` plain data (pointers and integers) mirroring the kernel's
// by-value parameter struct exactly; the device pointers in it are valid device addresses.
unsafe impl DeviceRepr for LadderArg {}

/// How the kernel got to the GPU, for `gpu-info` and logs.
pub fn kernel_form() -> &'static str {
    zerohop_kernels::kernel_form()
}

/// PTX for the ladder kernel: embedded at build time, else compiled now by NVRTC for `arch`
/// (e.g. "compute_89") with the options the CI check uses.
pub fn ladder_ptx(arch: &'static str) -> Result<cudarc::nvrtc::Ptx, CudaError> {
    if let Some(ptx) = zerohop_kernels::PTX {
        return Ok(cudarc::nvrtc::Ptx::from_src(ptx));
    }
    // SAFETY: only tries to dlopen the NVRTC library candidates.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(CudaError::NoDriver { lib: "libnvrtc.so.12", why: "not found by the dynamic loader".into() });
    }
    let opts = cudarc::nvrtc::CompileOptions {
        fmad: Some(false),
        options: vec!["--std=c++17".into(), "-default-device".into()],
        arch: Some(arch),
        name: Some("scale_ladder.cu".into()),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(zerohop_kernels::SCALE_LADDER_CU, opts)
        .map_err(|e| CudaError::Nvrtc(e.to_string()))
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

/// One GPU: its primary context, a scaling stream and the loaded ladder kernel.
#[derive(Debug)]
pub struct Gpu {
    pub ordinal: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    ladder: Option<CudaFunction>,
}

impl Gpu {
    /// Context, stream and the ladder kernel of GPU `ordinal`.
    pub fn open(ordinal: usize) -> Result<Gpu, CudaError> {
        let mut gpu = Gpu::open_bare(ordinal)?;
        let cc = gpu.ctx.compute_capability().map_err(driver_error("cuDeviceGetAttribute"))?;
        let module = gpu.ctx.load_module(ladder_ptx(arch_of(cc))?).map_err(driver_error("cuModuleLoadData"))?;
        let f =
            module.load_function(zerohop_kernels::SCALE_LADDER_ENTRY).map_err(driver_error("cuModuleGetFunction"))?;
        gpu.ladder = Some(f);
        Ok(gpu)
    }

    fn open_bare(ordinal: usize) -> Result<Gpu, CudaError> {
        driver()?;
        let ctx = CudaContext::new(ordinal).map_err(driver_error("cuDevicePrimaryCtxRetain"))?;
        let stream = ctx.new_stream().map_err(driver_error("cuStreamCreate"))?;
        Ok(Gpu { ordinal, ctx, stream, ladder: None })
    }

    /// The raw `CUcontext`, for NVENC and NVDEC.
    pub fn raw_context(&self) -> *mut std::ffi::c_void {
        self.ctx.cu_ctx().cast()
    }

    /// The raw scaling `CUstream`, handed to NVENC and NVDEC.
    pub fn raw_stream(&self) -> *mut std::ffi::c_void {
        self.stream.cu_stream().cast()
    }

    /// Makes the context current on this thread (cuvid needs it).
    pub fn bind(&self) -> Result<(), CudaError> {
        self.ctx.bind_to_thread().map_err(driver_error("cuCtxSetCurrent"))
    }

    /// An NV12 device buffer of `width` x `height` with a 256-byte-aligned pitch (what NVENC
    /// wants), zeroed.
    pub fn alloc_nv12(&self, width: u32, height: u32) -> Result<DeviceNv12, CudaError> {
        let pitch = (width as usize).next_multiple_of(256);
        let rows = height as usize + height.div_ceil(2) as usize;
        let buf = self.stream.alloc_zeros::<u8>(pitch * rows).map_err(driver_error("cuMemAlloc"))?;
        Ok(DeviceNv12 { buf, width, height, pitch })
    }

    /// `buf` as an NVENC input buffer (its device address and pitch).
    pub fn input_surface(&self, buf: &DeviceNv12) -> super::nvenc::InputSurface {
        super::nvenc::InputSurface { ptr: buf.device_ptr(&self.stream), pitch: buf.pitch as u32 }
    }

    /// One launch of the fused kernel: the NV12 picture at `src` (pitch `src_pitch`, chroma
    /// `src_pitch * src_rows` bytes after luma) into every buffer of `dst`, on the scaling stream.
    pub fn scale_ladder(
        &self,
        src: u64,
        src_pitch: u32,
        src_rows: u32,
        (src_w, src_h): (u32, u32),
        dst: &[&DeviceNv12],
    ) -> Result<(), CudaError> {
        if dst.is_empty() || dst.len() > MAX_RUNGS {
            return Err(CudaError::Invalid(format!("{} rungs; one launch writes 1 to {MAX_RUNGS}", dst.len())));
        }
        let empty = ZhPlane { y: std::ptr::null_mut(), uv: std::ptr::null_mut(), pitch: 0, width: 0, height: 0 };
        let mut p = ZhLadder {
            src_y: src as *const u8,
            src_uv: (src + u64::from(src_pitch) * u64::from(src_rows)) as *const u8,
            src_pitch: src_pitch as i32,
            src_width: src_w as i32,
            src_height: src_h as i32,
            rungs: dst.len() as i32,
            dst: [empty; MAX_RUNGS],
        };
        for (slot, d) in p.dst.iter_mut().zip(dst) {
            let base = d.device_ptr(&self.stream);
            *slot = ZhPlane {
                y: base as *mut u8,
                uv: (base + (d.pitch * d.height as usize) as u64) as *mut u8,
                pitch: d.pitch as i32,
                width: d.width as i32,
                height: d.height as i32,
            };
        }
        let Some(kernel) = &self.ladder else {
            return Err(CudaError::Invalid("this GPU handle was opened without kernels".into()));
        };
        let grid = p.grid(BLOCK);
        let cfg = LaunchConfig { grid_dim: grid, block_dim: (BLOCK.0, BLOCK.1, 1), shared_mem_bytes: 0 };
        let arg = LadderArg(p);
        let mut launch = self.stream.launch_builder(kernel);
        launch.arg(&arg);
        // SAFETY: the kernel takes exactly one by-value `ZhLadder`; its source pointers address a
        // mapped decoder surface of at least pitch x rows x 3/2 bytes, each destination a live
        // DeviceNv12 of its size; the kernel reads only clamped source coordinates and writes
        // only inside each rung; all work is ordered on this stream.
        unsafe { launch.launch(cfg) }.map_err(driver_error("cuLaunchKernel"))?;
        Ok(())
    }

    /// Waits for the scaling stream (before a decoder surface is unmapped).
    pub fn sync(&self) -> Result<(), CudaError> {
        self.stream.synchronize().map_err(driver_error("cuStreamSynchronize"))
    }

    /// Copies a scaled picture to the host, into a buffer of the same layout, and waits for
    /// it: the CPU-encode path of GPUs without NVENC (the only picture copy zerohop makes, and
    /// it is counted). Returns the bytes copied.
    pub fn download(&self, src: &DeviceNv12, dst: &mut HostNv12) -> Result<u64, CudaError> {
        if (dst.width, dst.height, dst.pitch) != (src.width, src.height, src.pitch) || dst.data.len() != src.buf.len() {
            return Err(CudaError::Invalid(format!(
                "download of a {}x{} (pitch {}) picture into a {}x{} (pitch {}) buffer",
                src.width, src.height, src.pitch, dst.width, dst.height, dst.pitch
            )));
        }
        self.stream.memcpy_dtoh(&src.buf, dst.data.as_mut_slice()).map_err(driver_error("cuMemcpyDtoHAsync"))?;
        self.sync()?;
        Ok(dst.data.len() as u64)
    }

    /// Copies a mapped decoder picture to the host (a check's copy, for comparing NVDEC with the
    /// CPU decoder in hw-ci; the pipeline never copies a decoded picture).
    pub fn download_mapped(&self, m: &super::nvdec::MappedFrame) -> Result<HostNv12, CudaError> {
        if m.height > m.surface_height || m.width > m.pitch {
            return Err(CudaError::Invalid(format!(
                "mapped picture {}x{} in a {}-row, {}-byte-pitch surface",
                m.width, m.height, m.surface_height, m.pitch
            )));
        }
        let pitch = m.pitch as usize;
        let mut pic = HostNv12::new(m.width, m.height, pitch);
        let luma = pitch * m.height as usize;
        self.sync()?;
        let (y, uv) = pic.data.split_at_mut(luma);
        // SAFETY: `m` is a decoder surface mapped for the duration of the caller's callback:
        // `pitch` x `surface_height` luma bytes followed by `pitch` x ceil(surface_height / 2)
        // chroma bytes. The copies read `height` <= `surface_height` luma rows from its start
        // and ceil(height / 2) chroma rows from the chroma plane, into host slices of exactly
        // those sizes; the scaling stream was synchronised first.
        unsafe {
            cudarc::driver::result::memcpy_dtoh_sync(y, m.ptr).map_err(driver_error("cuMemcpyDtoH"))?;
            cudarc::driver::result::memcpy_dtoh_sync(uv, m.ptr + (pitch * m.surface_height as usize) as u64)
                .map_err(driver_error("cuMemcpyDtoH"))?;
        }
        Ok(pic)
    }

    /// Wall time of `iterations` back-to-back ladder launches (1080p source into 720p, 480p,
    /// 360p and 240p device buffers), after one warm-up launch: the scaling cost per picture.
    pub fn time_ladder(&self, iterations: u32) -> Result<std::time::Duration, CudaError> {
        let src = self.alloc_nv12(1920, 1080)?;
        let dsts = [(1280, 720), (854, 480), (640, 360), (426, 240)]
            .iter()
            .map(|&(w, h)| self.alloc_nv12(w, h))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&DeviceNv12> = dsts.iter().collect();
        let ptr = src.device_ptr(&self.stream);
        self.scale_ladder(ptr, src.pitch as u32, 1080, (1920, 1080), &refs)?;
        self.sync()?;
        let t = std::time::Instant::now();
        for _ in 0..iterations {
            self.scale_ladder(ptr, src.pitch as u32, 1080, (1920, 1080), &refs)?;
        }
        self.sync()?;
        Ok(t.elapsed() / iterations.max(1))
    }

    /// Opens NVENC sessions (256x256, P1) until one fails or `max` are open; returns how many
    /// opened. `NoEncoder` when not even one does (GPUs without NVENC).
    pub fn probe_sessions(&self, api: &Arc<NvencApi>, max: u32) -> Result<u32, CudaError> {
        let buf = self.alloc_nv12(256, 256)?;
        let input = [InputSurface { ptr: buf.device_ptr(&self.stream), pitch: buf.pitch as u32 }];
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
        };
        let mut open: Vec<Encoder> = Vec::new();
        while open.len() < max as usize {
            match Encoder::open(api.clone(), self.ordinal, self.raw_context(), self.raw_stream(), cfg.clone(), &input) {
                Ok(e) => open.push(e),
                // Every session taken (by other processes): NVENC is there, just busy.
                Err(e @ CudaError::SessionLimit { .. }) if open.is_empty() => return Err(e),
                Err(e) if open.is_empty() => {
                    return Err(CudaError::NoEncoder { ordinal: self.ordinal, why: e.to_string() });
                }
                Err(_) => break,
            }
        }
        Ok(open.len() as u32)
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
        let mut dev_src = self.alloc_nv12(src.width, src.height)?;
        let mut host = vec![0u8; dev_src.buf.len()];
        for r in 0..src.height as usize {
            host[r * dev_src.pitch..][..src.width as usize]
                .copy_from_slice(&src.y[r * src.pitch..][..src.width as usize]);
        }
        let luma = dev_src.pitch * src.height as usize;
        let cw = 2 * src.width.div_ceil(2) as usize;
        for r in 0..src.height.div_ceil(2) as usize {
            host[luma + r * dev_src.pitch..][..cw].copy_from_slice(&src.uv[r * src.pitch..][..cw]);
        }
        self.stream.memcpy_htod(&host, &mut dev_src.buf).map_err(driver_error("cuMemcpyHtoD"))?;
        let dsts = sizes.iter().map(|&(w, h)| self.alloc_nv12(w, h)).collect::<Result<Vec<_>, _>>()?;
        let src_ptr = dev_src.device_ptr(&self.stream);
        self.scale_ladder(
            src_ptr,
            dev_src.pitch as u32,
            src.height,
            (src.width, src.height),
            &dsts.iter().collect::<Vec<_>>(),
        )?;
        let mut out = Vec::new();
        for d in &dsts {
            let bytes = self.stream.clone_dtoh(&d.buf).map_err(driver_error("cuMemcpyDtoH"))?;
            let mut pic = Nv12::new(d.width, d.height, d.pitch, 0);
            let luma = d.pitch * d.height as usize;
            pic.y.copy_from_slice(&bytes[..luma]);
            pic.uv.copy_from_slice(&bytes[luma..luma + d.pitch * d.height.div_ceil(2) as usize]);
            out.push(pic);
        }
        Ok(out)
    }
}

/// An NV12 picture in device memory (an NVENC input buffer or a test picture).
#[derive(Debug)]
pub struct DeviceNv12 {
    buf: CudaSlice<u8>,
    pub width: u32,
    pub height: u32,
    pub pitch: usize,
}

impl DeviceNv12 {
    /// The buffer's device address (stable for its lifetime).
    pub fn device_ptr(&self, stream: &Arc<CudaStream>) -> u64 {
        let (ptr, _sync) = self.buf.device_ptr(stream);
        ptr
    }
}
