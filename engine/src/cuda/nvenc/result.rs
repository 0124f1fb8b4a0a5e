//! NVENC's result layer: one function per entry point zerohop calls, each returning
//! `Result<_, CudaError>` that names the call and its status (a missing entry is
//! `MissingSymbol`). The safe [`Encoder`](super::Encoder) calls only these. Functions that take
//! a session or resource handle are `unsafe`: the handle must be live and belong to the session.
//!
//! Statuses are `u32`, never the SDK's Rust enum: each entry of the table is called through a
//! pointer of the same C signature returning `u32` ([`entry!`]), so a status this SDK does not
//! know (a newer driver's) is a value to report, not undefined behaviour.

use std::ffi::c_void;

use nvidia_video_codec_sdk::sys::nvEncodeAPI as sys;
use sys::{GUID, NVENCSTATUS};

use super::{LIB, NvencApi};
use crate::cuda::error::CudaError;

/// An NVENC session handle.
pub(crate) type Session = *mut c_void;

/// Every status of NVENC API 12.1, to name one (`NVENCSTATUS` is `repr(u32)`).
const STATUSES: [NVENCSTATUS; 27] = {
    use NVENCSTATUS::*;
    [
        NV_ENC_SUCCESS,
        NV_ENC_ERR_NO_ENCODE_DEVICE,
        NV_ENC_ERR_UNSUPPORTED_DEVICE,
        NV_ENC_ERR_INVALID_ENCODERDEVICE,
        NV_ENC_ERR_INVALID_DEVICE,
        NV_ENC_ERR_DEVICE_NOT_EXIST,
        NV_ENC_ERR_INVALID_PTR,
        NV_ENC_ERR_INVALID_EVENT,
        NV_ENC_ERR_INVALID_PARAM,
        NV_ENC_ERR_INVALID_CALL,
        NV_ENC_ERR_OUT_OF_MEMORY,
        NV_ENC_ERR_ENCODER_NOT_INITIALIZED,
        NV_ENC_ERR_UNSUPPORTED_PARAM,
        NV_ENC_ERR_LOCK_BUSY,
        NV_ENC_ERR_NOT_ENOUGH_BUFFER,
        NV_ENC_ERR_INVALID_VERSION,
        NV_ENC_ERR_MAP_FAILED,
        NV_ENC_ERR_NEED_MORE_INPUT,
        NV_ENC_ERR_ENCODER_BUSY,
        NV_ENC_ERR_EVENT_NOT_REGISTERD,
        NV_ENC_ERR_GENERIC,
        NV_ENC_ERR_INCOMPATIBLE_CLIENT_KEY,
        NV_ENC_ERR_UNIMPLEMENTED,
        NV_ENC_ERR_RESOURCE_REGISTER_FAILED,
        NV_ENC_ERR_RESOURCE_NOT_REGISTERED,
        NV_ENC_ERR_RESOURCE_NOT_MAPPED,
        NV_ENC_ERR_NEED_MORE_OUTPUT,
    ]
};

/// The name of an NVENC status, or its number when this SDK does not know it.
pub(crate) fn status_name(status: u32) -> String {
    match STATUSES.iter().find(|s| **s as u32 == status) {
        Some(s) => format!("{s:?}"),
        None => format!("NVENCSTATUS {status} (unknown to NVENC API 12.1)"),
    }
}

fn is(status: u32, known: NVENCSTATUS) -> bool {
    status == known as u32
}

fn status_error(api: &'static str, status: u32) -> CudaError {
    CudaError::Nvenc { api, status: status_name(status) }
}

fn ok(api: &'static str, status: u32) -> Result<(), CudaError> {
    if is(status, NVENCSTATUS::NV_ENC_SUCCESS) { Ok(()) } else { Err(status_error(api, status)) }
}

