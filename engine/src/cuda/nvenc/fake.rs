//! TEST DOUBLE of the NVENC driver: a function table whose entries record each call (name and
//! the arguments that matter) in a per-thread log and return scripted statuses. It stands in for
//! `libnvidia-encode.so`, the one boundary that cannot run on these machines; everything above it
//! (the `Encoder`'s call order, bookkeeping and error paths) is the real code.
//!
//! Behaviour: handles are small fake addresses; a locked bitstream holds an Annex-B access unit
//! `00 00 00 01 65|41 <frameIdx>` (IDR or not) with the input's timestamp; with `hold_back(n)`
//! the first `n` pictures answer NEED_MORE_INPUT as a B-frame encoder would.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;

use nvidia_video_codec_sdk::sys::nvEncodeAPI as sys;
use sys::NVENCSTATUS;

#[derive(Default)]
struct State {
    log: Vec<String>,
    fail: HashMap<&'static str, (u32, NVENCSTATUS)>,
    calls: HashMap<&'static str, u32>,
    hold_back: u32,
    next_handle: usize,
    /// bitstream handle -> (pts, idr, frameIdx)
    submitted: HashMap<usize, (u64, bool, u32)>,
    queued: Vec<usize>,
    locked: Vec<u8>,
    live: HashMap<&'static str, i64>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Clears the log and the script for this thread.
pub fn reset() {
    STATE.with(|s| *s.borrow_mut() = State::default());
}

/// The calls made so far on this thread.
pub fn log() -> Vec<String> {
    STATE.with(|s| s.borrow().log.clone())
}

/// Makes the `nth` (1-based) call of `api` fail with `status`.
pub fn fail(api: &'static str, nth: u32, status: NVENCSTATUS) {
    STATE.with(|s| s.borrow_mut().fail.insert(api, (nth, status)));
}

/// The first `n` pictures produce no output yet (as with B-frames).
pub fn hold_back(n: u32) {
    STATE.with(|s| s.borrow_mut().hold_back = n);
}

/// Resources of a kind currently alive (created minus released): "session", "registration",
/// "bitstream", "mapping".
pub fn live(kind: &'static str) -> i64 {
    STATE.with(|s| s.borrow().live.get(kind).copied().unwrap_or(0))
}

fn call(api: &'static str, detail: String) -> NVENCSTATUS {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.log.push(if detail.is_empty() { api.to_string() } else { format!("{api}({detail})") });
        let n = {
            let c = s.calls.entry(api).or_insert(0);
            *c += 1;
            *c
        };
        match s.fail.get(api) {
            Some(&(nth, status)) if nth == n => status,
            _ => NVENCSTATUS::NV_ENC_SUCCESS,
        }
    })
}

fn handle() -> *mut c_void {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.next_handle += 1;
        (0x1000 + 0x10 * s.next_handle) as *mut c_void
    })
}

fn count(kind: &'static str, d: i64) {
    STATE.with(|s| *s.borrow_mut().live.entry(kind).or_insert(0) += d);
}

unsafe extern "C" fn open(p: *mut sys::NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS, enc: *mut *mut c_void) -> NVENCSTATUS {
    // SAFETY: the caller passes valid pointers (that is what the double checks by using them).
    let p = unsafe { &*p };
    let st = call(
        "nvEncOpenEncodeSessionEx",
        format!("cuda={}", p.deviceType == sys::NV_ENC_DEVICE_TYPE::NV_ENC_DEVICE_TYPE_CUDA),
    );
    if st == NVENCSTATUS::NV_ENC_SUCCESS {
        // SAFETY: valid out-pointer from the caller.
        unsafe { *enc = handle() };
        count("session", 1);
    }
    st
}

unsafe extern "C" fn preset(
    _e: *mut c_void,
    _codec: sys::GUID,
    _preset: sys::GUID,
    tuning: sys::NV_ENC_TUNING_INFO,
    cfg: *mut sys::NV_ENC_PRESET_CONFIG,
) -> NVENCSTATUS {
    let st = call("nvEncGetEncodePresetConfigEx", format!("{tuning:?}"));
    // SAFETY: valid out-struct from the caller; the version must have been set.
    let cfg = unsafe { &mut *cfg };
    if cfg.version != sys::NV_ENC_PRESET_CONFIG_VER {
        return NVENCSTATUS::NV_ENC_ERR_INVALID_VERSION;
    }
    cfg.presetCfg.gopLength = 250;
    st
}

