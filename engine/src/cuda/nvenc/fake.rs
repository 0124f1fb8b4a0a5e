//! TEST DOUBLE of the NVENC driver: a function table whose entries record each call (name and
//! the arguments that matter) in a per-thread log and return scripted statuses. It stands in for
//! `libnvidia-encode.so`, the one boundary that cannot run on these machines; everything above it
//! (the `Encoder`'s call order, bookkeeping and error paths) is the real code.
//!
//! Behaviour: handles are small fake addresses; a locked bitstream holds an Annex-B access unit
//! `00 00 00 01 65|41 <frameIdx>` (IDR or not) with the input's timestamp; with `hold_back(n)`
//! the first `n` pictures answer NEED_MORE_INPUT as a B-frame encoder would.
//!
//! Strictness: it tracks every session's registrations, mappings and bitstream buffers and
//! refuses what NVIDIA's API forbids (the order of NvEncoder::DestroyEncoder and
//! NvEncoderCuda::ReleaseInputBuffers): a call on a session that is not open; registering a
//! buffer twice in a session; mapping a resource not registered or already mapped; unmapping
//! what is not mapped; unregistering a resource still mapped; encoding from a mapping or into a
//! bitstream buffer the session does not have (or that is locked); locking a buffer not
//! submitted or already locked, unlocking one not locked, destroying one that is locked; and
//! destroying a session that still has registrations, mappings or bitstream buffers (the session
//! then stays open, so a leak shows in `live`).

use std::any::Any;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::c_void;
use std::sync::Arc;

use nvidia_video_codec_sdk::sys::nvEncodeAPI as sys;
use sys::NVENCSTATUS;

use crate::cuda::context::double::{self as cuda, Alloc};
use crate::cuda::fake_calls::Ledger;

/// This double's calls on this thread.
const CALLS: Ledger = Ledger("nvenc");

/// NVENC statuses as the `u32`s the double's entry points return (a status may also be one this
/// SDK does not know: the result layer must cope).
#[allow(dead_code)]
mod st {
    use super::NVENCSTATUS as S;
    pub const NV_ENC_SUCCESS: u32 = S::NV_ENC_SUCCESS as u32;
    pub const NV_ENC_ERR_INVALID_ENCODERDEVICE: u32 = S::NV_ENC_ERR_INVALID_ENCODERDEVICE as u32;
    pub const NV_ENC_ERR_INVALID_PTR: u32 = S::NV_ENC_ERR_INVALID_PTR as u32;
    pub const NV_ENC_ERR_INVALID_PARAM: u32 = S::NV_ENC_ERR_INVALID_PARAM as u32;
    pub const NV_ENC_ERR_INVALID_CALL: u32 = S::NV_ENC_ERR_INVALID_CALL as u32;
    pub const NV_ENC_ERR_INVALID_VERSION: u32 = S::NV_ENC_ERR_INVALID_VERSION as u32;
    pub const NV_ENC_ERR_LOCK_BUSY: u32 = S::NV_ENC_ERR_LOCK_BUSY as u32;
    pub const NV_ENC_ERR_NEED_MORE_INPUT: u32 = S::NV_ENC_ERR_NEED_MORE_INPUT as u32;
    pub const NV_ENC_ERR_RESOURCE_REGISTER_FAILED: u32 = S::NV_ENC_ERR_RESOURCE_REGISTER_FAILED as u32;
    pub const NV_ENC_ERR_RESOURCE_NOT_REGISTERED: u32 = S::NV_ENC_ERR_RESOURCE_NOT_REGISTERED as u32;
    pub const NV_ENC_ERR_RESOURCE_NOT_MAPPED: u32 = S::NV_ENC_ERR_RESOURCE_NOT_MAPPED as u32;
}

#[derive(Default)]
struct State {
    hold_back: u32,
    next_handle: usize,
    /// bitstream handle -> (pts, idr, frameIdx)
    submitted: HashMap<usize, (u64, bool, u32)>,
    queued: Vec<usize>,
    locked: Vec<u8>,
    sessions: HashMap<usize, Session>,
}

/// What one open session has.
#[derive(Default)]
struct Session {
    /// The CUDA context it was opened on.
    ctx: usize,
    /// mapping handle -> the bitstream buffer of its picture, while the encoder holds the
    /// picture (submitted; not yet locked, no EOS since).
    held: HashMap<usize, usize>,
    /// registration handle -> registered device address
    registered: HashMap<usize, usize>,
    /// mapping handle -> registration handle
    mapped: HashMap<usize, usize>,
    bitstreams: HashSet<usize>,
    locked: HashSet<usize>,
}

