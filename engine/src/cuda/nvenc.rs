//! NVENC in three layers, as cudarc does the driver: `sys` (the SDK 12.1 bindings of
//! `nvidia-video-codec-sdk`, with its link directives dropped) and [`NvencApi`] (the function
//! table, resolved at run time from `libnvidia-encode.so.1`); `result` (one function per entry
//! point, each returning `Result<_, CudaError>` naming the call and its status); and [`Encoder`]
//! (one encode session, the only owner of its handle, registrations, mappings and bitstream
//! buffers), which calls only `result`.
//!
//! Ownership: an `Encoder` holds an `Arc` of its [`DeviceContext`] and pushes it around every
//! NVENC call, releases included, restoring the caller's context after (FFmpeg's nvenc.c pushes
//! its context around every NVENC call, `nvEncDestroyEncoder` too), so a session may be used or
//! dropped on any thread. Its inputs are borrowed device buffers ([`InputBuffer`]); each
//! registration keeps its buffer's allocation alive until it is unregistered, so a buffer cannot
//! be freed under NVENC whatever order its owners drop in. `Drop` releases in NVIDIA's order
//! (NvEncoder::DestroyEncoder, NvEncoderCuda::ReleaseInputBuffers): unmap every input still
//! mapped (after an EOS picture, when pictures are still in flight, as FFmpeg's
//! `ff_nvenc_encode_close` does), unregister every input, destroy the bitstream buffers, destroy
//! the session, and only then let go of the input allocations. A failed release is recorded on the context
//! ([`DeviceContext::release_failures`]) and process-wide, never discarded.
//!
//! Call order of a session (NVIDIA's encoder programming guide): open (CUDA context) -> preset
//! config -> initialise -> set the CUDA streams -> register the input buffers once -> create the
//! bitstream buffers; per frame map -> encode -> (when output is ready) lock -> copy -> unlock ->
//! unmap; at the end an EOS picture drains what the encoder holds; then unregister, destroy the
//! buffers, destroy the session. Bitrate changes and forced IDRs need no new session.

use std::any::Any;
use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::Arc;

use nvidia_video_codec_sdk::sys::nvEncodeAPI as sys;

use super::context::DeviceContext;
use super::error::CudaError;
use super::video_library::VideoLibrary;

mod config;
pub(crate) mod result;
pub use config::{EncoderConfig, Preset};
use result::Submitted;

/// The library and its entry points (NVIDIA's names).
const LIB: &str = "libnvidia-encode.so.1";

/// `NvEncodeAPIGetMaxSupportedVersion` / `NvEncodeAPICreateInstance`, declared with a plain `u32`
/// status so that a value this SDK does not know cannot become an invalid Rust enum.
type GetMaxVersionFn = unsafe extern "C" fn(*mut u32) -> u32;
type CreateInstanceFn = unsafe extern "C" fn(*mut sys::NV_ENCODE_API_FUNCTION_LIST) -> u32;

/// The NVENC function table. Built from the driver ([`NvencApi::load`]) or, in tests, from a
/// recording fake (`NvencApi::from_table`, test builds only: a table of arbitrary functions
/// would make every safe call unsound). Called only through `result`.
pub struct NvencApi {
    fns: sys::NV_ENCODE_API_FUNCTION_LIST,
    /// Keeps the library mapped while the table's pointers are in use.
    _lib: VideoLibrary,
}

// SAFETY: the table is immutable after loading and holds only function pointers into the
// driver, whose entry points may be called from any thread (each session's calls are serialised
// by its `Encoder`, which needs `&mut self`).
unsafe impl Send for NvencApi {}
// SAFETY: as above: shared references only read the function pointers.
unsafe impl Sync for NvencApi {}

impl std::fmt::Debug for NvencApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvencApi").field("lib", &self._lib).finish_non_exhaustive()
    }
}

