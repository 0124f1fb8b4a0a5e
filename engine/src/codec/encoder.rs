//! H.264 encoding with OpenH264 (real-time camera usage, bitrate rate control).
//!
//! Keyframes are decided by the caller (IDR at segment start, GOP by PTS) so they fall on the
//! same PTS in every rendition: the encoder's own periodic and scene-change IDRs are off.
//!
//! OpenH264's bitrate mode budgets each picture as bitrate / frame rate: the frame rate it is
//! given is the one the stream has, or a 60 fps stream gets twice its bitrate and a 25 fps one
//! 0.83x. [`H264Encoder::set_frame_rate`] follows a rate that becomes known, or changes, without
//! a new encoder (no IDR). OpenH264 takes rates of 1 to 60 only; outside that the bitrate it is
//! given is scaled by the same factor, so a picture's budget stays bitrate / fps.

use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, RateControlMode,
    SpsPpsStrategy, UsageType,
};
use openh264::formats::YUVSlices;

use super::CodecError;
use crate::frame::Frame;

/// What one encoder session is configured with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderSettings {
    pub width: u32,
    pub height: u32,
    pub bitrate: u32,
    pub fps: f64,
    /// Encoder worker threads (1: the engine runs renditions in parallel instead).
    pub threads: u16,
    /// Which encoder ([`super::Encoder::open`] opens it; [`H264Encoder`] is OpenH264's).
    pub encoder: super::CpuEncoder,
}

/// One encoded picture, Annex B.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    pub data: Vec<u8>,
    pub pts: i64,
    pub keyframe: bool,
}

/// The frame rates OpenH264 accepts (`MIN_FRAME_RATE`, `MAX_FRAME_RATE` in `wels_const.h`).
const OPENH264_FPS: (f64, f64) = (1.0, 60.0);

/// What OpenH264 is told for `bitrate` at `fps`: (bitrate, frame rate) with the same bits per
/// picture, the rate within what OpenH264 accepts.
fn rate_control(bitrate: u32, fps: f64) -> (u32, f32) {
    let fps = if fps.is_finite() && fps > 0.0 { fps } else { 30.0 };
    let clamped = fps.clamp(OPENH264_FPS.0, OPENH264_FPS.1);
    let scaled = (f64::from(bitrate) * clamped / fps).round().clamp(1.0, f64::from(i32::MAX as u32));
    (scaled as u32, clamped as f32)
}

/// An OpenH264 encoder for one rendition.
pub struct H264Encoder {
    inner: Encoder,
    settings: EncoderSettings,
    /// Whether a picture went in: OpenH264 is initialised by the first `encode`, and only then
    /// takes options.
    started: bool,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "H264Encoder({:?})", self.settings)
    }
}

