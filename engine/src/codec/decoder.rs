//! H.264 decoding with OpenH264, timestamps carried through the decoder's reordering.
//!
//! The `openh264` crate's `decode` flushes after every call by default, which on streams with
//! B-frames returns pictures early and loses others (9 of 60 came out on our 1080p fixture).
//! This wrapper never flushes per call: pictures come out when the decoder's reordering releases
//! them, and [`H264Decoder::flush`] drains the rest at the end of a segment. Each access unit's
//! PTS goes in as the "bitstream timestamp" and comes back on the picture it belongs to.
//!
//! The decoder is created here rather than through the crate's `Decoder`: OpenH264 takes its
//! thread count (`DECODER_OPTION_NUM_OF_THREADS`) only before `Initialize` (as its own console
//! decoder sets it), and the crate sets it after, which frees the initialised contexts.

use std::ffi::c_void;

use openh264_sys2::source::APILoader;
use openh264_sys2::{
    DECODER_OPTION, DECODER_OPTION_ERROR_CON_IDC, DECODER_OPTION_NUM_OF_FRAMES_REMAINING_IN_BUFFER,
    DECODER_OPTION_NUM_OF_THREADS, DECODER_OPTION_TRACE_LEVEL, ISVCDecoder, ISVCDecoderVtbl, SBufferInfo,
    SDecodingParam, WELS_LOG_QUIET, dsErrorFree, videoFormatI420,
};

use super::CodecError;
use crate::frame::Frame;

/// PTS values go through OpenH264 as `u64`; this offset keeps negative extended PTS
/// representable.
const PTS_BIAS: i64 = 1 << 40;

/// Decoder threads OpenH264 uses at most (`CWelsDecoder::SetOption` caps the count at 3 and
/// at the CPUs it finds).
pub const MAX_DECODER_THREADS: u16 = 3;

/// OpenH264's decoder, owned: created, thread count set, initialised, error concealment off,
/// in that order; uninitialised and destroyed on drop.
struct RawDecoder {
    ptr: *mut ISVCDecoder,
    vtbl: ISVCDecoderVtbl,
    /// Decoding threads asked for.
    threads: u16,
}

// SAFETY: the decoder object is used by one thread at a time (`&mut self` for every call); its
// own worker threads, when it has any, are joined by `Uninitialize`, and nothing in it is tied
// to the thread that created it.
unsafe impl Send for RawDecoder {}

impl RawDecoder {
    fn new(threads: u16) -> Result<RawDecoder, CodecError> {
        let init = |detail: String| CodecError::Init { call: "OpenH264 WelsCreateDecoder/Initialize", detail };
        let mut ptr: *mut ISVCDecoder = std::ptr::null_mut();
        // SAFETY: WelsCreateDecoder writes a new decoder object's address to the pointer, a live
        // local.
        let rc = unsafe { APILoader::WelsCreateDecoder(&raw mut ptr) };
        if rc != 0 || ptr.is_null() {
            return Err(init(format!("WelsCreateDecoder returned {rc}")));
        }
        // SAFETY: a decoder object starts with its vtable pointer (`ISVCDecoder` is
        // `*const ISVCDecoderVtbl`), valid as long as the object; copying the table keeps
        // nothing borrowed.
        let vtbl = unsafe { std::ptr::read(*ptr) };
        let missing = [
            vtbl.Initialize.is_none(),
            vtbl.Uninitialize.is_none(),
            vtbl.DecodeFrameNoDelay.is_none(),
            vtbl.FlushFrame.is_none(),
            vtbl.SetOption.is_none(),
            vtbl.GetOption.is_none(),
        ];
        if missing.iter().any(|&m| m) {
            // SAFETY: the object was created above and is not used again.
            unsafe { APILoader::WelsDestroyDecoder(ptr) };
            return Err(init("the decoder's vtable lacks an entry".into()));
        }
        // From here on `Drop` uninitialises and destroys.
        let mut d = RawDecoder { ptr, vtbl, threads };
        let mut n = i32::from(threads.min(MAX_DECODER_THREADS));
        if n > 1 {
            // Before Initialize, which creates one decoding context per thread.
            d.set_option(DECODER_OPTION_NUM_OF_THREADS, &mut n).map_err(|rc| init(format!("{n} threads: {rc}")))?;
        }
        let param = SDecodingParam::default(); // AVC bitstream, no parse-only, default EC
        let initialize = d.vtbl.Initialize.expect("checked");
        // SAFETY: `ptr` is the live decoder; Initialize reads the parameter struct, a live local.
        let rc = unsafe { initialize(d.ptr, &raw const param) };
        if rc != 0 {
            return Err(init(format!("Initialize returned {rc}")));
        }
        let mut quiet: i32 = WELS_LOG_QUIET;
        d.set_option(DECODER_OPTION_TRACE_LEVEL, &mut quiet).map_err(|rc| init(format!("trace level: {rc}")))?;
        // Error concealment off: a broken picture is an error, not a guess (CodecError::Decode).
        let mut ec = 0i32;
        d.set_option(DECODER_OPTION_ERROR_CON_IDC, &mut ec).map_err(|rc| init(format!("error concealment: {rc}")))?;
        Ok(d)
    }