/// Runs `f` on open session `e`'s bookkeeping; a session that is not open is refused, and so is
/// a call made while the session's CUDA context is not current on the calling thread (FFmpeg's
/// nvenc.c pushes the session's context around every NVENC call: nvenc_push_context /
/// nvenc_pop_context, `ff_nvenc_encode_close` included; NvDecoder/NvEncoderCuda do the same
/// around every CUDA call on the encoder's buffers).
fn on_session(e: *mut c_void, f: impl FnOnce(&mut Session) -> u32) -> u32 {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let s = &mut *s;
        match s.sessions.get_mut(&(e as usize)) {
            Some(session) if session.ctx != cuda::current() => {
                CALLS.note(format!("refused: context {:#x} not current", session.ctx));
                st::NV_ENC_ERR_INVALID_CALL
            }
            Some(session) => f(session),
            None => st::NV_ENC_ERR_INVALID_ENCODERDEVICE,
        }
    })
}

/// A call on open session `e`: recorded (a scripted failure answers first), then `f` on the
/// session's bookkeeping, as [`on_session`].
fn session_call(api: &'static str, detail: String, e: *mut c_void, f: impl FnOnce(&mut Session) -> u32) -> u32 {
    match CALLS.record(api, detail) {
        st::NV_ENC_SUCCESS => on_session(e, f),
        failed => failed,
    }
}

/// `st`, with one more (`d` = 1) or one fewer (-1) resource of `kind` alive when it succeeded.
fn counted(kind: &'static str, d: i64, st: u32) -> u32 {
    if st == st::NV_ENC_SUCCESS {
        CALLS.count(kind, d);
    }
    st
}

/// A device buffer double for the encoder's inputs: a block of the memory double (allocated as
/// `alloc` says, in context 0xC0), its size, and an allocation whose strong count shows who still
/// holds it.
#[derive(Debug)]
pub struct FakeInput {
    pub addr: u64,
    pub width: u32,
    pub height: u32,
    pub pitch: usize,
    pub allocation: Arc<()>,
}

impl FakeInput {
    /// An input allocated as `cuMemAllocPitch` would with this pitch.
    pub fn new(width: u32, height: u32, pitch: usize) -> FakeInput {
        FakeInput::allocated(width, height, pitch, Alloc::Pitched { pitch })
    }

    /// An input allocated as `alloc` says.
    pub fn allocated(width: u32, height: u32, pitch: usize, alloc: Alloc) -> FakeInput {
        let addr = cuda::allocate(0xC0, pitch * (height as usize + height.div_ceil(2) as usize), alloc);
        FakeInput { addr, width, height, pitch, allocation: Arc::new(()) }
    }
}

// SAFETY: a double: its address is never dereferenced (only the NVENC double sees it), and the
// "allocation" lives as long as its clones.
unsafe impl super::InputBuffer for FakeInput {
    fn dims(&self) -> (u32, u32, usize) {
        (self.width, self.height, self.pitch)
    }
    fn allocation(&self) -> Arc<dyn Any + Send + Sync> {
        self.allocation.clone()
    }
    fn made_on(&self, _: &super::DeviceContext) -> bool {
        true
    }
    unsafe fn device_ptr(&self) -> u64 {
        self.addr
    }
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Clears the log and the script for this thread.
pub fn reset() {
    STATE.with(|s| *s.borrow_mut() = State::default());
    CALLS.reset();
}

/// The calls made so far on this thread.
pub fn log() -> Vec<String> {
    CALLS.log()
}

/// Makes the `nth` (1-based) call of `api` fail with `status`.
pub fn fail(api: &'static str, nth: u32, status: NVENCSTATUS) {
    fail_raw(api, nth, status as u32);
}

/// As [`fail`], with any status number (one a newer driver might return).
pub fn fail_raw(api: &'static str, nth: u32, status: u32) {
    CALLS.fail(api, nth, status);
}

/// The first `n` pictures produce no output yet (as with B-frames).
pub fn hold_back(n: u32) {
    STATE.with(|s| s.borrow_mut().hold_back = n);
}

/// Resources of a kind currently alive (created minus released): "session", "registration",
/// "bitstream", "mapping".
pub fn live(kind: &'static str) -> i64 {
    CALLS.live(kind)
}

fn handle() -> *mut c_void {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.next_handle += 1;
        (0x1000 + 0x10 * s.next_handle) as *mut c_void
    })
}

