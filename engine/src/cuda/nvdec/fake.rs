//! TEST DOUBLE of the NVDEC driver (`libnvcuvid.so`): a parser and decoder that record each call
//! in a per-thread log and call back the way the real parser does (sequence once per new format,
//! then decode and display per picture, with an optional display delay released at end of
//! stream). It stands in for the driver, which cannot run on these machines; the `NvDecoder`
//! above it is the real code.
//!
//! Strictness, as the driver (and NVIDIA's NvDecoder, which pushes its context around these
//! calls): `cuvidGetDecoderCaps` and `cuvidCreateDecoder` need a context current on the calling
//! thread (`CUDA_ERROR_INVALID_CONTEXT`), and `cuvidDestroyDecoder` the decoder's own; a decoder
//! handle that is not live is refused (`CUDA_ERROR_INVALID_HANDLE`), and so is a parser's;
//! mapping more pictures at once than the decoder's output surfaces is refused; unmapping an
//! address that is not mapped (twice, or made up) is refused (`CUDA_ERROR_INVALID_VALUE`); and a
//! decoder with pictures still mapped cannot be destroyed (`CUDA_ERROR_NOT_PERMITTED`; the
//! decoder then stays live, so the leak shows in `live`). Every new format gets a new decoder
//! handle, and a decoder maps only pictures it decoded itself (`CUDA_ERROR_INVALID_VALUE`
//! otherwise: cuviddec.h's cuvidMapVideoFrame maps "the picture nPicIdx" of `hDecoder`, an index
//! its own cuvidDecodePicture filled; NvDecoder maps in the display callback, on the decoder
//! that decoded the picture). At a format change the parser first displays the pictures of the
//! old sequence it still holds, then calls the sequence callback, all in one parse call (the
//! pictures then carry indices of the old decoder). [`is_mapped`] lets the GPU double
//! refuse to read a picture that is not mapped.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::{c_int, c_uint, c_void};

use nvidia_video_codec_sdk::sys::cuviddec as dec;
use nvidia_video_codec_sdk::sys::nvcuvid as cuvid;

use super::CuvidFns;
use crate::cuda::context::double;
use crate::cuda::fake_calls::Ledger;

/// This double's calls on this thread.
const CALLS: Ledger = Ledger("nvdec");

const INVALID_VALUE: u32 = 1;
const INVALID_CONTEXT: u32 = 201;
const INVALID_HANDLE: u32 = 400;
const NOT_PERMITTED: u32 = 800;

/// A live decoder: its context and the addresses of its mapped pictures.
struct Decoder {
    ctx: usize,
    output_surfaces: usize,
    mapped: Vec<u64>,
    /// Picture indices this decoder decoded.
    decoded: std::collections::HashSet<c_int>,
}

#[derive(Clone, Copy)]
pub struct Format {
    pub codec: dec::cudaVideoCodec,
    pub chroma: dec::cudaVideoChromaFormat,
    pub bit_depth: u8,
    pub width: u32,
    pub height: u32,
}

pub const H264_1080P: Format = Format {
    codec: dec::cudaVideoCodec::cudaVideoCodec_H264,
    chroma: dec::cudaVideoChromaFormat::cudaVideoChromaFormat_420,
    bit_depth: 8,
    width: 1920,
    height: 1080,
};

struct Parser {
    user: *mut c_void,
    seq: cuvid::PFNVIDSEQUENCECALLBACK,
    decode: cuvid::PFNVIDDECODECALLBACK,
    display: cuvid::PFNVIDDISPLAYCALLBACK,
    surfaces: c_int,
    held: VecDeque<(c_int, i64)>,
    pictures: c_int,
}

#[derive(Default)]
struct State {
    format: Option<Format>,
    format_sent: bool,
    delay: usize,
    parsers: HashMap<usize, Parser>,
    next: usize,
    decoders: HashMap<usize, Decoder>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

pub fn reset(format: Format, delay: usize) {
    STATE.with(|s| *s.borrow_mut() = State { format: Some(format), delay, ..State::default() });
    CALLS.reset();
}

/// The stream changes format at the next picture (a new sequence header).
pub fn change_format(format: Format) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.format = Some(format);
        s.format_sent = false;
    });
}