    /// SetOption with one `int`, as the options used here take.
    fn set_option(&mut self, option: DECODER_OPTION, value: &mut i32) -> Result<(), std::ffi::c_long> {
        let set = self.vtbl.SetOption.expect("checked in new");
        // SAFETY: the live decoder; each option used here reads one int through the pointer.
        let rc = unsafe { set(self.ptr, option, std::ptr::from_mut(value).cast::<c_void>()) };
        if rc == 0 { Ok(()) } else { Err(rc) }
    }

    /// GetOption of one `int`.
    fn get_option(&mut self, option: DECODER_OPTION) -> i32 {
        let mut v = 0i32;
        let get = self.vtbl.GetOption.expect("checked in new");
        // SAFETY: the live decoder; the options used here write one int through the pointer.
        unsafe { get(self.ptr, option, (&raw mut v).cast::<c_void>()) };
        v
    }
}

impl Drop for RawDecoder {
    fn drop(&mut self) {
        let uninitialize = self.vtbl.Uninitialize.expect("checked in new");
        // SAFETY: the decoder was created by WelsCreateDecoder and is not used after this;
        // Uninitialize on a decoder whose Initialize failed is a no-op in OpenH264, and
        // Uninitialize ends its worker threads before WelsDestroyDecoder frees it.
        unsafe {
            uninitialize(self.ptr);
            APILoader::WelsDestroyDecoder(self.ptr);
        }
    }
}

/// An OpenH264 decoder. One per stream; it keeps references across segments.
pub struct H264Decoder {
    raw: RawDecoder,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "H264Decoder({} threads)", self.raw.threads)
    }
}

impl H264Decoder {
    /// A decoder that decodes on the calling thread.
    pub fn new() -> Result<H264Decoder, CodecError> {
        H264Decoder::with_threads(1)
    }

    /// A decoder with `threads` decoding threads (frame threads of OpenH264: the calling
    /// thread parses, workers reconstruct; 1 decodes on the calling thread alone). OpenH264 uses
    /// at most [`MAX_DECODER_THREADS`], and no more than the CPUs it finds.
    ///
    /// For measurement only: the bundled OpenH264's threaded decode gives pictures that differ
    /// from its single-threaded (and ffmpeg's) decode, and can deadlock; the engine decodes
    /// with one thread (`tests/decode_threads.rs` re-checks a newer OpenH264 with `--ignored`).
    pub fn with_threads(threads: u16) -> Result<H264Decoder, CodecError> {
        Ok(H264Decoder { raw: RawDecoder::new(threads.clamp(1, MAX_DECODER_THREADS))? })
    }

    /// Decoding threads asked for (OpenH264 may use fewer on a machine with fewer CPUs).
    pub fn threads(&self) -> u16 {
        self.raw.threads
    }

    /// Decodes one access unit (Annex B) presented at `pts`; pictures that become ready, in
    /// display order, go to `out`.
    pub fn decode(&mut self, au: &[u8], pts: i64, out: &mut dyn FnMut(Frame)) -> Result<(), CodecError> {
        self.decode_releasing(au, pts, false, out)
    }

    /// [`H264Decoder::decode`], then, when `releases` (no picture decoded so far comes after
    /// this unit's in output order: an IDR, or a stream that does not reorder), every picture
    /// the decoder holds goes out at once. OpenH264 holds each picture of a non-Baseline stream
    /// until the next one is decoded, in case it comes first; where nothing can, the hold is a
    /// frame of latency for nothing (the first picture of every segment, and every picture of
    /// a stream without B-frames).
    pub fn decode_releasing(
        &mut self,
        au: &[u8],
        pts: i64,
        releases: bool,
        out: &mut dyn FnMut(Frame),
    ) -> Result<(), CodecError> {
        self.decode_one(au, pts, out)?;
        if releases { self.flush(out) } else { Ok(()) }
    }

    fn decode_one(&mut self, au: &[u8], pts: i64, out: &mut dyn FnMut(Frame)) -> Result<(), CodecError> {
        let len =
            i32::try_from(au.len()).map_err(|_| CodecError::Decode { pts, state: openh264_sys2::dsInvalidArgument })?;
        let mut dst = [std::ptr::null_mut::<u8>(); 3];
        let mut info = SBufferInfo { uiInBsTimeStamp: (pts + PTS_BIAS) as u64, ..SBufferInfo::default() };
        let decode = self.raw.vtbl.DecodeFrameNoDelay.expect("checked in new");
        // SAFETY: the live decoder; `au` is a live slice of `len` bytes; `dst` has the three
        // pointers and `info` the struct that DecodeFrameNoDelay writes. `&mut self`: one caller.
        let state = unsafe { decode(self.raw.ptr, au.as_ptr(), len, dst.as_mut_ptr(), &raw mut info) };
        if info.iBufferStatus == 1 {
            out(picture(&dst, &info)?);
        }
        if state != dsErrorFree {
            return Err(CodecError::Decode { pts, state });
        }
        Ok(())
    }