unsafe extern "C" fn open(p: *mut sys::NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS, enc: *mut *mut c_void) -> u32 {
    // SAFETY: the caller passes valid pointers (that is what the double checks by using them).
    let p = unsafe { &*p };
    if p.device.is_null() {
        return st::NV_ENC_ERR_INVALID_PTR;
    }
    let st = CALLS.record(
        "nvEncOpenEncodeSessionEx",
        format!("cuda={}", p.deviceType == sys::NV_ENC_DEVICE_TYPE::NV_ENC_DEVICE_TYPE_CUDA),
    );
    if st == st::NV_ENC_SUCCESS {
        // SAFETY: valid out-pointer from the caller.
        let h = handle();
        // SAFETY: valid out-pointer from the caller.
        unsafe { *enc = h };
        let session = Session { ctx: p.device as usize, ..Session::default() };
        STATE.with(|s| s.borrow_mut().sessions.insert(h as usize, session));
        CALLS.count("session", 1);
    }
    st
}

unsafe extern "C" fn preset(
    _e: *mut c_void,
    _codec: sys::GUID,
    _preset: sys::GUID,
    tuning: sys::NV_ENC_TUNING_INFO,
    cfg: *mut sys::NV_ENC_PRESET_CONFIG,
) -> u32 {
    let st = CALLS.record("nvEncGetEncodePresetConfigEx", format!("{tuning:?}"));
    // SAFETY: valid out-struct from the caller; the version must have been set.
    let cfg = unsafe { &mut *cfg };
    if cfg.version != sys::NV_ENC_PRESET_CONFIG_VER {
        return st::NV_ENC_ERR_INVALID_VERSION;
    }
    cfg.presetCfg.gopLength = 250;
    st
}

unsafe extern "C" fn init(_e: *mut c_void, p: *mut sys::NV_ENC_INITIALIZE_PARAMS) -> u32 {
    // SAFETY: valid parameters from the caller, with a config pointer.
    let p = unsafe { &*p };
    // SAFETY: as above.
    let c = unsafe { &*p.encodeConfig };
    CALLS.record(
        "nvEncInitializeEncoder",
        format!(
            "{}x{} {}/{} cbr={} gop={}",
            p.encodeWidth,
            p.encodeHeight,
            p.frameRateNum,
            p.frameRateDen,
            c.rcParams.averageBitRate,
            if c.gopLength == sys::NVENC_INFINITE_GOPLENGTH { "inf".to_string() } else { c.gopLength.to_string() }
        ),
    )
}

unsafe extern "C" fn streams(_e: *mut c_void, i: sys::NV_ENC_CUSTREAM_PTR, o: sys::NV_ENC_CUSTREAM_PTR) -> u32 {
    // SAFETY: NVENC reads a CUstream from each pointer; so does the double.
    let (i, o) = unsafe { (*(i as *const usize), *(o as *const usize)) };
    CALLS.record("nvEncSetIOCudaStreams", format!("{i:#x},{o:#x}"))
}