/// Takes an entry of the function table (or says which one the driver did not fill in) as a
/// pointer of the same C signature returning `u32`.
macro_rules! entry {
    ($api:expr, $name:ident, fn($($arg:ty),*)) => {{
        let f = $api.fns.$name.ok_or(CudaError::MissingSymbol { lib: LIB, symbol: stringify!($name) })?;
        // SAFETY: the same C function; its return type `NVENCSTATUS` is a `repr(u32)` enum, so
        // `u32` has the same ABI (the source type is spelled out, so the compiler checks that the
        // arguments are the entry's own).
        unsafe {
            std::mem::transmute::<unsafe extern "C" fn($($arg),*) -> NVENCSTATUS, unsafe extern "C" fn($($arg),*) -> u32>(f)
        }
    }};
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

pub(crate) fn zeroed_config() -> sys::NV_ENC_CONFIG {
    // SAFETY: `frameFieldMode` is NV_ENC_CONFIG's only field with no zero value.
    unsafe { zeroed_fix(|c: *mut sys::NV_ENC_CONFIG| std::ptr::addr_of_mut!((*c).frameFieldMode).write(PROGRESSIVE)) }
}

pub(crate) fn zeroed_pic_params() -> sys::NV_ENC_PIC_PARAMS {
    // SAFETY: `pictureStruct` is NV_ENC_PIC_PARAMS's only field with no zero value.
    let mut p =
        unsafe { zeroed_fix(|p: *mut sys::NV_ENC_PIC_PARAMS| std::ptr::addr_of_mut!((*p).pictureStruct).write(FRAME)) };
    p.version = sys::NV_ENC_PIC_PARAMS_VER;
    p
}

pub(crate) fn zeroed_init_params() -> sys::NV_ENC_INITIALIZE_PARAMS {
    // SAFETY: NV_ENC_INITIALIZE_PARAMS's enums (tuning info, buffer format) have zero values;
    // all-zero is NVENC's documented initial state.
    unsafe { std::mem::zeroed() }
}

/// `nvEncOpenEncodeSessionEx` on a CUDA context. Over the session limit: `SessionLimit`; no
/// encoder on the GPU: `NoEncoder`.
///
/// # Safety
/// `cuda_context` is a live `CUcontext`.
pub(crate) unsafe fn open_session(
    api: &NvencApi,
    ordinal: usize,
    cuda_context: *mut c_void,
) -> Result<Session, CudaError> {
    let open_fn =
        entry!(api, nvEncOpenEncodeSessionEx, fn(*mut sys::NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS, *mut *mut c_void));
    // SAFETY: all-zero is the documented initial state of NVENC parameter structs (reserved
    // fields must be zero); the versions are set below.
    let mut params: sys::NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS = unsafe { std::mem::zeroed() };
    params.version = sys::NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS_VER;
    params.deviceType = sys::NV_ENC_DEVICE_TYPE::NV_ENC_DEVICE_TYPE_CUDA;
    params.device = cuda_context;
    params.apiVersion = sys::NVENCAPI_VERSION;
    let mut handle = std::ptr::null_mut();
    // SAFETY: `params` and `handle` are valid for the call; the context is live (contract).
    let st = unsafe { open_fn(&mut params, &mut handle) };
    if is(st, NVENCSTATUS::NV_ENC_SUCCESS) {
        Ok(handle)
    } else if is(st, NVENCSTATUS::NV_ENC_ERR_OUT_OF_MEMORY) || is(st, NVENCSTATUS::NV_ENC_ERR_INCOMPATIBLE_CLIENT_KEY) {
        // Consumer GPUs answer a session over their limit with OUT_OF_MEMORY (or, on some
        // drivers, INCOMPATIBLE_CLIENT_KEY).
        Err(CudaError::SessionLimit { ordinal, api: "nvEncOpenEncodeSessionEx", status: status_name(st) })
    } else if is(st, NVENCSTATUS::NV_ENC_ERR_NO_ENCODE_DEVICE) || is(st, NVENCSTATUS::NV_ENC_ERR_UNSUPPORTED_DEVICE) {
        // The only two statuses that mean "this GPU has no NVENC" (nvEncodeAPI.h: "no encode
        // capable devices were detected" / "devices pass by the client is not supported").
        Err(CudaError::NoEncoder { ordinal, why: format!("nvEncOpenEncodeSessionEx: {}", status_name(st)) })
    } else {
        Err(status_error("nvEncOpenEncodeSessionEx", st))
    }
}

/// `nvEncGetEncodePresetConfigEx` for H.264: the preset's config.
///
/// # Safety
/// `enc` is a live session.
pub(crate) unsafe fn preset_config(
    api: &NvencApi,
    enc: Session,
    preset: GUID,
    tuning: sys::NV_ENC_TUNING_INFO,
) -> Result<sys::NV_ENC_CONFIG, CudaError> {
    let preset_fn = entry!(
        api,
        nvEncGetEncodePresetConfigEx,
        fn(Session, GUID, GUID, sys::NV_ENC_TUNING_INFO, *mut sys::NV_ENC_PRESET_CONFIG)
    );
    // SAFETY: `presetCfg.frameFieldMode` is NV_ENC_PRESET_CONFIG's only field with no zero value.
    let mut p: sys::NV_ENC_PRESET_CONFIG = unsafe {
        zeroed_fix(|p: *mut sys::NV_ENC_PRESET_CONFIG| {
            std::ptr::addr_of_mut!((*p).presetCfg.frameFieldMode).write(PROGRESSIVE)
        })
    };
    p.version = sys::NV_ENC_PRESET_CONFIG_VER;
    p.presetCfg.version = sys::NV_ENC_CONFIG_VER;
    // SAFETY: live session (contract) and a versioned out-struct for the call's duration.
    ok("nvEncGetEncodePresetConfigEx", unsafe { preset_fn(enc, sys::NV_ENC_CODEC_H264_GUID, preset, tuning, &mut p) })?;
    Ok(p.presetCfg)
}

/// `nvEncSetIOCudaStreams`: NVENC reads its input after, and writes its output on, the CUstream
/// at each pointer.
///
/// # Safety
/// `enc` is a live session; `streams` stays at its address as long as the session.
pub(crate) unsafe fn set_io_cuda_streams(
    api: &NvencApi,
    enc: Session,
    streams: *mut [*mut c_void; 2],
) -> Result<(), CudaError> {
    let set = entry!(api, nvEncSetIOCudaStreams, fn(Session, sys::NV_ENC_CUSTREAM_PTR, sys::NV_ENC_CUSTREAM_PTR));
    let first = streams.cast::<*mut c_void>();
    // SAFETY: both pointers address the caller's live two-element array (contract).
    ok("nvEncSetIOCudaStreams", unsafe { set(enc, first.cast(), first.add(1).cast()) })
}

/// `nvEncRegisterResource` of an NV12 CUDA device buffer.
///
/// # Safety
/// `enc` is a live session; `device_ptr` addresses an allocation of at least
/// `pitch * (height + height / 2)` bytes in the session's context that stays allocated until
/// the registration is unregistered.
pub(crate) unsafe fn register_resource(
    api: &NvencApi,
    enc: Session,
    device_ptr: u64,
    (width, height, pitch): (u32, u32, u32),
) -> Result<sys::NV_ENC_REGISTERED_PTR, CudaError> {
    let reg_fn = entry!(api, nvEncRegisterResource, fn(Session, *mut sys::NV_ENC_REGISTER_RESOURCE));
    // SAFETY: zeroed NVENC parameter struct (its enums have zero values), versioned below.
    let mut r: sys::NV_ENC_REGISTER_RESOURCE = unsafe { std::mem::zeroed() };
    r.version = sys::NV_ENC_REGISTER_RESOURCE_VER;
    r.resourceType = sys::NV_ENC_INPUT_RESOURCE_TYPE::NV_ENC_INPUT_RESOURCE_TYPE_CUDADEVICEPTR;
    r.width = width;
    r.height = height;
    r.pitch = pitch;
    r.resourceToRegister = device_ptr as *mut c_void;
    r.bufferFormat = sys::NV_ENC_BUFFER_FORMAT::NV_ENC_BUFFER_FORMAT_NV12;
    r.bufferUsage = sys::NV_ENC_BUFFER_USAGE::NV_ENC_INPUT_IMAGE;
    // SAFETY: live session and a valid parameter struct; the buffer outlives the registration
    // (contract).
    ok("nvEncRegisterResource", unsafe { reg_fn(enc, &mut r) })?;
    Ok(r.registeredResource)
}

/// `nvEncCreateBitstreamBuffer`.
///
/// # Safety
/// `enc` is a live, initialised session.
pub(crate) unsafe fn create_bitstream_buffer(
    api: &NvencApi,
    enc: Session,
) -> Result<sys::NV_ENC_OUTPUT_PTR, CudaError> {
    let create = entry!(api, nvEncCreateBitstreamBuffer, fn(Session, *mut sys::NV_ENC_CREATE_BITSTREAM_BUFFER));
    // SAFETY: zeroed NVENC parameter struct, versioned below.
    let mut b: sys::NV_ENC_CREATE_BITSTREAM_BUFFER = unsafe { std::mem::zeroed() };
    b.version = sys::NV_ENC_CREATE_BITSTREAM_BUFFER_VER;
    // SAFETY: live session and a valid parameter struct for the call.
    ok("nvEncCreateBitstreamBuffer", unsafe { create(enc, &mut b) })?;
    Ok(b.bitstreamBuffer)
}

/// `nvEncMapInputResource`: the mapped input and its buffer format.
///
/// # Safety
/// `reg` is a live registration of `enc`, not mapped.
pub(crate) unsafe fn map_input_resource(
    api: &NvencApi,
    enc: Session,
    reg: sys::NV_ENC_REGISTERED_PTR,
) -> Result<(sys::NV_ENC_INPUT_PTR, sys::NV_ENC_BUFFER_FORMAT), CudaError> {
    let map_fn = entry!(api, nvEncMapInputResource, fn(Session, *mut sys::NV_ENC_MAP_INPUT_RESOURCE));
    // SAFETY: zeroed NVENC parameter struct (its enum has a zero value), versioned below.
    let mut m: sys::NV_ENC_MAP_INPUT_RESOURCE = unsafe { std::mem::zeroed() };
    m.version = sys::NV_ENC_MAP_INPUT_RESOURCE_VER;
    m.registeredResource = reg;
    // SAFETY: live session and registration (contract).
    ok("nvEncMapInputResource", unsafe { map_fn(enc, &mut m) })?;
    Ok((m.mappedResource, m.mappedBufferFmt))
}

/// What `nvEncEncodePicture` said of a picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Submitted {
    /// Its output (and that of any held back before it) can be read back.
    Ready,
    /// Held back (B-frames, lookahead): its output comes with a later picture.
    NeedMoreInput,
}