/// Makes the next call of `api` answer `code`.
pub fn fail(api: &'static str, code: u32) {
    CALLS.fail_next(api, code);
}

pub fn log() -> Vec<String> {
    CALLS.log()
}

/// Whether `ptr` is a picture mapped now (by any decoder of this thread).
pub fn is_mapped(ptr: u64) -> bool {
    STATE.with(|s| s.borrow().decoders.values().any(|d| d.mapped.contains(&ptr)))
}

/// Resources of a kind currently alive: "parser", "decoder", "mapping".
pub fn live(kind: &'static str) -> i64 {
    CALLS.live(kind)
}

unsafe extern "C" fn create_parser(p: *mut cuvid::CUvideoparser, params: *mut cuvid::CUVIDPARSERPARAMS) -> u32 {
    // SAFETY: the caller passes valid parameters (using them is what the double checks).
    let params = unsafe { &*params };
    let code = CALLS.record("cuvidCreateVideoParser", format!("clock {}", params.ulClockRate));
    if code != 0 {
        return code;
    }
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.next += 1;
        let h = 0x100 * s.next;
        s.parsers.insert(
            h,
            Parser {
                user: params.pUserData,
                seq: params.pfnSequenceCallback,
                decode: params.pfnDecodePicture,
                display: params.pfnDisplayPicture,
                surfaces: 1,
                held: VecDeque::new(),
                pictures: 0,
            },
        );
        // SAFETY: valid out-pointer from the caller.
        unsafe { *p = h as cuvid::CUvideoparser };
    });
    CALLS.count("parser", 1);
    0
}

unsafe extern "C" fn parse(p: cuvid::CUvideoparser, pkt: *mut cuvid::CUVIDSOURCEDATAPACKET) -> u32 {
    // SAFETY: valid packet from the caller.
    let pkt = unsafe { &*pkt };
    let eos = pkt.flags & cuvid::CUvideopacketflags::CUVID_PKT_ENDOFSTREAM as u64 != 0;
    let code = CALLS.record(
        "cuvidParseVideoData",
        if eos { "EOS".into() } else { format!("{} bytes pts {}", pkt.payload_size, pkt.timestamp) },
    );
    if code != 0 {
        return code;
    }
    let h = p as usize;
    if !STATE.with(|s| s.borrow().parsers.contains_key(&h)) {
        return INVALID_HANDLE;
    }
    // Callbacks run with the state unborrowed: they call back into this double.
    let take = |f: &mut dyn FnMut(&mut State, &mut Parser)| {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let mut parser = s.parsers.remove(&h).expect("live parser");
            f(&mut s, &mut parser);
            s.parsers.insert(h, parser);
        })
    };
    let mut fire: Vec<(c_int, i64)> = Vec::new();
    if eos {
        take(&mut |_, parser| fire.extend(parser.held.drain(..)));
    } else {
        let mut seq: Option<(Format, *mut c_void, cuvid::PFNVIDSEQUENCECALLBACK)> = None;
        take(&mut |s, parser| {
            if !s.format_sent {
                s.format_sent = true;
                seq = s.format.map(|f| (f, parser.user, parser.seq));
                // A new sequence: the old one's held pictures are displayed first.
                if parser.pictures > 0 {
                    fire.extend(parser.held.drain(..));
                }
            }
        });
        if !fire.is_empty() {
            display_now(h, std::mem::take(&mut fire));
        }
        if let Some((f, user, Some(cb))) = seq {
            // SAFETY: an all-zero CUVIDEOFORMAT is valid (its enums have zero values).
            let mut vf: cuvid::CUVIDEOFORMAT = unsafe { std::mem::zeroed() };
            vf.codec = f.codec;
            vf.chroma_format = f.chroma;
            vf.bit_depth_luma_minus8 = f.bit_depth - 8;
            vf.bit_depth_chroma_minus8 = f.bit_depth - 8;
            vf.coded_width = f.width.next_multiple_of(16);
            vf.coded_height = f.height.next_multiple_of(16);
            vf.display_area.right = f.width as c_int;
            vf.display_area.bottom = f.height as c_int;
            vf.min_num_decode_surfaces = 5;
            // SAFETY: calling the registered callback with its user data, as the parser does.
            let n = unsafe { cb(user, &mut vf) };
            if n == 0 {
                return 0; // the real parser stops and reports through the callback's state
            }
            take(&mut |_, parser| parser.surfaces = n);
        }
        let (mut user, mut decode, mut idx) = (std::ptr::null_mut(), None, 0);
        take(&mut |_, parser| {
            user = parser.user;
            decode = parser.decode;
            idx = parser.pictures % parser.surfaces.max(1);
            parser.pictures += 1;
        });
        // SAFETY: an all-zero CUVIDPICPARAMS is what the double hands over (opaque to zerohop).
        let mut pic: dec::CUVIDPICPARAMS = unsafe { std::mem::zeroed() };
        pic.CurrPicIdx = idx;
        if let Some(cb) = decode {
            // SAFETY: the registered callback with its user data.
            if unsafe { cb(user, &mut pic) } == 0 {
                return 0;
            }
        }
        let delay = STATE.with(|s| s.borrow().delay);
        take(&mut |_, parser| {
            parser.held.push_back((idx, pkt.timestamp));
            while parser.held.len() > delay {
                fire.extend(parser.held.pop_front());
            }
        });
    }
    display_now(h, fire);
    0
}

