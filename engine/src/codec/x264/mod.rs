//! H.264 encoding with libx264, opened at run time ([`sys`]) when the machine has it.
//!
//! Configured for live segments as ffmpeg's `-tune zerolatency -bf 0` is: no B-frames, no
//! lookahead, no frame delay (each picture in gives its access unit out), CBR held by VBV at
//! the rung's bitrate with a one-second buffer. Keyframes are the caller's, as with OpenH264:
//! x264's own (`keyint`, scene cuts) are off, and a picture the caller marks is sent as an IDR,
//! so IDRs fall on the shared keyframe grid of every rendition. Each access unit is Annex B,
//! with SPS and PPS before every IDR (the muxer adds the AUD).
//!
//! Rate control budgets each picture as bitrate / frame rate. x264 could follow the PTS
//! instead (`force-cfr` off), but then it holds every picture back until the next one arrives
//! (to know its duration): a frame of latency. And `x264_encoder_reconfig` does not take a
//! new frame rate (measured: a 30 fps encoder told 60 keeps 2x the bitrate). So, as with
//! OpenH264, the encoder keeps the rate it was opened with and a new rate reaches rate control
//! as a bitrate (and VBV rate) scaled to the same bits per picture, which reconfig does take
//! (the VBV buffer keeps its size in bits):
//! [`X264Encoder::set_frame_rate`], in place, no IDR. Where the picture is an IDR anyway (a
//! segment's first, whose SPS declared a new rate), [`super::ensure`] opens a new encoder
//! instead: x264's rate control carries the old rate's history across a reconfig.
//!
//! x264 is GPL-2.0-or-later; a process that loads it is a work based on it (doc/performance.md, Licence).

pub mod sys;

use std::ffi::{CString, c_int};
use std::ptr::NonNull;

use sys::{Library, X264Nal, X264Param, X264Picture, X264T};

use super::{CodecError, EncodedFrame, EncoderSettings, X264Preset};
use crate::frame::Frame;

/// Seconds of the VBV buffer (as the ffmpeg comparison's `-bufsize` equal to `-maxrate`).
const VBV_SECONDS: f64 = 1.0;
/// How full the VBV buffer starts (x264's default is 0.9). A segment is about 2 s and the
/// first one of a stream may spend what the buffer starts with: at 0.9 that is 10-20% over
/// the bitrate on the 2 s grain fixtures (ffmpeg/libx264 with the same settings: 1.14x at
/// 25 fps); at 0.5 it is within the 10% every rung is held to.
const VBV_INIT: &str = "0.5";

/// An x264 encoder for one rendition.
pub struct X264Encoder {
    lib: &'static Library,
    enc: NonNull<X264T>,
    param: Box<X264Param>,
    settings: EncoderSettings,
    preset: X264Preset,
    /// The frame rate x264 was opened with (and keeps).
    opened_fps: f64,
}

// SAFETY: an x264_t has no thread affinity (x264's own threads are internal); this owner is
// used through `&mut self` only, so one thread at a time calls into it.
unsafe impl Send for X264Encoder {}

impl std::fmt::Debug for X264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "X264Encoder({:?}, {})", self.settings, self.preset.name())
    }
}

fn init_error(call: &'static str, detail: impl Into<String>) -> CodecError {
    CodecError::Init { call, detail: detail.into() }
}

/// `fps` as x264 takes it, `num/den`: NTSC rates exactly (30000/1001), others in thousandths.
fn fps_fraction(fps: f64) -> (u32, u32) {
    let fps = if fps.is_finite() && fps > 0.0 { fps } else { 30.0 };
    let ntsc = (fps * 1.001).round();
    if ntsc >= 1.0 && ((ntsc * 1000.0 / 1001.0) - fps).abs() < 1e-3 && (fps - fps.round()).abs() > 1e-3 {
        return ((ntsc as u32) * 1000, 1001);
    }
    (((fps * 1000.0).round() as u32).max(1), 1000)
}

/// Sets option `name` to `value` with `x264_param_parse`.
fn parse(lib: &Library, p: &mut X264Param, name: &str, value: &str) -> Result<(), CodecError> {
    let (n, v) = (CString::new(name).expect("no NUL"), CString::new(value).expect("no NUL"));
    // SAFETY: `p` was filled by x264_param_default_preset; both strings are NUL-terminated and
    // outlive the call; x264 copies what it keeps (none of the options set here allocate).
    let rc = unsafe { (lib.param_parse)(&raw mut *p, n.as_ptr(), v.as_ptr()) };
    if rc != 0 {
        return Err(init_error("x264_param_parse", format!("{name}={value}: status {rc}")));
    }
    Ok(())
}

/// The kbit/s x264 is told for `bitrate` b/s at `fps` when it was opened at `opened_fps`: the
/// same bits per picture.
fn told_kbps(bitrate: u32, fps: f64, opened_fps: f64) -> f64 {
    let fps = if fps.is_finite() && fps > 0.0 { fps } else { opened_fps };
    (f64::from(bitrate) * opened_fps / fps / 1000.0).round().max(1.0)
}

