//! NVENC in three layers: `sys` (the SDK 12.1 bindings of `nvidia-video-codec-sdk`, with its
//! link directives dropped), [`NvencApi`] (the function table, resolved at run time from
//! `libnvidia-encode.so.1`, every call turned into a `Result` naming the call and its status) and
//! [`Encoder`] (one encode session: the only owner of its handle, registered inputs and bitstream
//! buffers, released in `Drop`).
//!
//! Call order of a session (NVIDIA's encoder programming guide): open (CUDA context) -> preset
//! config -> initialise -> set the CUDA streams -> register the input buffers once -> create the
//! bitstream buffers; per frame map -> encode -> (when output is ready) lock -> copy -> unlock ->
//! unmap; at the end an EOS picture drains what the encoder holds; then unregister, destroy the
//! buffers, destroy the session. Bitrate changes and forced IDRs need no new session.

use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::Arc;

use nvidia_video_codec_sdk::sys::nvEncodeAPI as sys;
use sys::{GUID, NVENCSTATUS};

use super::error::CudaError;

/// The library and its entry points (NVIDIA's names).
const LIB: &str = "libnvidia-encode.so.1";

/// `NvEncodeAPIGetMaxSupportedVersion` / `NvEncodeAPICreateInstance`, declared with a plain `u32`
/// status so that a value this SDK does not know cannot become an invalid Rust enum.
type GetMaxVersionFn = unsafe extern "C" fn(*mut u32) -> u32;
type CreateInstanceFn = unsafe extern "C" fn(*mut sys::NV_ENCODE_API_FUNCTION_LIST) -> u32;

/// The NVENC function table. Built from the driver ([`NvencApi::load`]) or, in tests, from a
/// recording fake ([`NvencApi::from_table`]).
pub struct NvencApi {
    fns: sys::NV_ENCODE_API_FUNCTION_LIST,
    /// Keeps the library mapped while the table's pointers are in use.
    _lib: Option<libloading::Library>,
}

// SAFETY: the table is immutable after loading and holds only function pointers into the
// driver, whose entry points may be called from any thread (each session's calls are serialised
// by its `Encoder`, which needs `&mut self`).
unsafe impl Send for NvencApi {}
// SAFETY: as above: shared references only read the function pointers.
unsafe impl Sync for NvencApi {}

impl std::fmt::Debug for NvencApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvencApi").field("driver", &self._lib.is_some()).finish()
    }
}

fn status_error(api: &'static str, status: NVENCSTATUS) -> CudaError {
    CudaError::Nvenc { api, status: format!("{status:?}") }
}

fn ok(api: &'static str, status: NVENCSTATUS) -> Result<(), CudaError> {
    if status == NVENCSTATUS::NV_ENC_SUCCESS { Ok(()) } else { Err(status_error(api, status)) }
}

/// An all-zero NVENC parameter struct (reserved fields must be zero) with its enum fields that
/// have no zero value set by `fix`: the SDK's bindgen enums make a plain `mem::zeroed` invalid
/// for `NV_ENC_CONFIG` (`frameFieldMode`), `NV_ENC_PIC_PARAMS` and `NV_ENC_LOCK_BITSTREAM`
/// (`pictureStruct`).
///
/// # Safety
/// Every field of `T` that is not valid as all-zero bytes must be written by `fix`.
unsafe fn zeroed_fix<T>(fix: impl FnOnce(*mut T)) -> T {
    let mut v = std::mem::MaybeUninit::<T>::zeroed();
    fix(v.as_mut_ptr());
    // SAFETY: zero bytes for every field but those `fix` wrote (the caller's contract).
    unsafe { v.assume_init() }
}

const FRAME: sys::NV_ENC_PIC_STRUCT = sys::NV_ENC_PIC_STRUCT::NV_ENC_PIC_STRUCT_FRAME;
const PROGRESSIVE: sys::NV_ENC_PARAMS_FRAME_FIELD_MODE =
    sys::NV_ENC_PARAMS_FRAME_FIELD_MODE::NV_ENC_PARAMS_FRAME_FIELD_MODE_FRAME;

fn zeroed_config() -> sys::NV_ENC_CONFIG {
    // SAFETY: `frameFieldMode` is NV_ENC_CONFIG's only field with no zero value.
    unsafe { zeroed_fix(|c: *mut sys::NV_ENC_CONFIG| std::ptr::addr_of_mut!((*c).frameFieldMode).write(PROGRESSIVE)) }
}