/// `nvEncEncodePicture` of one picture.
///
/// # Safety
/// `enc` is a live session; `p.inputBuffer` is one of its mappings and `p.outputBitstream` one
/// of its bitstream buffers, both kept until read back.
pub(crate) unsafe fn encode_picture(
    api: &NvencApi,
    enc: Session,
    p: &mut sys::NV_ENC_PIC_PARAMS,
) -> Result<Submitted, CudaError> {
    let encode_fn = entry!(api, nvEncEncodePicture, fn(Session, *mut sys::NV_ENC_PIC_PARAMS));
    // SAFETY: live session and buffers (contract).
    let st = unsafe { encode_fn(enc, p) };
    if is(st, NVENCSTATUS::NV_ENC_SUCCESS) {
        Ok(Submitted::Ready)
    } else if is(st, NVENCSTATUS::NV_ENC_ERR_NEED_MORE_INPUT) {
        Ok(Submitted::NeedMoreInput)
    } else {
        Err(status_error("nvEncEncodePicture", st))
    }
}

/// `nvEncEncodePicture` with the EOS flag: NVENC emits every picture it holds.
///
/// # Safety
/// `enc` is a live session.
pub(crate) unsafe fn encode_eos(api: &NvencApi, enc: Session) -> Result<(), CudaError> {
    let encode_fn = entry!(api, nvEncEncodePicture, fn(Session, *mut sys::NV_ENC_PIC_PARAMS));
    let mut p = zeroed_pic_params();
    p.encodePicFlags = sys::NV_ENC_PIC_FLAGS::NV_ENC_PIC_FLAG_EOS as u32;
    // SAFETY: live session; an EOS picture carries no buffers.
    ok("nvEncEncodePicture(EOS)", unsafe { encode_fn(enc, &mut p) })
}

