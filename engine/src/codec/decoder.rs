//! H.264 decoding with OpenH264, timestamps carried through the decoder's reordering.
//!
//! The `openh264` crate's `decode` flushes after every call by default, which on streams with
//! B-frames returns pictures early and loses others (9 of 60 came out on our 1080p fixture).
//! This wrapper never flushes per call: pictures come out when the decoder's reordering releases
//! them, and [`H264Decoder::flush`] drains the rest at the end of a segment. Each access unit's
//! PTS goes in as the "bitstream timestamp" and comes back on the picture it belongs to.

use openh264::OpenH264API;
use openh264::decoder::{Decoder, DecoderConfig, Flush};
use openh264_sys2::{DECODER_OPTION_NUM_OF_FRAMES_REMAINING_IN_BUFFER, SBufferInfo, dsErrorFree, videoFormatI420};

use super::CodecError;
use crate::frame::Frame;

/// PTS values go through OpenH264 as `u64`; this offset keeps negative extended PTS
/// representable.
const PTS_BIAS: i64 = 1 << 40;

/// An OpenH264 decoder. One per stream; it keeps references across segments.
pub struct H264Decoder {
    inner: Decoder,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("H264Decoder")
    }
}

impl H264Decoder {
    pub fn new() -> Result<H264Decoder, CodecError> {
        let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
        let inner = Decoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| CodecError::Init { call: "WelsCreateDecoder/Initialize", detail: e.to_string() })?;
        Ok(H264Decoder { inner })
    }

    /// Decodes one access unit (Annex B) presented at `pts`; pictures that become ready, in
    /// display order, go to `out`.
    pub fn decode(&mut self, au: &[u8], pts: i64, out: &mut dyn FnMut(Frame)) -> Result<(), CodecError> {
        let len =
            i32::try_from(au.len()).map_err(|_| CodecError::Decode { pts, state: openh264_sys2::dsInvalidArgument })?;
        let mut dst = [std::ptr::null_mut::<u8>(); 3];
        let mut info = SBufferInfo { uiInBsTimeStamp: (pts + PTS_BIAS) as u64, ..SBufferInfo::default() };
        // SAFETY: `raw_api` gives the initialised decoder owned by `self.inner`; we set no option.
        let raw = unsafe { self.inner.raw_api() };
        // SAFETY: `au` is a live slice of `len` bytes; `dst` has the three pointers and `info` the
        // struct that DecodeFrameNoDelay writes. The decoder is used from this thread only.
        let state = unsafe { raw.decode_frame_no_delay(au.as_ptr(), len, dst.as_mut_ptr(), &mut info) };
        if info.iBufferStatus == 1 {
            out(picture(&dst, &info)?);
        }
        if state != dsErrorFree {
            return Err(CodecError::Decode { pts, state });
        }
        Ok(())
    }

    /// Drains every picture still held for reordering (end of segment).
    pub fn flush(&mut self, out: &mut dyn FnMut(Frame)) -> Result<(), CodecError> {
        let mut remaining: i32 = 0;
        // SAFETY: as in `decode`; no option is set through the raw API.
        let raw = unsafe { self.inner.raw_api() };
        // SAFETY: GetOption(NUM_OF_FRAMES_REMAINING_IN_BUFFER) writes one int to the pointer.
        unsafe { raw.get_option(DECODER_OPTION_NUM_OF_FRAMES_REMAINING_IN_BUFFER, (&raw mut remaining).cast()) };
        for _ in 0..remaining.max(0) {
            let mut dst = [std::ptr::null_mut::<u8>(); 3];
            let mut info = SBufferInfo::default();
            // SAFETY: FlushFrame writes the three plane pointers and `info`, both live locals.
            unsafe { raw.flush_frame(dst.as_mut_ptr(), &mut info) };
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