fn zeroed_pic_params() -> sys::NV_ENC_PIC_PARAMS {
    // SAFETY: `pictureStruct` is NV_ENC_PIC_PARAMS's only field with no zero value.
    unsafe { zeroed_fix(|p: *mut sys::NV_ENC_PIC_PARAMS| std::ptr::addr_of_mut!((*p).pictureStruct).write(FRAME)) }
}

fn zeroed_lock() -> sys::NV_ENC_LOCK_BITSTREAM {
    // SAFETY: `pictureStruct` is NV_ENC_LOCK_BITSTREAM's only field with no zero value.
    unsafe { zeroed_fix(|p: *mut sys::NV_ENC_LOCK_BITSTREAM| std::ptr::addr_of_mut!((*p).pictureStruct).write(FRAME)) }
}

/// Takes an entry of the function table or says which one the driver did not fill in.
macro_rules! entry {
    ($api:expr, $name:ident) => {
        $api.fns.$name.ok_or(CudaError::MissingSymbol { lib: LIB, symbol: stringify!($name) })?
    };
}

impl NvencApi {
    /// Loads `libnvidia-encode.so.1` and fills the function table. No driver: `NoDriver`.
    pub fn load() -> Result<Arc<NvencApi>, CudaError> {
        // SAFETY: loading the NVIDIA encode library runs its initialisers, which have no
        // preconditions on our side; the handle lives in the returned value as long as the table.
        let lib = unsafe { libloading::Library::new(LIB) }
            .map_err(|e| CudaError::NoDriver { lib: LIB, why: e.to_string() })?;
        // SAFETY: the symbols have these C signatures in nvEncodeAPI.h (SDK 12.1); the returned
        // function pointers are only used while `lib` is alive (it moves into the NvencApi).
        let (max_version, create) = unsafe {
            let max = lib
                .get::<GetMaxVersionFn>(b"NvEncodeAPIGetMaxSupportedVersion\0")
                .map_err(|_| CudaError::MissingSymbol { lib: LIB, symbol: "NvEncodeAPIGetMaxSupportedVersion" })?;
            let create = lib
                .get::<CreateInstanceFn>(b"NvEncodeAPICreateInstance\0")
                .map_err(|_| CudaError::MissingSymbol { lib: LIB, symbol: "NvEncodeAPICreateInstance" })?;
            (*max, *create)
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
        Ok(Arc::new(NvencApi { fns, _lib: Some(lib) }))
    }

    /// A table filled by someone else: the recording fake in tests (a test double of the driver,
    /// the one boundary that cannot run here).
    pub fn from_table(fns: sys::NV_ENCODE_API_FUNCTION_LIST) -> Arc<NvencApi> {
        Arc::new(NvencApi { fns, _lib: None })
    }
}

/// NVENC's quality/speed presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preset {
    /// Fastest.
    P1,
    P2,
    #[default]
    P3,
    P4,
    P5,
    P6,
    /// Best quality.
    P7,
}

impl Preset {
    fn guid(self) -> GUID {
        match self {
            Preset::P1 => sys::NV_ENC_PRESET_P1_GUID,
            Preset::P2 => sys::NV_ENC_PRESET_P2_GUID,
            Preset::P3 => sys::NV_ENC_PRESET_P3_GUID,
            Preset::P4 => sys::NV_ENC_PRESET_P4_GUID,
            Preset::P5 => sys::NV_ENC_PRESET_P5_GUID,
            Preset::P6 => sys::NV_ENC_PRESET_P6_GUID,
            Preset::P7 => sys::NV_ENC_PRESET_P7_GUID,
        }
    }

    /// `p1`..`p7`.
    pub fn parse(s: &str) -> Option<Preset> {
        Some(match s.to_ascii_lowercase().as_str() {
            "p1" => Preset::P1,
            "p2" => Preset::P2,
            "p3" => Preset::P3,
            "p4" => Preset::P4,
            "p5" => Preset::P5,
            "p6" => Preset::P6,
            "p7" => Preset::P7,
            _ => return None,
        })
    }
}

/// What one rendition's encoder makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderConfig {
    pub width: u32,
    pub height: u32,
    pub fps_num: u32,
    pub fps_den: u32,
    /// Bits per second, constant bitrate.
    pub bitrate: u32,
    pub preset: Preset,
    /// Low-latency tuning (the default) or high quality.
    pub low_latency: bool,
    /// B-frames between references (0 for low latency).
    pub b_frames: u32,
    /// H.264 profile: 66 baseline, 77 main, 100 high.
    pub profile_idc: u8,
}