unsafe extern "C" fn register(e: *mut c_void, r: *mut sys::NV_ENC_REGISTER_RESOURCE) -> u32 {
    // SAFETY: valid parameters from the caller.
    let r = unsafe { &mut *r };
    let addr = r.resourceToRegister as usize;
    let h = handle();
    let (width, height, pitch) = (r.width as usize, r.height as usize, r.pitch as usize);
    let st = session_call("nvEncRegisterResource", format!("pitch {}", r.pitch), e, |s| {
        if s.registered.values().any(|&a| a == addr) {
            return st::NV_ENC_ERR_RESOURCE_REGISTER_FAILED; // registered twice
        }
        // What NVENC can register, as the memory double recorded it.
        let Some((ctx, alloc, bytes)) = cuda::block(addr as u64) else {
            return st::NV_ENC_ERR_RESOURCE_REGISTER_FAILED; // not the start of a device allocation
        };
        match alloc {
            // Stream-ordered (pool) memory cannot be registered: NV_ENC_ERR_RESOURCE_REGISTER_FAILED.
            // NVIDIA's sample allocates NVENC inputs with cuMemAllocPitch
            // (NvEncoderCuda::AllocateInputBuffers), FFmpeg's hwcontext_cuda with cuMemAlloc, and
            // GStreamer's nvcodec moved its CUDA allocator off stream-ordered pools for NVENC
            // (as this project's review of gst-plugins-bad/sys/nvcodec found, issue 14).
            Alloc::StreamOrdered => return st::NV_ENC_ERR_RESOURCE_REGISTER_FAILED,
            // nvEncodeAPI.h, NV_ENC_REGISTER_RESOURCE::pitch: "set this to the pitch as obtained
            // from cuMemAllocPitch(), or to the width in bytes (if this resource was created by
            // using cuMemAlloc()). This value must be a multiple of 4."
            Alloc::Pitched { pitch: allocated } if allocated != pitch => return st::NV_ENC_ERR_INVALID_PARAM,
            _ if !pitch.is_multiple_of(4) || pitch < width => return st::NV_ENC_ERR_INVALID_PARAM,
            _ => {}
        }
        if ctx != s.ctx {
            return st::NV_ENC_ERR_RESOURCE_REGISTER_FAILED; // memory of another CUDA context
        }
        if bytes < pitch * (height + height.div_ceil(2)) {
            return st::NV_ENC_ERR_INVALID_PARAM; // NV12 of this size does not fit
        }
        s.registered.insert(h as usize, addr);
        r.registeredResource = h;
        st::NV_ENC_SUCCESS
    });
    counted("registration", 1, st)
}

unsafe extern "C" fn unregister(e: *mut c_void, r: sys::NV_ENC_REGISTERED_PTR) -> u32 {
    let st = session_call("nvEncUnregisterResource", String::new(), e, |s| {
        if !s.registered.contains_key(&(r as usize)) {
            st::NV_ENC_ERR_RESOURCE_NOT_REGISTERED
        } else if s.mapped.values().any(|&reg| reg == r as usize) {
            st::NV_ENC_ERR_INVALID_CALL // unmap first
        } else {
            s.registered.remove(&(r as usize));
            st::NV_ENC_SUCCESS
        }
    });
    counted("registration", -1, st)
}

unsafe extern "C" fn create_bitstream(e: *mut c_void, b: *mut sys::NV_ENC_CREATE_BITSTREAM_BUFFER) -> u32 {
    let h = handle();
    let st = session_call("nvEncCreateBitstreamBuffer", String::new(), e, |s| {
        s.bitstreams.insert(h as usize);
        // SAFETY: valid out-struct from the caller.
        unsafe { (*b).bitstreamBuffer = h };
        st::NV_ENC_SUCCESS
    });
    counted("bitstream", 1, st)
}

unsafe extern "C" fn destroy_bitstream(e: *mut c_void, b: sys::NV_ENC_OUTPUT_PTR) -> u32 {
    let b = b as usize;
    let st = session_call("nvEncDestroyBitstreamBuffer", String::new(), e, |s| {
        if s.locked.contains(&b) {
            return st::NV_ENC_ERR_LOCK_BUSY; // unlock first
        }
        if !s.bitstreams.remove(&b) {
            return st::NV_ENC_ERR_INVALID_PARAM; // not a buffer of this session
        }
        st::NV_ENC_SUCCESS
    });
    counted("bitstream", -1, st)
}

unsafe extern "C" fn map(e: *mut c_void, m: *mut sys::NV_ENC_MAP_INPUT_RESOURCE) -> u32 {
    let h = handle();
    // SAFETY: valid parameters from the caller.
    let m = unsafe { &mut *m };
    let reg = m.registeredResource as usize;
    let st = session_call("nvEncMapInputResource", String::new(), e, |s| {
        if !s.registered.contains_key(&reg) {
            return st::NV_ENC_ERR_RESOURCE_NOT_REGISTERED;
        }
        if s.mapped.values().any(|&r| r == reg) {
            return st::NV_ENC_ERR_INVALID_CALL; // mapped twice
        }
        s.mapped.insert(h as usize, reg);
        m.mappedResource = h;
        m.mappedBufferFmt = sys::NV_ENC_BUFFER_FORMAT::NV_ENC_BUFFER_FORMAT_NV12;
        st::NV_ENC_SUCCESS
    });
    counted("mapping", 1, st)
}