/// Calls parser `h`'s display callback for each picture of `fire`, in order.
fn display_now(h: usize, fire: Vec<(c_int, i64)>) {
    let (user, display) = STATE.with(|s| {
        let s = s.borrow();
        let parser = &s.parsers[&h];
        (parser.user, parser.display)
    });
    for (index, ts) in fire {
        let mut info = cuvid::CUVIDPARSERDISPINFO {
            picture_index: index,
            progressive_frame: 1,
            top_field_first: 0,
            repeat_first_field: 0,
            timestamp: ts,
        };
        if let Some(cb) = display {
            // SAFETY: the registered callback with its user data.
            unsafe { cb(user, &mut info) };
        }
    }
}

unsafe extern "C" fn destroy_parser(p: cuvid::CUvideoparser) -> u32 {
    let code = CALLS.record("cuvidDestroyVideoParser", String::new());
    if code != 0 {
        return code;
    }
    if STATE.with(|s| s.borrow_mut().parsers.remove(&(p as usize))).is_none() {
        return INVALID_HANDLE;
    }
    CALLS.count("parser", -1);
    0
}

unsafe extern "C" fn create_decoder(d: *mut dec::CUvideodecoder, ci: *mut dec::CUVIDDECODECREATEINFO) -> u32 {
    // SAFETY: valid create-info from the caller.
    let ci = unsafe { &*ci };
    let code = CALLS.record(
        "cuvidCreateDecoder",
        format!(
            "{}x{} -> {}x{}, {} surfaces",
            ci.ulWidth, ci.ulHeight, ci.ulTargetWidth, ci.ulTargetHeight, ci.ulNumDecodeSurfaces
        ),
    );
    if code != 0 {
        return code;
    }
    let ctx = double::current();
    if ctx == 0 {
        return INVALID_CONTEXT;
    }
    let h = STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.next += 1;
        let h = 0xDEC0 + 0x10 * s.next;
        s.decoders.insert(
            h,
            Decoder {
                ctx,
                output_surfaces: ci.ulNumOutputSurfaces as usize,
                mapped: Vec::new(),
                decoded: Default::default(),
            },
        );
        h
    });
    // SAFETY: valid out-pointer from the caller.
    unsafe { *d = h as dec::CUvideodecoder };
    CALLS.count("decoder", 1);
    0
}