impl H264Encoder {
    pub fn new(settings: EncoderSettings) -> Result<H264Encoder, CodecError> {
        let (bitrate, fps) = rate_control(settings.bitrate, settings.fps);
        let config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(bitrate))
            .max_frame_rate(FrameRate::from_hz(fps))
            .skip_frames(false)
            .scene_change_detect(false)
            .intra_frame_period(IntraFramePeriod::from_num_frames(0))
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            .complexity(Complexity::Low)
            .num_threads(settings.threads);
        let mut inner = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| CodecError::Init { call: "OpenH264 WelsCreateSVCEncoder", detail: e.to_string() })?;
        // Frame skipping is off on purpose (every input picture must come out), which makes
        // OpenH264 warn on every initialisation; keep its log at errors only.
        let mut level: i32 = openh264_sys2::WELS_LOG_ERROR;
        // SAFETY: SetOption(TRACE_LEVEL) reads one int through the pointer; the option touches
        // only logging, none of the parameters the crate relies on.
        unsafe {
            inner.raw_api().set_option(openh264_sys2::ENCODER_OPTION_TRACE_LEVEL, (&raw mut level).cast());
        }
        Ok(H264Encoder { inner, settings, started: false })
    }

    pub fn settings(&self) -> &EncoderSettings {
        &self.settings
    }

    /// Rate control follows `fps` from the next picture on; no new encoder, no IDR. A change
    /// smaller than a hundredth of a frame per second is ignored.
    pub fn set_frame_rate(&mut self, fps: f64) -> Result<(), CodecError> {
        if !super::new_rate(self.settings.fps, fps) {
            return Ok(());
        }
        if !self.started {
            // Nothing encoded yet: OpenH264 is not initialised and takes no option; a new
            // encoder costs nothing here.
            *self = H264Encoder::new(EncoderSettings { fps, ..self.settings })?;
            return Ok(());
        }
        let (old_bitrate, _) = rate_control(self.settings.bitrate, self.settings.fps);
        let (bitrate, mut rate) = rate_control(self.settings.bitrate, fps);
        // SAFETY: `raw_api` gives the encoder owned by `self.inner`, initialised by the first
        // `encode` (`started`).
        let raw = unsafe { self.inner.raw_api() };
        // SAFETY: SetOption(FRAME_RATE) reads one float through the pointer, a live local. It
        // sets the layers' input and output rates, which rate control reads at the next picture
        // (RcJudgeBitrateFpsUpdate).
        let rc = unsafe { raw.set_option(openh264_sys2::ENCODER_OPTION_FRAME_RATE, (&raw mut rate).cast()) };
        if rc != 0 {
            return Err(CodecError::Init {
                call: "OpenH264 SetOption(FRAME_RATE)",
                detail: format!("{fps} fps: status {rc}"),
            });
        }
        if bitrate != old_bitrate {
            // The crate opens the layer with its maximum equal to its target, and OpenH264
            // refuses a target above the maximum: raise the maximum first, or lower it last.
            let (first, second) = if bitrate > old_bitrate {
                (openh264_sys2::ENCODER_OPTION_MAX_BITRATE, openh264_sys2::ENCODER_OPTION_BITRATE)
            } else {
                (openh264_sys2::ENCODER_OPTION_BITRATE, openh264_sys2::ENCODER_OPTION_MAX_BITRATE)
            };
            for option in [first, second] {
                let mut info = openh264_sys2::SBitrateInfo {
                    iLayer: openh264_sys2::SPATIAL_LAYER_0,
                    iBitrate: i32::try_from(bitrate).unwrap_or(i32::MAX),
                };
                // SAFETY: SetOption(BITRATE / MAX_BITRATE) reads one SBitrateInfo through the
                // pointer, a live local.
                let rc = unsafe { raw.set_option(option, (&raw mut info).cast()) };
                if rc != 0 {
                    return Err(CodecError::Init {
                        call: "OpenH264 SetOption(BITRATE)",
                        detail: format!("{bitrate} b/s at {fps} fps: status {rc}"),
                    });
                }
            }
        }
        self.settings.fps = fps;
        Ok(())
    }

    /// Encodes one picture of the configured size; `keyframe` forces an IDR.
    pub fn encode(&mut self, frame: &Frame, keyframe: bool) -> Result<Option<EncodedFrame>, CodecError> {
        if (frame.width, frame.height) != (self.settings.width, self.settings.height) {
            return Err(CodecError::Encode {
                pts: frame.pts,
                detail: format!(
                    "frame is {}x{}, encoder expects {}x{}",
                    frame.width, frame.height, self.settings.width, self.settings.height
                ),
            });
        }
        if keyframe {
            self.inner.force_intra_frame();
        }
        let (cw, _) = frame.chroma_size();
        let yuv = YUVSlices::new(
            (&frame.y, &frame.u, &frame.v),
            (frame.width as usize, frame.height as usize),
            (frame.width as usize, cw as usize, cw as usize),
        );
        self.started = true;
        let bs = self.inner.encode(&yuv).map_err(|e| CodecError::Encode { pts: frame.pts, detail: e.to_string() })?;
        let ft = bs.frame_type();
        if matches!(ft, FrameType::Skip | FrameType::Invalid) {
            return Ok(None);
        }
        Ok(Some(EncodedFrame { data: bs.to_vec(), pts: frame.pts, keyframe: matches!(ft, FrameType::IDR) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_control_is_told_the_same_bits_per_picture_at_any_rate() {
        assert_eq!(rate_control(1_000_000, 30.0), (1_000_000, 30.0));
        assert_eq!(rate_control(1_000_000, 120.0), (500_000, 60.0));
        assert_eq!(rate_control(1_000_000, 0.5), (2_000_000, 1.0));
        assert_eq!(rate_control(1_000_000, f64::NAN), (1_000_000, 30.0));
    }

    #[test]
    fn a_rate_set_before_the_first_picture_opens_anew_and_keeps_the_size() {
        let settings = EncoderSettings {
            width: 64,
            height: 48,
            bitrate: 100_000,
            fps: 30.0,
            threads: 1,
            encoder: crate::codec::CpuEncoder::OpenH264,
        };
        let mut e = H264Encoder::new(settings).expect("encoder");
        e.set_frame_rate(50.0).expect("before the first picture");
        assert_eq!(*e.settings(), EncoderSettings { fps: 50.0, ..settings });
        let f = &crate::codec::open::tests::noise(64, 48, 1, 3)[0];
        assert!(e.encode(f, true).expect("encode").expect("picture").keyframe);
        e.set_frame_rate(50.004).expect("a change of rounding");
        assert_eq!(e.settings().fps, 50.0, "changes under a hundredth are not passed on");
    }
}