/// Sets bitrate and VBV maximum rate to `told_kbps`, and the VBV buffer to [`VBV_SECONDS`] of
/// `bitrate`. The buffer is not scaled with the rate: its size is bits, and x264 fills it by
/// the told rate per its own (opening) frame rate, which is the real rate per real picture.
fn set_rate(lib: &Library, p: &mut X264Param, told_kbps: f64, bitrate: u32) -> Result<(), CodecError> {
    parse(lib, p, "bitrate", &format!("{told_kbps}"))?;
    parse(lib, p, "vbv-maxrate", &format!("{told_kbps}"))?;
    let buffer = (f64::from(bitrate) / 1000.0 * VBV_SECONDS).round().max(1.0);
    parse(lib, p, "vbv-bufsize", &format!("{buffer}"))
}

/// The parameters of `s` at `preset`.
fn configure(lib: &Library, s: &EncoderSettings, preset: X264Preset) -> Result<Box<X264Param>, CodecError> {
    let mut p = X264Param::zeroed();
    let name = CString::new(preset.name()).expect("no NUL");
    // SAFETY: `p` is a buffer larger and more aligned than build 164's x264_param_t (sys's
    // layout test); the strings are NUL-terminated.
    let rc = unsafe { (lib.param_default_preset)(&raw mut *p, name.as_ptr(), c"zerolatency".as_ptr()) };
    if rc != 0 {
        return Err(init_error("x264_param_default_preset", format!("{} zerolatency: status {rc}", preset.name())));
    }
    p.set_picture(s.width, s.height);
    let (num, den) = fps_fraction(s.fps);
    let options = [
        ("log", "0".to_string()), // errors only
        ("threads", s.threads.max(1).to_string()),
        ("fps", format!("{num}/{den}")),
        ("keyint", "infinite".into()),
        ("scenecut", "0".into()),
        ("bframes", "0".into()),
        ("rc-lookahead", "0".into()),
        ("sync-lookahead", "0".into()),
        ("annexb", "1".into()),
        ("repeat-headers", "1".into()),
        ("aud", "0".into()),
    ];
    for (name, value) in &options {
        parse(lib, &mut p, name, value)?;
    }
    parse(lib, &mut p, "vbv-init", VBV_INIT)?;
    set_rate(lib, &mut p, told_kbps(s.bitrate, s.fps, s.fps), s.bitrate)?;
    // SAFETY: as for default_preset; "high" is NUL-terminated.
    let rc = unsafe { (lib.param_apply_profile)(&raw mut *p, c"high".as_ptr()) };
    if rc != 0 {
        return Err(init_error("x264_param_apply_profile", format!("high: status {rc}")));
    }
    Ok(p)
}

impl X264Encoder {
    /// Opens an encoder with `settings` from the process's libx264 ([`sys::library`]).
    pub fn new(settings: EncoderSettings, preset: X264Preset) -> Result<X264Encoder, CodecError> {
        let lib = sys::library().map_err(|e| init_error("dlopen(libx264)", e.to_string()))?;
        let mut param = configure(lib, &settings, preset)?;
        // SAFETY: `param` was filled by x264_param_default_preset and x264_param_parse; x264
        // copies it into the encoder.
        let enc = unsafe { (lib.encoder_open)(&raw mut *param) };
        let enc = NonNull::new(enc).ok_or_else(|| {
            init_error(
                "x264_encoder_open_164",
                format!("refused {}x{} at {} b/s (x264 logged why)", settings.width, settings.height, settings.bitrate),
            )
        })?;
        Ok(X264Encoder { lib, enc, param, settings, preset, opened_fps: settings.fps })
    }

    pub fn settings(&self) -> &EncoderSettings {
        &self.settings
    }

    /// Whether `fps` differs from the rate this encoder was opened at (whatever it was retuned
    /// to since): x264's rate control keeps the opening rate's history across a retune.
    pub fn opened_at_other_rate(&self, fps: f64) -> bool {
        super::new_rate(self.opened_fps, fps)
    }

    /// Pictures x264 holds back (0: each picture in gives its access unit out).
    pub fn delayed_frames(&self) -> i32 {
        // SAFETY: `enc` is the open encoder this owner holds.
        unsafe { (self.lib.encoder_delayed_frames)(self.enc.as_ptr()) }
    }

    /// Rate control follows `fps` from the next picture on, in place (no new encoder, no IDR):
    /// see the module documentation. Changes under a hundredth are ignored.
    pub fn set_frame_rate(&mut self, fps: f64) -> Result<(), CodecError> {
        if !super::new_rate(self.settings.fps, fps) {
            return Ok(());
        }
        set_rate(
            self.lib,
            &mut self.param,
            told_kbps(self.settings.bitrate, fps, self.opened_fps),
            self.settings.bitrate,
        )?;
        // SAFETY: `enc` is open; `param` is the one it was opened with, one option changed.
        let rc = unsafe { (self.lib.encoder_reconfig)(self.enc.as_ptr(), &raw mut *self.param) };
        if rc < 0 {
            return Err(init_error("x264_encoder_reconfig", format!("{fps} fps: status {rc}")));
        }
        self.settings.fps = fps;
        Ok(())
    }