impl NvencApi {
    /// Loads `libnvidia-encode.so.1` and fills the function table. No driver: `NoDriver`.
    pub fn load() -> Result<Arc<NvencApi>, CudaError> {
        let lib = VideoLibrary::open(LIB)?;
        // SAFETY: the symbols have these C signatures in nvEncodeAPI.h (SDK 12.1); the returned
        // function pointers are only used while `lib` is open (it moves into the NvencApi).
        let (max_version, create) = unsafe {
            (
                lib.symbol::<GetMaxVersionFn>("NvEncodeAPIGetMaxSupportedVersion")?,
                lib.symbol::<CreateInstanceFn>("NvEncodeAPICreateInstance")?,
            )
        };
        let mut version = 0u32;
        // SAFETY: `version` is a valid out-pointer for the call's duration.
        let st = unsafe { max_version(&mut version) };
        if st != 0 {
            return Err(CudaError::Nvenc { api: "NvEncodeAPIGetMaxSupportedVersion", status: format!("status {st}") });
        }
        let need = (sys::NVENCAPI_MAJOR_VERSION << 4) | sys::NVENCAPI_MINOR_VERSION;
        if version < need {
            return Err(CudaError::MissingSymbol { lib: LIB, symbol: "NVENC API 12.1" });
        }
        // SAFETY: all-zero is the documented initial state of the table (null function pointers);
        // the driver fills it in.
        let mut fns: sys::NV_ENCODE_API_FUNCTION_LIST = unsafe { std::mem::zeroed() };
        fns.version = sys::NV_ENCODE_API_FUNCTION_LIST_VER;
        // SAFETY: `fns` is a valid, versioned table for the call's duration.
        let st = unsafe { create(&mut fns) };
        if st != 0 {
            return Err(CudaError::Nvenc { api: "NvEncodeAPICreateInstance", status: format!("status {st}") });
        }
        Ok(Arc::new(NvencApi { fns, _lib: lib }))
    }

    /// A table filled by someone else: the recording fake in tests (a test double of the driver,
    /// the one boundary that cannot run here).
    #[cfg(test)]
    pub(crate) fn from_table(fns: sys::NV_ENCODE_API_FUNCTION_LIST) -> Arc<NvencApi> {
        Arc::new(NvencApi { fns, _lib: VideoLibrary::none(LIB) })
    }
}

/// A device buffer NVENC can encode from: NV12, luma at its start and interleaved chroma
/// `pitch * height` bytes after it.
///
/// # Safety
/// Implementors promise that [`device_ptr`](InputBuffer::device_ptr) is the start of a device
/// allocation of at least `pitch * (height + height.div_ceil(2))` bytes (with `dims`), in the
/// context the buffer was made on, and that the allocation stays valid as long as any clone of
/// [`allocation`](InputBuffer::allocation) lives, even after the buffer itself is dropped.
pub unsafe trait InputBuffer {
    /// Width, height and pitch (bytes per row) of the picture.
    fn dims(&self) -> (u32, u32, usize);
    /// The allocation, kept by each registration of the buffer until it is unregistered.
    fn allocation(&self) -> Arc<dyn Any + Send + Sync>;
    /// Whether the buffer was allocated in `ctx`'s CUDA context.
    fn made_on(&self, ctx: &DeviceContext) -> bool;
    /// The buffer's device address.
    ///
    /// # Safety
    /// Only for handing to the driver while the allocation is held.
    unsafe fn device_ptr(&self) -> u64;
}

/// One encoded access unit, borrowed from the locked bitstream buffer.
#[derive(Debug)]
pub struct EncodedFrame<'a> {
    pub data: &'a [u8],
    pub pts: u64,
    pub keyframe: bool,
}

/// One registered input: the registration, the pitch NVENC reads with, and the allocation it
/// keeps alive until unregistered.
struct Registration {
    registered: sys::NV_ENC_REGISTERED_PTR,
    pitch: u32,
    allocation: Arc<dyn Any + Send + Sync>,
}