unsafe extern "C" fn init(_e: *mut c_void, p: *mut sys::NV_ENC_INITIALIZE_PARAMS) -> NVENCSTATUS {
    // SAFETY: valid parameters from the caller, with a config pointer.
    let p = unsafe { &*p };
    // SAFETY: as above.
    let c = unsafe { &*p.encodeConfig };
    call(
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

unsafe extern "C" fn streams(_e: *mut c_void, i: sys::NV_ENC_CUSTREAM_PTR, o: sys::NV_ENC_CUSTREAM_PTR) -> NVENCSTATUS {
    // SAFETY: NVENC reads a CUstream from each pointer; so does the double.
    let (i, o) = unsafe { (*(i as *const usize), *(o as *const usize)) };
    call("nvEncSetIOCudaStreams", format!("{i:#x},{o:#x}"))
}

unsafe extern "C" fn register(_e: *mut c_void, r: *mut sys::NV_ENC_REGISTER_RESOURCE) -> NVENCSTATUS {
    // SAFETY: valid parameters from the caller.
    let r = unsafe { &mut *r };
    let st = call("nvEncRegisterResource", format!("{:#x} pitch {}", r.resourceToRegister as usize, r.pitch));
    if st == NVENCSTATUS::NV_ENC_SUCCESS {
        r.registeredResource = handle();
        count("registration", 1);
    }
    st
}

unsafe extern "C" fn unregister(_e: *mut c_void, _r: sys::NV_ENC_REGISTERED_PTR) -> NVENCSTATUS {
    count("registration", -1);
    call("nvEncUnregisterResource", String::new())
}

unsafe extern "C" fn create_bitstream(_e: *mut c_void, b: *mut sys::NV_ENC_CREATE_BITSTREAM_BUFFER) -> NVENCSTATUS {
    let st = call("nvEncCreateBitstreamBuffer", String::new());
    if st == NVENCSTATUS::NV_ENC_SUCCESS {
        // SAFETY: valid out-struct from the caller.
        unsafe { (*b).bitstreamBuffer = handle() };
        count("bitstream", 1);
    }
    st
}

unsafe extern "C" fn destroy_bitstream(_e: *mut c_void, _b: sys::NV_ENC_OUTPUT_PTR) -> NVENCSTATUS {
    count("bitstream", -1);
    call("nvEncDestroyBitstreamBuffer", String::new())
}

unsafe extern "C" fn map(_e: *mut c_void, m: *mut sys::NV_ENC_MAP_INPUT_RESOURCE) -> NVENCSTATUS {
    let st = call("nvEncMapInputResource", String::new());
    if st == NVENCSTATUS::NV_ENC_SUCCESS {
        // SAFETY: valid parameters from the caller.
        let m = unsafe { &mut *m };
        m.mappedResource = handle();
        m.mappedBufferFmt = sys::NV_ENC_BUFFER_FORMAT::NV_ENC_BUFFER_FORMAT_NV12;
        count("mapping", 1);
    }
    st
}

unsafe extern "C" fn unmap(_e: *mut c_void, _m: sys::NV_ENC_INPUT_PTR) -> NVENCSTATUS {
    count("mapping", -1);
    call("nvEncUnmapInputResource", String::new())
}

unsafe extern "C" fn encode(_e: *mut c_void, p: *mut sys::NV_ENC_PIC_PARAMS) -> NVENCSTATUS {
    // SAFETY: valid parameters from the caller.
    let p = unsafe { &*p };
    let eos = p.encodePicFlags & sys::NV_ENC_PIC_FLAGS::NV_ENC_PIC_FLAG_EOS as u32 != 0;
    let idr = p.encodePicFlags & sys::NV_ENC_PIC_FLAGS::NV_ENC_PIC_FLAG_FORCEIDR as u32 != 0;
    let detail = if eos {
        "EOS".to_string()
    } else {
        format!("#{} pts {}{}", p.frameIdx, p.inputTimeStamp, if idr { " IDR" } else { "" })
    };
    let st = call("nvEncEncodePicture", detail);
    if st != NVENCSTATUS::NV_ENC_SUCCESS || eos {
        return st;
    }
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.submitted.insert(p.outputBitstream as usize, (p.inputTimeStamp, idr, p.frameIdx));
        s.queued.push(p.outputBitstream as usize);
        if s.hold_back > 0 {
            s.hold_back -= 1;
            NVENCSTATUS::NV_ENC_ERR_NEED_MORE_INPUT
        } else {
            NVENCSTATUS::NV_ENC_SUCCESS
        }
    })
}