unsafe extern "C" fn unmap(e: *mut c_void, m: sys::NV_ENC_INPUT_PTR) -> u32 {
    let st = session_call("nvEncUnmapInputResource", String::new(), e, |s| {
        if s.held.contains_key(&(m as usize)) {
            // The encoder still holds its picture: NvEncoder unmaps an input only after locking
            // its picture's bitstream (GetEncodedPacket), FFmpeg only after that or after the EOS
            // picture of ff_nvenc_encode_close.
            st::NV_ENC_ERR_INVALID_CALL
        } else if s.mapped.remove(&(m as usize)).is_some() {
            st::NV_ENC_SUCCESS
        } else {
            st::NV_ENC_ERR_RESOURCE_NOT_MAPPED
        }
    });
    counted("mapping", -1, st)
}

unsafe extern "C" fn encode(e: *mut c_void, p: *mut sys::NV_ENC_PIC_PARAMS) -> u32 {
    // SAFETY: valid parameters from the caller.
    let p = unsafe { &*p };
    let eos = p.encodePicFlags & sys::NV_ENC_PIC_FLAGS::NV_ENC_PIC_FLAG_EOS as u32 != 0;
    let idr = p.encodePicFlags & sys::NV_ENC_PIC_FLAGS::NV_ENC_PIC_FLAG_FORCEIDR as u32 != 0;
    let detail = if eos {
        "EOS".to_string()
    } else {
        format!("#{} pts {}{}", p.frameIdx, p.inputTimeStamp, if idr { " IDR" } else { "" })
    };
    let (input, output) = (p.inputBuffer as usize, p.outputBitstream as usize);
    let st = session_call("nvEncEncodePicture", detail, e, |s| {
        if eos {
            s.held.clear(); // EOS: the encoder emits (and lets go of) everything it holds
            st::NV_ENC_SUCCESS
        } else if !s.mapped.contains_key(&input) || s.held.contains_key(&input) {
            st::NV_ENC_ERR_RESOURCE_NOT_MAPPED
        } else if !s.bitstreams.contains(&output) || s.locked.contains(&output) {
            st::NV_ENC_ERR_INVALID_PARAM
        } else {
            st::NV_ENC_SUCCESS
        }
    });
    if st != st::NV_ENC_SUCCESS || eos {
        return st;
    }
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if let Some(session) = s.sessions.get_mut(&(e as usize)) {
            session.held.insert(input, output);
        }
        s.submitted.insert(p.outputBitstream as usize, (p.inputTimeStamp, idr, p.frameIdx));
        s.queued.push(p.outputBitstream as usize);
        if s.hold_back > 0 {
            s.hold_back -= 1;
            st::NV_ENC_ERR_NEED_MORE_INPUT
        } else {
            st::NV_ENC_SUCCESS
        }
    })
}

unsafe extern "C" fn lock(e: *mut c_void, l: *mut sys::NV_ENC_LOCK_BITSTREAM) -> u32 {
    // SAFETY: valid parameters from the caller.
    let l = unsafe { &mut *l };
    let buffer = l.outputBitstream as usize;
    // Locked (or failed to lock: the picture is lost either way): its input is the client's again.
    STATE.with(|s| {
        if let Some(session) = s.borrow_mut().sessions.get_mut(&(e as usize)) {
            session.held.retain(|_, b| *b != buffer);
        }
    });
    let st = session_call("nvEncLockBitstream", String::new(), e, |s| {
        if !s.bitstreams.contains(&buffer) || !s.locked.insert(buffer) {
            st::NV_ENC_ERR_LOCK_BUSY
        } else {
            st::NV_ENC_SUCCESS
        }
    });
    if st != st::NV_ENC_SUCCESS {
        return st;
    }
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let Some((pts, idr, idx)) = s.submitted.remove(&(l.outputBitstream as usize)) else {
            if let Some(session) = s.sessions.get_mut(&(e as usize)) {
                session.locked.remove(&buffer);
            }
            return st::NV_ENC_ERR_INVALID_PARAM; // locking a buffer never submitted
        };
        s.queued.retain(|&b| b != l.outputBitstream as usize);
        s.locked = vec![0, 0, 0, 1, if idr { 0x65 } else { 0x41 }, idx as u8];
        l.bitstreamBufferPtr = s.locked.as_mut_ptr().cast();
        l.bitstreamSizeInBytes = s.locked.len() as u32;
        l.outputTimeStamp = pts;
        l.pictureType =
            if idr { sys::NV_ENC_PIC_TYPE::NV_ENC_PIC_TYPE_IDR } else { sys::NV_ENC_PIC_TYPE::NV_ENC_PIC_TYPE_P };
        st::NV_ENC_SUCCESS
    })
}