    /// Drains every picture still held for reordering (end of segment, or where nothing decoded
    /// later can come before them).
    pub fn flush(&mut self, out: &mut dyn FnMut(Frame)) -> Result<(), CodecError> {
        // With decoder threads this first waits for the pictures in flight.
        let remaining = self.raw.get_option(DECODER_OPTION_NUM_OF_FRAMES_REMAINING_IN_BUFFER);
        let flush = self.raw.vtbl.FlushFrame.expect("checked in new");
        for _ in 0..remaining.max(0) {
            let mut dst = [std::ptr::null_mut::<u8>(); 3];
            let mut info = SBufferInfo::default();
            // SAFETY: the live decoder; FlushFrame writes the three plane pointers and `info`,
            // both live locals.
            unsafe { flush(self.raw.ptr, dst.as_mut_ptr(), &raw mut info) };
            if info.iBufferStatus == 1 {
                out(picture(&dst, &info)?);
            }
        }
        Ok(())
    }
}

/// Copies a decoded picture out of the decoder's buffers.
fn picture(dst: &[*mut u8; 3], info: &SBufferInfo) -> Result<Frame, CodecError> {
    // SAFETY: iBufferStatus == 1 means OpenH264 filled the sSystemBuffer member of the union.
    let sys = unsafe { info.UsrData.sSystemBuffer };
    if sys.iFormat != videoFormatI420 {
        return Err(CodecError::Layout(format!("format {} is not I420", sys.iFormat)));
    }
    let (w, h, ys, cs) = (sys.iWidth, sys.iHeight, sys.iStride[0], sys.iStride[1]);
    if w <= 0 || h <= 0 || ys < w || cs < (w + 1) / 2 || dst.iter().any(|p| p.is_null()) {
        return Err(CodecError::Layout(format!("{w}x{h} with strides {ys}/{cs}")));
    }
    let (w, h, ys, cs) = (w as usize, h as usize, ys as usize, cs as usize);
    let ch = h.div_ceil(2);
    // SAFETY: for a ready picture OpenH264 guarantees plane 0 spans `height * stride[0]` bytes and
    // planes 1 and 2 span `height/2 * stride[1]` (4:2:0, even decoded heights); the buffers stay
    // valid until the next decode call, and we copy them before returning.
    let (y, u, v) = unsafe {
        (
            std::slice::from_raw_parts(dst[0], h * ys),
            std::slice::from_raw_parts(dst[1], ch * cs),
            std::slice::from_raw_parts(dst[2], ch * cs),
        )
    };
    let pts = info.uiOutYuvTimeStamp as i64 - PTS_BIAS;
    Ok(Frame::from_strided(w as u32, h as u32, pts, [(y, ys), (u, cs), (v, cs)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::open::tests::{moving, settings};
    use crate::codec::{CpuEncoder, Encoder, X264Preset};
    use crate::h264::inspect_access_unit;

    /// x264 as zerohop runs it (High, no B-frames: POC type 2) makes a stream whose output order
    /// is its decoding order. OpenH264 holds each of its pictures until the next is decoded; told
    /// that nothing can come first, it hands each out from the call that decoded it.
    #[test]
    fn a_stream_that_does_not_reorder_comes_out_picture_for_picture() {
        if let Err(e) = crate::codec::x264::sys::library() {
            zerohop_testkit::skip("libx264 build 164", e);
            return;
        }
        let s = settings(CpuEncoder::X264 { preset: X264Preset::Superfast }, 96, 64, 200_000, 30.0);
        let mut enc = Encoder::open(s).expect("x264");
        let units: Vec<(Vec<u8>, i64)> = moving(96, 64, 8, 3000)
            .iter()
            .map(|f| {
                let e = enc.encode(f, f.pts == 0).expect("encode").expect("no delay");
                (e.data, e.pts)
            })
            .collect();
        let sps = inspect_access_unit(&units[0].0).sps.expect("an SPS before the IDR").expect("parses");
        assert_eq!((sps.profile_idc, sps.reorder_frames), (100, Some(0)), "High, POC type 2");

        let mut held = H264Decoder::new().expect("decoder");
        let mut released = H264Decoder::new().expect("decoder");
        let mut lag = 0;
        for (au, pts) in &units {
            let mut out = Vec::new();
            held.decode(au, *pts, &mut |f| out.push(f.pts)).expect("decode");
            lag += usize::from(out.is_empty());
            let mut out = Vec::new();
            released.decode_releasing(au, *pts, true, &mut |f| out.push(f.pts)).expect("decode");
            assert_eq!(out, vec![*pts], "the picture of the unit just decoded, at once");
        }
        assert!(lag >= 1, "OpenH264 holds a non-Baseline stream's pictures: if it no longer does, this can go");
        let mut rest = Vec::new();
        released.flush(&mut |f| rest.push(f.pts)).expect("flush");
        assert!(rest.is_empty(), "nothing left behind");
    }
}