/// `nvEncLockBitstream`: the locked buffer's description (data pointer and size, timestamp,
/// picture type), valid until [`unlock_bitstream`].
///
/// # Safety
/// `bs` is a bitstream buffer of `enc` submitted to an encode and not locked.
pub(crate) unsafe fn lock_bitstream(
    api: &NvencApi,
    enc: Session,
    bs: sys::NV_ENC_OUTPUT_PTR,
) -> Result<sys::NV_ENC_LOCK_BITSTREAM, CudaError> {
    let lock_fn = entry!(api, nvEncLockBitstream, fn(Session, *mut sys::NV_ENC_LOCK_BITSTREAM));
    // SAFETY: `pictureStruct` is NV_ENC_LOCK_BITSTREAM's only field with no zero value.
    let mut l = unsafe {
        zeroed_fix(|p: *mut sys::NV_ENC_LOCK_BITSTREAM| std::ptr::addr_of_mut!((*p).pictureStruct).write(FRAME))
    };
    l.version = sys::NV_ENC_LOCK_BITSTREAM_VER;
    l.outputBitstream = bs;
    // SAFETY: live session and bitstream buffer (contract).
    ok("nvEncLockBitstream", unsafe { lock_fn(enc, &mut l) })?;
    Ok(l)
}

/// The result-layer functions of NVENC's commonest shape: an entry point that takes the session
/// and one argument and answers only a status. Each keeps its own documentation and `# Safety`.
macro_rules! session_fns {
    ($($(#[$doc:meta])* fn $name:ident($arg:ident: $ty:ty) => $entry:ident($cty:ty);)*) => {$(
        $(#[$doc])*
        pub(crate) unsafe fn $name(api: &NvencApi, enc: Session, $arg: $ty) -> Result<(), CudaError> {
            let f = entry!(api, $entry, fn(Session, $cty));
            // SAFETY: a live session and an argument valid for the call, as this function's
            // `# Safety` requires of its caller.
            ok(stringify!($entry), unsafe { f(enc, $arg) })
        }
    )*};
}

session_fns! {
    /// `nvEncInitializeEncoder`.
    ///
    /// # Safety
    /// `enc` is a live session; `init.encodeConfig` points to a config that lives as long as the
    /// session (NVENC keeps the pointer).
    fn initialize(init: &mut sys::NV_ENC_INITIALIZE_PARAMS)
        => nvEncInitializeEncoder(*mut sys::NV_ENC_INITIALIZE_PARAMS);

    /// `nvEncReconfigureEncoder`.
    ///
    /// # Safety
    /// `enc` is a live session; the config `r.reInitEncodeParams.encodeConfig` points to outlives
    /// the session.
    fn reconfigure(r: &mut sys::NV_ENC_RECONFIGURE_PARAMS)
        => nvEncReconfigureEncoder(*mut sys::NV_ENC_RECONFIGURE_PARAMS);

    /// `nvEncUnregisterResource` (the resource must not be mapped).
    ///
    /// # Safety
    /// `reg` came from [`register_resource`] on `enc` and is unregistered once.
    fn unregister_resource(reg: sys::NV_ENC_REGISTERED_PTR) => nvEncUnregisterResource(sys::NV_ENC_REGISTERED_PTR);

    /// `nvEncDestroyBitstreamBuffer` (the buffer must not be locked).
    ///
    /// # Safety
    /// `bs` came from [`create_bitstream_buffer`] on `enc` and is destroyed once.
    fn destroy_bitstream_buffer(bs: sys::NV_ENC_OUTPUT_PTR) => nvEncDestroyBitstreamBuffer(sys::NV_ENC_OUTPUT_PTR);

    /// `nvEncUnmapInputResource`.
    ///
    /// # Safety
    /// `mapped` came from [`map_input_resource`] on `enc` and is unmapped once, after NVENC is
    /// done with its picture (read back, or never to be).
    fn unmap_input_resource(mapped: sys::NV_ENC_INPUT_PTR) => nvEncUnmapInputResource(sys::NV_ENC_INPUT_PTR);

    /// `nvEncUnlockBitstream`.
    ///
    /// # Safety
    /// `bs` was locked by [`lock_bitstream`] on `enc`; nothing borrows its data any more.
    fn unlock_bitstream(bs: sys::NV_ENC_OUTPUT_PTR) => nvEncUnlockBitstream(sys::NV_ENC_OUTPUT_PTR);
}

/// `nvEncDestroyEncoder`. NVIDIA's order (NvEncoder::DestroyEncoder): every input unmapped and
/// unregistered and every bitstream buffer destroyed first.
///
/// # Safety
/// `enc` is a live session, destroyed once.
pub(crate) unsafe fn destroy_encoder(api: &NvencApi, enc: Session) -> Result<(), CudaError> {
    let f = entry!(api, nvEncDestroyEncoder, fn(Session));
    // SAFETY: a live session (contract).
    ok("nvEncDestroyEncoder", unsafe { f(enc) })
}