unsafe extern "C" fn decode(d: dec::CUvideodecoder, pic: *mut dec::CUVIDPICPARAMS) -> u32 {
    // SAFETY: valid picture parameters from the parser.
    let idx = unsafe { (*pic).CurrPicIdx };
    let code = CALLS.record("cuvidDecodePicture", format!("{idx}"));
    if code != 0 {
        return code;
    }
    STATE.with(|s| match s.borrow_mut().decoders.get_mut(&(d as usize)) {
        Some(dec) => {
            dec.decoded.insert(idx);
            0
        }
        None => INVALID_HANDLE,
    })
}

unsafe extern "C" fn map(
    d: dec::CUvideodecoder,
    idx: c_int,
    ptr: *mut u64,
    pitch: *mut c_uint,
    vpp: *mut dec::CUVIDPROCPARAMS,
) -> u32 {
    // SAFETY: valid processing parameters from the caller.
    let stream = unsafe { (*vpp).output_stream } as usize;
    let code = CALLS.record("cuvidMapVideoFrame64", format!("{idx} on {stream:#x}"));
    if code != 0 {
        return code;
    }
    let addr = 0x9000_0000 + 0x40_0000 * idx as u64;
    let code = STATE.with(|s| match s.borrow_mut().decoders.get_mut(&(d as usize)) {
        None => INVALID_HANDLE,
        Some(dec) if dec.mapped.len() >= dec.output_surfaces || dec.mapped.contains(&addr) => INVALID_VALUE,
        Some(dec) if !dec.decoded.contains(&idx) => INVALID_VALUE, // not a picture of this decoder
        Some(dec) => {
            dec.mapped.push(addr);
            0
        }
    });
    if code == 0 {
        // SAFETY: valid out-pointers from the caller.
        unsafe {
            *ptr = addr;
            *pitch = 2048;
        }
        CALLS.count("mapping", 1);
    }
    code
}

unsafe extern "C" fn unmap(d: dec::CUvideodecoder, ptr: u64) -> u32 {
    let code = CALLS.record("cuvidUnmapVideoFrame64", format!("{ptr:#x}"));
    if code != 0 {
        return code;
    }
    let code = STATE.with(|s| match s.borrow_mut().decoders.get_mut(&(d as usize)) {
        None => INVALID_HANDLE,
        Some(dec) => match dec.mapped.iter().position(|&p| p == ptr) {
            Some(i) => {
                dec.mapped.remove(i);
                0
            }
            None => INVALID_VALUE,
        },
    });
    if code == 0 {
        CALLS.count("mapping", -1);
    }
    code
}

unsafe extern "C" fn destroy_decoder(d: dec::CUvideodecoder) -> u32 {
    let code = CALLS.record("cuvidDestroyDecoder", String::new());
    if code != 0 {
        return code;
    }
    let current = double::current();
    let code = STATE.with(|s| {
        let mut s = s.borrow_mut();
        match s.decoders.get(&(d as usize)) {
            None => INVALID_HANDLE,
            Some(dec) if dec.ctx != current => INVALID_CONTEXT,
            Some(dec) if !dec.mapped.is_empty() => NOT_PERMITTED,
            Some(_) => {
                s.decoders.remove(&(d as usize));
                0
            }
        }
    });
    if code == 0 {
        CALLS.count("decoder", -1);
    }
    code
}

unsafe extern "C" fn caps(c: *mut dec::CUVIDDECODECAPS) -> u32 {
    if double::current() == 0 {
        return INVALID_CONTEXT;
    }
    // SAFETY: valid in/out struct from the caller.
    let c = unsafe { &mut *c };
    c.bIsSupported = 1;
    c.nNumNVDECs = 7;
    c.nMaxWidth = 4096;
    c.nMaxHeight = 4096;
    CALLS.record("cuvidGetDecoderCaps", String::new())
}

pub fn fns() -> CuvidFns {
    CuvidFns { create_parser, parse, destroy_parser, create_decoder, decode, map, unmap, destroy_decoder, caps }
}