/// One NVENC input buffer: device memory owned by the caller (the pipeline's pool), NV12 with
/// luma at `ptr` and interleaved chroma `pitch * height` bytes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSurface {
    pub ptr: u64,
    pub pitch: u32,
}

/// One encoded access unit, borrowed from the locked bitstream buffer.
#[derive(Debug)]
pub struct EncodedFrame<'a> {
    pub data: &'a [u8],
    pub pts: u64,
    pub keyframe: bool,
}

/// One NVENC session. Owns its session handle, its input registrations and bitstream buffers;
/// `Drop` releases them in the order NVENC requires.
pub struct Encoder {
    api: Arc<NvencApi>,
    handle: *mut c_void,
    cfg: EncoderConfig,
    init: Box<sys::NV_ENC_INITIALIZE_PARAMS>,
    config: Box<sys::NV_ENC_CONFIG>,
    /// CUstream handles given to nvEncSetIOCudaStreams (kept alive: NVENC takes their address).
    streams: Box<[*mut c_void; 2]>,
    registered: Vec<(InputSurface, sys::NV_ENC_REGISTERED_PTR)>,
    bitstreams: Vec<sys::NV_ENC_OUTPUT_PTR>,
    next_bitstream: usize,
    /// Submitted, not yet read back: (bitstream index, mapped input).
    pending: VecDeque<(usize, sys::NV_ENC_INPUT_PTR)>,
    frame_idx: u32,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("cfg", &self.cfg)
            .field("inputs", &self.registered.len())
            .field("bitstreams", &self.bitstreams.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

// SAFETY: an NVENC session may be driven from any thread as long as calls on it do not overlap;
// every call goes through `&mut self` (or `Drop`), so they cannot.
unsafe impl Send for Encoder {}

impl Encoder {
    /// Opens and initialises a session on `cuda_context` (a `CUcontext`), registers `inputs`
    /// once, and hands NVENC `stream` (a `CUstream`, or null) so that it orders its reads of the
    /// inputs after the scaling kernel without a device-wide sync.
    pub fn open(
        api: Arc<NvencApi>,
        ordinal: usize,
        cuda_context: *mut c_void,
        stream: *mut c_void,
        cfg: EncoderConfig,
        inputs: &[InputSurface],
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
        if inputs.is_empty() || cuda_context.is_null() {
            return Err(CudaError::Invalid("an encoder needs a CUDA context and at least one input buffer".into()));
        }
        let open_fn = entry!(api, nvEncOpenEncodeSessionEx);
        // SAFETY: all-zero is the documented initial state of NVENC parameter structs (reserved
        // fields must be zero); the versions are set below.
        let mut params: sys::NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS = unsafe { std::mem::zeroed() };
        params.version = sys::NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS_VER;
        params.deviceType = sys::NV_ENC_DEVICE_TYPE::NV_ENC_DEVICE_TYPE_CUDA;
        params.device = cuda_context;
        params.apiVersion = sys::NVENCAPI_VERSION;
        let mut handle = std::ptr::null_mut();
        // SAFETY: `params` and `handle` are valid for the call; the context is the caller's live
        // CUcontext (checked non-null).
        let st = unsafe { open_fn(&mut params, &mut handle) };
        if st != NVENCSTATUS::NV_ENC_SUCCESS {
            // Consumer GPUs answer a session over their limit with OUT_OF_MEMORY (or, on some
            // drivers, INCOMPATIBLE_CLIENT_KEY).
            return Err(match st {
                NVENCSTATUS::NV_ENC_ERR_OUT_OF_MEMORY | NVENCSTATUS::NV_ENC_ERR_INCOMPATIBLE_CLIENT_KEY => {
                    CudaError::SessionLimit { ordinal, api: "nvEncOpenEncodeSessionEx", status: format!("{st:?}") }
                }
                NVENCSTATUS::NV_ENC_ERR_NO_ENCODE_DEVICE | NVENCSTATUS::NV_ENC_ERR_UNSUPPORTED_DEVICE => {
                    CudaError::NoEncoder { ordinal, why: format!("nvEncOpenEncodeSessionEx: {st:?}") }
                }
                _ => status_error("nvEncOpenEncodeSessionEx", st),
            });
        }
        // From here on `Drop` cleans up whatever was made.
        let mut enc = Encoder {
            api,
            handle,
            // SAFETY: as above, zeroed parameter structs are NVENC's initial state.
            init: Box::new(unsafe { std::mem::zeroed() }),
            config: Box::new(zeroed_config()),
            streams: Box::new([stream, stream]),
            cfg,
            registered: Vec::new(),
            bitstreams: Vec::new(),
            next_bitstream: 0,
            pending: VecDeque::new(),
            frame_idx: 0,
        };
        enc.initialise()?;
        if !stream.is_null() {
            let set = entry!(enc.api, nvEncSetIOCudaStreams);
            let streams = enc.streams.as_mut_ptr();
            // SAFETY: NVENC reads a CUstream from each pointer; both point into `enc.streams`,
            // which lives (boxed, never moved) as long as the session.
            ok("nvEncSetIOCudaStreams", unsafe { set(enc.handle, streams.cast(), streams.add(1).cast()) })?;
        }
        for &input in inputs {
            enc.register(input)?;
        }
        // One buffer per frame NVENC may hold back (B-frames) plus two for pipelining.
        for _ in 0..enc.cfg.b_frames + 2 {
            enc.create_bitstream()?;
        }
        Ok(enc)
    }

    fn initialise(&mut self) -> Result<(), CudaError> {
        let preset_fn = entry!(self.api, nvEncGetEncodePresetConfigEx);
        let init_fn = entry!(self.api, nvEncInitializeEncoder);
        let cfg = &self.cfg;
        let tuning = if cfg.low_latency {
            sys::NV_ENC_TUNING_INFO::NV_ENC_TUNING_INFO_LOW_LATENCY
        } else {
            sys::NV_ENC_TUNING_INFO::NV_ENC_TUNING_INFO_HIGH_QUALITY
        };
        // SAFETY: `presetCfg.frameFieldMode` is NV_ENC_PRESET_CONFIG's only field with no zero value.
        let mut preset: sys::NV_ENC_PRESET_CONFIG = unsafe {
            zeroed_fix(|p: *mut sys::NV_ENC_PRESET_CONFIG| {
                std::ptr::addr_of_mut!((*p).presetCfg.frameFieldMode).write(PROGRESSIVE)
            })
        };
        preset.version = sys::NV_ENC_PRESET_CONFIG_VER;
        preset.presetCfg.version = sys::NV_ENC_CONFIG_VER;
        // SAFETY: valid session handle and a versioned out-struct for the call's duration.
        ok("nvEncGetEncodePresetConfigEx", unsafe {
            preset_fn(self.handle, sys::NV_ENC_CODEC_H264_GUID, cfg.preset.guid(), tuning, &mut preset)
        })?;
        let mut c = preset.presetCfg;
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
        // SAFETY: `init` and the config it points to are boxed in `self` and outlive the call.
        ok("nvEncInitializeEncoder", unsafe { init_fn(self.handle, init) })
    }

    fn register(&mut self, input: InputSurface) -> Result<(), CudaError> {
        let reg_fn = entry!(self.api, nvEncRegisterResource);
        // SAFETY: zeroed NVENC parameter struct, versioned below.
        let mut r: sys::NV_ENC_REGISTER_RESOURCE = unsafe { std::mem::zeroed() };
        r.version = sys::NV_ENC_REGISTER_RESOURCE_VER;
        r.resourceType = sys::NV_ENC_INPUT_RESOURCE_TYPE::NV_ENC_INPUT_RESOURCE_TYPE_CUDADEVICEPTR;
        r.width = self.cfg.width;
        r.height = self.cfg.height;
        r.pitch = input.pitch;
        r.resourceToRegister = input.ptr as *mut c_void;
        r.bufferFormat = sys::NV_ENC_BUFFER_FORMAT::NV_ENC_BUFFER_FORMAT_NV12;
        r.bufferUsage = sys::NV_ENC_BUFFER_USAGE::NV_ENC_INPUT_IMAGE;
        // SAFETY: valid session and parameter struct; the device pointer is the caller's
        // allocation of pitch x height x 3/2 bytes, which outlives the registration (the
        // pipeline drops encoders before their input pool).
        ok("nvEncRegisterResource", unsafe { reg_fn(self.handle, &mut r) })?;
        self.registered.push((input, r.registeredResource));
        Ok(())
    }

    fn create_bitstream(&mut self) -> Result<(), CudaError> {
        let create = entry!(self.api, nvEncCreateBitstreamBuffer);
        // SAFETY: zeroed NVENC parameter struct, versioned below.
        let mut b: sys::NV_ENC_CREATE_BITSTREAM_BUFFER = unsafe { std::mem::zeroed() };
        b.version = sys::NV_ENC_CREATE_BITSTREAM_BUFFER_VER;
        // SAFETY: valid session and parameter struct for the call.
        ok("nvEncCreateBitstreamBuffer", unsafe { create(self.handle, &mut b) })?;
        self.bitstreams.push(b.bitstreamBuffer);
        Ok(())
    }

    /// The input buffers, in registration order (index = `input` of [`Encoder::encode`]).
    /// Pictures submitted and not yet read back (their input buffers are still NVENC's).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    pub fn inputs(&self) -> impl Iterator<Item = InputSurface> + '_ {
        self.registered.iter().map(|r| r.0)
    }

    /// Encodes input buffer `input` (already written by the kernel on the stream given at open),
    /// an IDR when `idr`. Every access unit that becomes ready is passed to `out`, in order.
    pub fn encode(
        &mut self,
        input: usize,
        pts: u64,
        idr: bool,
        out: &mut dyn FnMut(EncodedFrame<'_>),
    ) -> Result<(), CudaError> {
        let Some(&(surface, registered)) = self.registered.get(input) else {
            return Err(CudaError::Invalid(format!("no input buffer {input}")));
        };
        if self.pending.len() >= self.bitstreams.len() {
            return Err(CudaError::Invalid("every bitstream buffer is in flight".into()));
        }
        let map_fn = entry!(self.api, nvEncMapInputResource);
        let encode_fn = entry!(self.api, nvEncEncodePicture);
        // SAFETY: zeroed NVENC parameter struct, versioned below.
        let mut m: sys::NV_ENC_MAP_INPUT_RESOURCE = unsafe { std::mem::zeroed() };
        m.version = sys::NV_ENC_MAP_INPUT_RESOURCE_VER;
        m.registeredResource = registered;
        // SAFETY: valid session; `registered` came from nvEncRegisterResource on it.
        ok("nvEncMapInputResource", unsafe { map_fn(self.handle, &mut m) })?;
        let bs = self.next_bitstream;
        self.next_bitstream = (bs + 1) % self.bitstreams.len();
        let mut p = zeroed_pic_params();
        p.version = sys::NV_ENC_PIC_PARAMS_VER;
        p.inputWidth = self.cfg.width;
        p.inputHeight = self.cfg.height;
        p.inputPitch = surface.pitch;
        if idr {
            p.encodePicFlags = sys::NV_ENC_PIC_FLAGS::NV_ENC_PIC_FLAG_FORCEIDR as u32
                | sys::NV_ENC_PIC_FLAGS::NV_ENC_PIC_FLAG_OUTPUT_SPSPPS as u32;
        }
        p.frameIdx = self.frame_idx;
        p.inputTimeStamp = pts;
        p.inputBuffer = m.mappedResource;
        p.outputBitstream = self.bitstreams[bs];
        p.bufferFmt = m.mappedBufferFmt;
        self.frame_idx = self.frame_idx.wrapping_add(1);
        self.pending.push_back((bs, m.mappedResource));
        // SAFETY: valid session; the mapped input and the bitstream buffer belong to it and
        // stay valid until read back (they are tracked in `pending`).
        let st = unsafe { encode_fn(self.handle, &mut p) };
        match st {
            NVENCSTATUS::NV_ENC_SUCCESS => self.drain(out),
            // B-frames / lookahead: the output comes with a later picture.
            NVENCSTATUS::NV_ENC_ERR_NEED_MORE_INPUT => Ok(()),
            _ => Err(status_error("nvEncEncodePicture", st)),
        }
    }

    /// Reads back every pending access unit, oldest first.
    fn drain(&mut self, out: &mut dyn FnMut(EncodedFrame<'_>)) -> Result<(), CudaError> {
        let lock_fn = entry!(self.api, nvEncLockBitstream);
        let unlock_fn = entry!(self.api, nvEncUnlockBitstream);
        let unmap_fn = entry!(self.api, nvEncUnmapInputResource);
        while let Some((bs, mapped)) = self.pending.pop_front() {
            let mut l = zeroed_lock();
            l.version = sys::NV_ENC_LOCK_BITSTREAM_VER;
            l.outputBitstream = self.bitstreams[bs];
            // SAFETY: valid session and one of its bitstream buffers, submitted to an encode.
            let locked = ok("nvEncLockBitstream", unsafe { lock_fn(self.handle, &mut l) });
            if let Err(e) = locked {
                // SAFETY: `mapped` came from nvEncMapInputResource on this session.
                let _ = unsafe { unmap_fn(self.handle, mapped) };
                return Err(e);
            }
            let data = if l.bitstreamBufferPtr.is_null() || l.bitstreamSizeInBytes == 0 {
                &[][..]
            } else {
                // SAFETY: while locked, NVENC guarantees `bitstreamSizeInBytes` readable bytes at
                // `bitstreamBufferPtr`; the slice is dropped before the unlock below.
                unsafe {
                    std::slice::from_raw_parts(l.bitstreamBufferPtr.cast::<u8>(), l.bitstreamSizeInBytes as usize)
                }
            };
            let keyframe = matches!(l.pictureType, sys::NV_ENC_PIC_TYPE::NV_ENC_PIC_TYPE_IDR);
            out(EncodedFrame { data, pts: l.outputTimeStamp, keyframe });
            // SAFETY: the buffer was locked above on this session; the borrowed slice is gone.
            let unlocked = ok("nvEncUnlockBitstream", unsafe { unlock_fn(self.handle, self.bitstreams[bs]) });
            // SAFETY: `mapped` came from nvEncMapInputResource on this session and its picture
            // has been read back.
            let unmapped = ok("nvEncUnmapInputResource", unsafe { unmap_fn(self.handle, mapped) });
            unlocked.and(unmapped)?;
        }
        Ok(())
    }

    /// Changes the bitrate without a new session (nvEncReconfigureEncoder, no reset, no IDR).
    pub fn set_bitrate(&mut self, bitrate: u32) -> Result<(), CudaError> {
        let reconf = entry!(self.api, nvEncReconfigureEncoder);
        self.config.rcParams.averageBitRate = bitrate;
        self.config.rcParams.maxBitRate = bitrate;
        self.config.rcParams.vbvBufferSize = bitrate;
        self.config.rcParams.vbvInitialDelay = bitrate;
        // SAFETY: zeroed NVENC parameter struct, versioned below.
        let mut r: sys::NV_ENC_RECONFIGURE_PARAMS = unsafe { std::mem::zeroed() };
        r.version = sys::NV_ENC_RECONFIGURE_PARAMS_VER;
        r.reInitEncodeParams = *self.init;
        r.reInitEncodeParams.encodeConfig = &mut *self.config;
        // SAFETY: valid session; the parameters and the config they point to outlive the call.
        ok("nvEncReconfigureEncoder", unsafe { reconf(self.handle, &mut r) })?;
        self.cfg.bitrate = bitrate;
        Ok(())
    }

    /// End of a segment: an EOS picture makes NVENC emit everything it holds.
    pub fn flush(&mut self, out: &mut dyn FnMut(EncodedFrame<'_>)) -> Result<(), CudaError> {
        let encode_fn = entry!(self.api, nvEncEncodePicture);
        let mut p = zeroed_pic_params();
        p.version = sys::NV_ENC_PIC_PARAMS_VER;
        p.encodePicFlags = sys::NV_ENC_PIC_FLAGS::NV_ENC_PIC_FLAG_EOS as u32;
        // SAFETY: valid session; an EOS picture carries no buffers.
        ok("nvEncEncodePicture(EOS)", unsafe { encode_fn(self.handle, &mut p) })?;
        self.drain(out)
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // Statuses are ignored here: there is nothing left to do about a failed release, and
        // destroying the session releases whatever is left on the driver's side.
        let f = &self.api.fns;
        for (_, mapped) in self.pending.drain(..) {
            if let Some(unmap) = f.nvEncUnmapInputResource {
                // SAFETY: `mapped` came from nvEncMapInputResource on this live session.
                let _ = unsafe { unmap(self.handle, mapped) };
            }
        }
        for (_, reg) in self.registered.drain(..) {
            if let Some(unreg) = f.nvEncUnregisterResource {
                // SAFETY: `reg` came from nvEncRegisterResource on this live session.
                let _ = unsafe { unreg(self.handle, reg) };
            }
        }
        for bs in self.bitstreams.drain(..) {
            if let Some(destroy) = f.nvEncDestroyBitstreamBuffer {
                // SAFETY: `bs` came from nvEncCreateBitstreamBuffer on this live session.
                let _ = unsafe { destroy(self.handle, bs) };
            }
        }
        if let Some(destroy) = f.nvEncDestroyEncoder {
            // SAFETY: the handle came from nvEncOpenEncodeSessionEx and is destroyed once.
            let _ = unsafe { destroy(self.handle) };
        }
    }
}

#[cfg(test)]
pub(crate) mod fake;

#[cfg(test)]
mod tests;