    /// Encodes one picture of the configured size; `keyframe` forces an IDR.
    pub fn encode(&mut self, frame: &Frame, keyframe: bool) -> Result<Option<EncodedFrame>, CodecError> {
        let s = &self.settings;
        if (frame.width, frame.height) != (s.width, s.height) {
            return Err(CodecError::Encode {
                pts: frame.pts,
                detail: format!("frame is {}x{}, encoder expects {}x{}", frame.width, frame.height, s.width, s.height),
            });
        }
        let (cw, ch) = frame.chroma_size();
        assert!(
            frame.y.len() >= (frame.width * frame.height) as usize
                && frame.u.len() >= (cw * ch) as usize
                && frame.v.len() >= (cw * ch) as usize,
            "planes hold the picture"
        );
        let mut pic = std::mem::MaybeUninit::<X264Picture>::zeroed();
        let mut out = std::mem::MaybeUninit::<X264Picture>::zeroed();
        // SAFETY: x264_picture_init writes every field of the (zeroed, so already valid)
        // pictures.
        let (mut pic, mut out) = unsafe {
            (self.lib.picture_init)(pic.as_mut_ptr());
            (self.lib.picture_init)(out.as_mut_ptr());
            (pic.assume_init(), out.assume_init())
        };
        pic.img.i_csp = sys::X264_CSP_I420;
        pic.img.i_plane = 3;
        pic.img.i_stride = [frame.width as c_int, cw as c_int, cw as c_int, 0];
        // x264 reads the input planes only (it copies them into its own frame).
        pic.img.plane = [
            frame.y.as_ptr().cast_mut(),
            frame.u.as_ptr().cast_mut(),
            frame.v.as_ptr().cast_mut(),
            std::ptr::null_mut(),
        ];
        pic.i_pts = frame.pts;
        pic.i_type = if keyframe { sys::X264_TYPE_IDR } else { sys::X264_TYPE_AUTO };
        let mut nals: *mut X264Nal = std::ptr::null_mut();
        let mut n: c_int = 0;
        // SAFETY: `enc` is open; the planes are I420 of the configured size (checked above) and
        // live through the call; `nals`/`n` receive x264's array, valid until the next call.
        let size = unsafe {
            (self.lib.encoder_encode)(self.enc.as_ptr(), &raw mut nals, &raw mut n, &raw mut pic, &raw mut out)
        };
        if size < 0 {
            return Err(CodecError::Encode { pts: frame.pts, detail: format!("x264_encoder_encode: status {size}") });
        }
        if size == 0 || nals.is_null() || n <= 0 {
            return Err(CodecError::Encode {
                pts: frame.pts,
                detail: "x264 held the picture back (it is configured with no delay)".into(),
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        // SAFETY: x264 returned `n` NAL units at `nals`, each with `i_payload` bytes at
        // `p_payload`, valid until the next call on this encoder (x264.h).
        unsafe {
            for nal in std::slice::from_raw_parts(nals, n as usize) {
                data.extend_from_slice(std::slice::from_raw_parts(nal.p_payload, nal.i_payload.max(0) as usize));
            }
        }
        Ok(Some(EncodedFrame { data, pts: out.i_pts, keyframe: out.b_keyframe != 0 }))
    }
}

impl Drop for X264Encoder {
    fn drop(&mut self) {
        // SAFETY: `enc` is open and closed only here.
        unsafe { (self.lib.encoder_close)(self.enc.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_rates_are_exact_fractions() {
        assert_eq!(fps_fraction(30.0), (30_000, 1000));
        assert_eq!(fps_fraction(25.0), (25_000, 1000));
        assert_eq!(fps_fraction(30_000.0 / 1001.0), (30_000, 1001));
        assert_eq!(fps_fraction(60_000.0 / 1001.0), (60_000, 1001));
        assert_eq!(fps_fraction(24_000.0 / 1001.0), (24_000, 1001));
        assert_eq!(fps_fraction(12.5), (12_500, 1000));
        assert_eq!(fps_fraction(f64::NAN), (30_000, 1000));
    }

    #[test]
    fn a_new_rate_is_told_as_the_same_bits_per_picture() {
        assert_eq!(told_kbps(3_000_000, 30.0, 30.0), 3000.0);
        assert_eq!(told_kbps(3_000_000, 60.0, 30.0), 1500.0);
        assert_eq!(told_kbps(3_000_000, 25.0, 30.0), 3600.0);
        assert_eq!(told_kbps(3_000_000, f64::NAN, 30.0), 3000.0);
        assert_eq!(told_kbps(100, 30.0, 30.0), 1.0);
    }
}