/// One NVENC session. Owns its session handle, its registrations, its mapped inputs and its
/// bitstream buffers; `Drop` releases them in the order NVENC requires (module docs).
pub struct Encoder {
    api: Arc<NvencApi>,
    ctx: Arc<DeviceContext>,
    handle: result::Session,
    cfg: EncoderConfig,
    init: Box<sys::NV_ENC_INITIALIZE_PARAMS>,
    config: Box<sys::NV_ENC_CONFIG>,
    /// CUstream handles given to nvEncSetIOCudaStreams (kept alive: NVENC takes their address).
    streams: Box<[*mut c_void; 2]>,
    inputs: Vec<Registration>,
    bitstreams: Vec<sys::NV_ENC_OUTPUT_PTR>,
    next_bitstream: usize,
    /// Submitted, not yet read back: (bitstream index, input index, mapped input).
    pending: VecDeque<(usize, usize, sys::NV_ENC_INPUT_PTR)>,
    frame_idx: u32,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("cfg", &self.cfg)
            .field("inputs", &self.inputs.len())
            .field("bitstreams", &self.bitstreams.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

// SAFETY: an NVENC session may be driven from any thread as long as calls on it do not overlap;
// every call goes through `&mut self` (or `Drop`), so they cannot; the context it binds is
// shared through an `Arc` of a `Send + Sync` type, and the kept allocations are `Send + Sync`.
unsafe impl Send for Encoder {}

impl Encoder {
    /// Opens and initialises a session on `ctx`, registers `inputs` once, and hands NVENC the
    /// context's scaling stream, so that it orders its reads of the inputs after the scaling
    /// kernel without a device-wide sync. The inputs must be made on `ctx`, distinct, and at
    /// least the encoded size.
    pub fn open<B: InputBuffer>(
        api: Arc<NvencApi>,
        ctx: &Arc<DeviceContext>,
        cfg: EncoderConfig,
        inputs: &[&B],
    ) -> Result<Encoder, CudaError> {
        if cfg.width < 16
            || cfg.height < 16
            || !cfg.width.is_multiple_of(2)
            || !cfg.height.is_multiple_of(2)
            || cfg.fps_num == 0
        {
            return Err(CudaError::Invalid(format!(
                "encoder {}x{} @ {}/{}",
                cfg.width, cfg.height, cfg.fps_num, cfg.fps_den
            )));
        }
        if inputs.is_empty() {
            return Err(CudaError::Invalid("an encoder needs at least one input buffer".into()));
        }
        for (i, b) in inputs.iter().enumerate() {
            let (w, h, pitch) = b.dims();
            if w < cfg.width || h < cfg.height || pitch < w as usize || u32::try_from(pitch).is_err() {
                return Err(CudaError::Invalid(format!(
                    "input {i} is {w}x{h} (pitch {pitch}), the encoder {}x{}",
                    cfg.width, cfg.height
                )));
            }
            if !b.made_on(ctx) {
                return Err(CudaError::Invalid(format!("input {i} is a buffer of another context")));
            }
            // NVENC refuses a second registration of the same buffer in a session.
            if inputs[..i].iter().any(|o| Arc::ptr_eq(&o.allocation(), &b.allocation())) {
                return Err(CudaError::Invalid(format!("input {i} is given twice")));
            }
        }
        let _current = ctx.push()?;
        // SAFETY: the context is live: `ctx` holds it, and the encoder keeps `ctx`.
        let handle = unsafe { result::open_session(&api, ctx.ordinal(), ctx.raw_context()) }?;
        let stream = ctx.raw_stream();
        // From here on `Drop` cleans up whatever was made.
        let mut enc = Encoder {
            api,
            ctx: ctx.clone(),
            handle,
            init: Box::new(result::zeroed_init_params()),
            config: Box::new(result::zeroed_config()),
            streams: Box::new([stream, stream]),
            cfg,
            inputs: Vec::new(),
            bitstreams: Vec::new(),
            next_bitstream: 0,
            pending: VecDeque::new(),
            frame_idx: 0,
        };
        enc.initialise()?;
        if !stream.is_null() {
            let streams: *mut [*mut c_void; 2] = &mut *enc.streams;
            // SAFETY: live session; `enc.streams` is boxed, never moved, and lives as long as
            // the session.
            unsafe { result::set_io_cuda_streams(&enc.api, enc.handle, streams) }?;
        }
        for input in inputs {
            enc.register(*input)?;
        }
        // One buffer per frame NVENC may hold back (B-frames), one per picture kept in flight
        // (the output delay), plus two for pipelining.
        for _ in 0..enc.cfg.b_frames + enc.cfg.output_delay + 2 {
            // SAFETY: live, initialised session.
            let bs = unsafe { result::create_bitstream_buffer(&enc.api, enc.handle) }?;
            enc.bitstreams.push(bs);
        }
        Ok(enc)
    }

    fn initialise(&mut self) -> Result<(), CudaError> {
        let cfg = &self.cfg;
        let tuning = if cfg.low_latency {
            sys::NV_ENC_TUNING_INFO::NV_ENC_TUNING_INFO_LOW_LATENCY
        } else {
            sys::NV_ENC_TUNING_INFO::NV_ENC_TUNING_INFO_HIGH_QUALITY
        };
        // SAFETY: live session.
        let mut c = unsafe { result::preset_config(&self.api, self.handle, cfg.preset.guid(), tuning) }?;
        c.version = sys::NV_ENC_CONFIG_VER;
        c.profileGUID = match cfg.profile_idc {
            66 => sys::NV_ENC_H264_PROFILE_BASELINE_GUID,
            77 => sys::NV_ENC_H264_PROFILE_MAIN_GUID,
            _ => sys::NV_ENC_H264_PROFILE_HIGH_GUID,
        };
        // Keyframes are forced by the pipeline (segment start, the PTS grid shared by every
        // rendition), never placed by NVENC on its own.
        c.gopLength = sys::NVENC_INFINITE_GOPLENGTH;
        c.frameIntervalP = cfg.b_frames as i32 + 1;
        c.rcParams.rateControlMode = sys::NV_ENC_PARAMS_RC_MODE::NV_ENC_PARAMS_RC_CBR;
        c.rcParams.averageBitRate = cfg.bitrate;
        c.rcParams.maxBitRate = cfg.bitrate;
        // One second of VBV, as libx264's CBR setups do for live ladders.
        c.rcParams.vbvBufferSize = cfg.bitrate;
        c.rcParams.vbvInitialDelay = cfg.bitrate;
        // SAFETY: `encodeCodecConfig` is a union; for the H.264 codec GUID its `h264Config` member
        // is the active one (the preset filled it in).
        let h264 = unsafe { &mut c.encodeCodecConfig.h264Config };
        h264.idrPeriod = sys::NVENC_INFINITE_GOPLENGTH;
        h264.set_repeatSPSPPS(1);
        *self.config = c;
        let init = &mut *self.init;
        init.version = sys::NV_ENC_INITIALIZE_PARAMS_VER;
        init.encodeGUID = sys::NV_ENC_CODEC_H264_GUID;
        init.presetGUID = cfg.preset.guid();
        init.encodeWidth = cfg.width;
        init.encodeHeight = cfg.height;
        init.darWidth = cfg.width;
        init.darHeight = cfg.height;
        init.frameRateNum = cfg.fps_num;
        init.frameRateDen = cfg.fps_den.max(1);
        init.enablePTD = 1;
        init.encodeConfig = &mut *self.config;
        init.maxEncodeWidth = cfg.width;
        init.maxEncodeHeight = cfg.height;
        init.tuningInfo = tuning;
        init.bufferFormat = sys::NV_ENC_BUFFER_FORMAT::NV_ENC_BUFFER_FORMAT_NV12;
        // SAFETY: live session; `init` and the config it points to are boxed in `self` and
        // live as long as the session.
        unsafe { result::initialize(&self.api, self.handle, init) }
    }

    fn register<B: InputBuffer>(&mut self, input: &B) -> Result<(), CudaError> {
        let (_, _, pitch) = input.dims();
        let pitch = u32::try_from(pitch).map_err(|_| CudaError::Invalid(format!("pitch {pitch}")))?;
        let allocation = input.allocation();
        // SAFETY: live session; the buffer's allocation (InputBuffer's contract: at least
        // pitch x height x 3/2 bytes, at least the encoded size, checked in `open`) is kept by
        // the registration until it is unregistered.
        let registered = unsafe {
            result::register_resource(
                &self.api,
                self.handle,
                input.device_ptr(),
                (self.cfg.width, self.cfg.height, pitch),
            )
        }?;
        self.inputs.push(Registration { registered, pitch, allocation });
        Ok(())
    }

    /// Pictures submitted and not yet read back (their input buffers are still NVENC's).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Encodes input buffer `input` (its index in `open`'s inputs, already written by the
    /// kernel on the context's stream), an IDR when `idr`. Every access unit that becomes ready
    /// is passed to `out`, in order.
    pub fn encode(
        &mut self,
        input: usize,
        pts: u64,
        idr: bool,
        out: &mut dyn FnMut(EncodedFrame<'_>),
    ) -> Result<(), CudaError> {
        let ctx = self.ctx.clone();
        let _current = ctx.push()?;
        let Some(reg) = self.inputs.get(input) else {
            return Err(CudaError::Invalid(format!("no input buffer {input}")));
        };
        let (registered, pitch) = (reg.registered, reg.pitch);
        if self.pending.len() >= self.bitstreams.len() {
            return Err(CudaError::Invalid("every bitstream buffer is in flight".into()));
        }
        if self.pending.iter().any(|&(_, i, _)| i == input) {
            return Err(CudaError::Invalid(format!("input buffer {input} is still being encoded")));
        }
        // SAFETY: live session; `registered` is one of its registrations and not mapped (every
        // mapping is in `pending` until its picture is read back, checked above).
        let (mapped, fmt) = unsafe { result::map_input_resource(&self.api, self.handle, registered) }?;
        let bs = self.next_bitstream;
        self.next_bitstream = (bs + 1) % self.bitstreams.len();
        let mut p = result::zeroed_pic_params();
        p.inputWidth = self.cfg.width;
        p.inputHeight = self.cfg.height;
        p.inputPitch = pitch;
        if idr {
            p.encodePicFlags = sys::NV_ENC_PIC_FLAGS::NV_ENC_PIC_FLAG_FORCEIDR as u32
                | sys::NV_ENC_PIC_FLAGS::NV_ENC_PIC_FLAG_OUTPUT_SPSPPS as u32;
        }
        p.frameIdx = self.frame_idx;
        p.inputTimeStamp = pts;
        p.inputBuffer = mapped;
        p.outputBitstream = self.bitstreams[bs];
        p.bufferFmt = fmt;
        self.frame_idx = self.frame_idx.wrapping_add(1);
        // SAFETY: live session; the mapped input and the bitstream buffer belong to it and stay
        // valid until read back (they are tracked in `pending`).
        match unsafe { result::encode_picture(&self.api, self.handle, &mut p) } {
            Ok(Submitted::Ready) => {
                self.pending.push_back((bs, input, mapped));
                // Only pictures older than the output delay are read back now (NvEncoder's
                // GetEncodedPacket with bOutputDelay): the newest stay in flight.
                self.drain(out, self.cfg.output_delay as usize)
            }
            Ok(Submitted::NeedMoreInput) => {
                self.pending.push_back((bs, input, mapped));
                Ok(())
            }
            Err(e) => {
                // Never submitted: nothing to read back (a pending entry would make the next
                // drain lock a buffer NVENC never wrote); its input goes back.
                self.next_bitstream = bs;
                // SAFETY: `mapped` is a mapping of this session, not in `pending`, unmapped once.
                let unmapped = unsafe { result::unmap_input_resource(&self.api, self.handle, mapped) };
                self.ctx.record_release(unmapped);
                Err(e)
            }
        }
    }

    /// Reads back pending access units, oldest first, until `keep` are left in flight.
    fn drain(&mut self, out: &mut dyn FnMut(EncodedFrame<'_>), keep: usize) -> Result<(), CudaError> {
        while self.pending.len() > keep {
            let Some((bs, _, mapped)) = self.pending.pop_front() else { break };
            let buffer = self.bitstreams[bs];
            // SAFETY: live session and one of its bitstream buffers, submitted to an encode and
            // not locked (each lock is unlocked below before the next).
            let l = match unsafe { result::lock_bitstream(&self.api, self.handle, buffer) } {
                Ok(l) => l,
                Err(e) => {
                    // The picture is lost; its input goes back.
                    // SAFETY: `mapped` is a mapping of this session, unmapped once (popped).
                    let unmapped = unsafe { result::unmap_input_resource(&self.api, self.handle, mapped) };
                    self.ctx.record_release(unmapped);
                    return Err(e);
                }
            };
            let data = if l.bitstreamBufferPtr.is_null() || l.bitstreamSizeInBytes == 0 {
                &[][..]
            } else {
                // SAFETY: while locked, NVENC guarantees `bitstreamSizeInBytes` readable bytes at
                // `bitstreamBufferPtr`; the slice is gone before the unlock below.
                unsafe {
                    std::slice::from_raw_parts(l.bitstreamBufferPtr.cast::<u8>(), l.bitstreamSizeInBytes as usize)
                }
            };
            let keyframe = matches!(l.pictureType, sys::NV_ENC_PIC_TYPE::NV_ENC_PIC_TYPE_IDR);
            out(EncodedFrame { data, pts: l.outputTimeStamp, keyframe });
            // SAFETY: the buffer was locked above on this session; the borrowed slice is gone.
            let unlocked = unsafe { result::unlock_bitstream(&self.api, self.handle, buffer) };
            // SAFETY: `mapped` is a mapping of this session whose picture has been read back;
            // unmapped once (popped).
            let unmapped = unsafe { result::unmap_input_resource(&self.api, self.handle, mapped) };
            unlocked.and(unmapped)?;
        }
        Ok(())
    }

    /// Changes the bitrate without a new session (nvEncReconfigureEncoder, no reset, no IDR).
    /// The session's stored config changes only when NVENC accepted the new one.
    pub fn set_bitrate(&mut self, bitrate: u32) -> Result<(), CudaError> {
        let (num, den) = (self.init.frameRateNum, self.init.frameRateDen);
        self.set_rate(bitrate, num, den)
    }

    /// Changes the bitrate and the frame rate rate control budgets for (`fps_num/fps_den`) on the
    /// running session: no new session, no IDR. A stream whose rate turns out other than the one
    /// the session was opened at (the first picture's guess) is budgeted right from then on.
    /// The stored config and rate change only once NVENC accepted them.
    pub fn set_rate(&mut self, bitrate: u32, fps_num: u32, fps_den: u32) -> Result<(), CudaError> {
        let ctx = self.ctx.clone();
        let _current = ctx.push()?;
        let mut config = Box::new(*self.config);
        config.rcParams.averageBitRate = bitrate;
        config.rcParams.maxBitRate = bitrate;
        config.rcParams.vbvBufferSize = bitrate;
        config.rcParams.vbvInitialDelay = bitrate;
        // SAFETY: zeroed NVENC parameter struct (its enums have zero values), versioned below.
        let mut r: sys::NV_ENC_RECONFIGURE_PARAMS = unsafe { std::mem::zeroed() };
        r.version = sys::NV_ENC_RECONFIGURE_PARAMS_VER;
        r.reInitEncodeParams = *self.init;
        r.reInitEncodeParams.frameRateNum = fps_num;
        r.reInitEncodeParams.frameRateDen = fps_den.max(1);
        r.reInitEncodeParams.encodeConfig = &mut *config;
        // SAFETY: live session; the parameters point to `config`, alive for the call (NVENC
        // copies a reconfiguration's parameters).
        unsafe { result::reconfigure(&self.api, self.handle, &mut r) }?;
        // Accepted: the stored config (the one `init` points at) follows.
        *self.config = *config;
        self.init.frameRateNum = fps_num;
        self.init.frameRateDen = fps_den.max(1);
        self.cfg.bitrate = bitrate;
        (self.cfg.fps_num, self.cfg.fps_den) = (fps_num, fps_den.max(1));
        Ok(())
    }

    /// The bitrate of the config NVENC last accepted.
    pub fn bitrate(&self) -> u32 {
        self.config.rcParams.averageBitRate
    }

    /// End of a segment: an EOS picture makes NVENC emit everything it holds.
    pub fn flush(&mut self, out: &mut dyn FnMut(EncodedFrame<'_>)) -> Result<(), CudaError> {
        let ctx = self.ctx.clone();
        let _current = ctx.push()?;
        // SAFETY: live session.
        unsafe { result::encode_eos(&self.api, self.handle) }?;
        self.drain(out, 0)
    }
}

impl Drop for Encoder {
    /// NVIDIA's order: unmap, unregister, destroy the bitstream buffers, destroy the session;
    /// the input allocations are let go of last. Each failure is recorded on the context.
    fn drop(&mut self) {
        let ctx = self.ctx.clone();
        let _current = ctx.push_for_release();
        let (api, enc) = (&*self.api, self.handle);
        if !self.pending.is_empty() {
            // Pictures still in flight: an EOS picture first, so that NVENC lets go of their
            // inputs before they are unmapped (FFmpeg's ff_nvenc_encode_close; NvEncoder's
            // EndEncode before DestroyEncoder).
            // SAFETY: live session.
            ctx.record_release(unsafe { result::encode_eos(api, enc) });
        }
        for (_, _, mapped) in self.pending.drain(..) {
            // SAFETY: a mapping of this live session, unmapped once (drained).
            ctx.record_release(unsafe { result::unmap_input_resource(api, enc, mapped) });
        }
        let mut allocations = Vec::with_capacity(self.inputs.len());
        for reg in self.inputs.drain(..) {
            // SAFETY: a registration of this live session, no longer mapped (above), unregistered
            // once (drained).
            ctx.record_release(unsafe { result::unregister_resource(api, enc, reg.registered) });
            allocations.push(reg.allocation);
        }
        for bs in self.bitstreams.drain(..) {
            // SAFETY: a bitstream buffer of this live session, not locked (every lock is
            // unlocked in `drain`), destroyed once (drained).
            ctx.record_release(unsafe { result::destroy_bitstream_buffer(api, enc, bs) });
        }
        // SAFETY: the session is live and destroyed once, with nothing of it left.
        ctx.record_release(unsafe { result::destroy_encoder(api, enc) });
        // Only now may the input buffers be freed (their owners may have dropped them already).
        drop(allocations);
    }
}

#[cfg(test)]
pub(crate) mod fake;

#[cfg(test)]
mod tests;