unsafe extern "C" fn unlock(e: *mut c_void, b: sys::NV_ENC_OUTPUT_PTR) -> u32 {
    session_call("nvEncUnlockBitstream", String::new(), e, |s| {
        if s.locked.remove(&(b as usize)) { st::NV_ENC_SUCCESS } else { st::NV_ENC_ERR_INVALID_PARAM }
    })
}

unsafe extern "C" fn reconfigure(e: *mut c_void, r: *mut sys::NV_ENC_RECONFIGURE_PARAMS) -> u32 {
    // SAFETY: valid parameters from the caller, with a config pointer.
    let c = unsafe { &*(*r).reInitEncodeParams.encodeConfig };
    // SAFETY: as above.
    let (num, den) = unsafe { ((*r).reInitEncodeParams.frameRateNum, (*r).reInitEncodeParams.frameRateDen) };
    session_call("nvEncReconfigureEncoder", format!("{num}/{den} cbr={}", c.rcParams.averageBitRate), e, |_| {
        st::NV_ENC_SUCCESS
    })
}

unsafe extern "C" fn destroy(e: *mut c_void) -> u32 {
    let st = session_call("nvEncDestroyEncoder", String::new(), e, |s| {
        // NVIDIA's order: unmap and unregister the inputs and destroy the bitstream buffers first.
        if s.mapped.is_empty() && s.registered.is_empty() && s.bitstreams.is_empty() {
            st::NV_ENC_SUCCESS
        } else {
            st::NV_ENC_ERR_INVALID_CALL
        }
    });
    if st == st::NV_ENC_SUCCESS {
        STATE.with(|s| s.borrow_mut().sessions.remove(&(e as usize)));
        CALLS.count("session", -1);
    }
    st
}

/// The fake function table (entries the encoder does not use stay null). The double's entry
/// points return `u32` (they may return any status); the table's type says `NVENCSTATUS`, which
/// is why the result layer calls every entry through a `u32`-returning pointer.
#[allow(clippy::missing_transmute_annotations)] // the target is each entry's own type
pub fn table() -> sys::NV_ENCODE_API_FUNCTION_LIST {
    macro_rules! as_entry {
        ($f:ident) => {
            // SAFETY: the same C signature but for the return type, `u32` here and the
            // `repr(u32)` NVENCSTATUS in the table: one ABI. zerohop never calls it as returning
            // the enum (result.rs transmutes it back to `u32`).
            unsafe { std::mem::transmute::<*const (), _>($f as *const ()) }
        };
    }
    // SAFETY: an all-null table is a valid value (every entry is an Option of a fn pointer).
    let mut t: sys::NV_ENCODE_API_FUNCTION_LIST = unsafe { std::mem::zeroed() };
    t.version = sys::NV_ENCODE_API_FUNCTION_LIST_VER;
    t.nvEncOpenEncodeSessionEx = Some(as_entry!(open));
    t.nvEncGetEncodePresetConfigEx = Some(as_entry!(preset));
    t.nvEncInitializeEncoder = Some(as_entry!(init));
    t.nvEncSetIOCudaStreams = Some(as_entry!(streams));
    t.nvEncRegisterResource = Some(as_entry!(register));
    t.nvEncUnregisterResource = Some(as_entry!(unregister));
    t.nvEncCreateBitstreamBuffer = Some(as_entry!(create_bitstream));
    t.nvEncDestroyBitstreamBuffer = Some(as_entry!(destroy_bitstream));
    t.nvEncMapInputResource = Some(as_entry!(map));
    t.nvEncUnmapInputResource = Some(as_entry!(unmap));
    t.nvEncEncodePicture = Some(as_entry!(encode));
    t.nvEncLockBitstream = Some(as_entry!(lock));
    t.nvEncUnlockBitstream = Some(as_entry!(unlock));
    t.nvEncReconfigureEncoder = Some(as_entry!(reconfigure));
    t.nvEncDestroyEncoder = Some(as_entry!(destroy));
    t
}