unsafe extern "C" fn lock(_e: *mut c_void, l: *mut sys::NV_ENC_LOCK_BITSTREAM) -> NVENCSTATUS {
    // SAFETY: valid parameters from the caller.
    let l = unsafe { &mut *l };
    let st = call("nvEncLockBitstream", String::new());
    if st != NVENCSTATUS::NV_ENC_SUCCESS {
        return st;
    }
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let Some((pts, idr, idx)) = s.submitted.remove(&(l.outputBitstream as usize)) else {
            return NVENCSTATUS::NV_ENC_ERR_INVALID_PARAM; // locking a buffer never submitted
        };
        s.queued.retain(|&b| b != l.outputBitstream as usize);
        s.locked = vec![0, 0, 0, 1, if idr { 0x65 } else { 0x41 }, idx as u8];
        l.bitstreamBufferPtr = s.locked.as_mut_ptr().cast();
        l.bitstreamSizeInBytes = s.locked.len() as u32;
        l.outputTimeStamp = pts;
        l.pictureType =
            if idr { sys::NV_ENC_PIC_TYPE::NV_ENC_PIC_TYPE_IDR } else { sys::NV_ENC_PIC_TYPE::NV_ENC_PIC_TYPE_P };
        NVENCSTATUS::NV_ENC_SUCCESS
    })
}

unsafe extern "C" fn unlock(_e: *mut c_void, _b: sys::NV_ENC_OUTPUT_PTR) -> NVENCSTATUS {
    call("nvEncUnlockBitstream", String::new())
}

unsafe extern "C" fn reconfigure(_e: *mut c_void, r: *mut sys::NV_ENC_RECONFIGURE_PARAMS) -> NVENCSTATUS {
    // SAFETY: valid parameters from the caller, with a config pointer.
    let c = unsafe { &*(*r).reInitEncodeParams.encodeConfig };
    call("nvEncReconfigureEncoder", format!("cbr={}", c.rcParams.averageBitRate))
}

unsafe extern "C" fn destroy(_e: *mut c_void) -> NVENCSTATUS {
    count("session", -1);
    call("nvEncDestroyEncoder", String::new())
}

/// The fake function table (entries the encoder does not use stay null).
pub fn table() -> sys::NV_ENCODE_API_FUNCTION_LIST {
    // SAFETY: an all-null table is a valid value (every entry is an Option of a fn pointer).
    let mut t: sys::NV_ENCODE_API_FUNCTION_LIST = unsafe { std::mem::zeroed() };
    t.version = sys::NV_ENCODE_API_FUNCTION_LIST_VER;
    t.nvEncOpenEncodeSessionEx = Some(open);
    t.nvEncGetEncodePresetConfigEx = Some(preset);
    t.nvEncInitializeEncoder = Some(init);
    t.nvEncSetIOCudaStreams = Some(streams);
    t.nvEncRegisterResource = Some(register);
    t.nvEncUnregisterResource = Some(unregister);
    t.nvEncCreateBitstreamBuffer = Some(create_bitstream);
    t.nvEncDestroyBitstreamBuffer = Some(destroy_bitstream);
    t.nvEncMapInputResource = Some(map);
    t.nvEncUnmapInputResource = Some(unmap);
    t.nvEncEncodePicture = Some(encode);
    t.nvEncLockBitstream = Some(lock);
    t.nvEncUnlockBitstream = Some(unlock);
    t.nvEncReconfigureEncoder = Some(reconfigure);
    t.nvEncDestroyEncoder = Some(destroy);
    t
}
