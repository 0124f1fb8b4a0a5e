//! H.264 encoding with OpenH264 (real-time camera usage, bitrate rate control).
//!
//! Keyframes are decided by the caller (IDR at segment start, GOP by PTS) so they fall on the
//! same PTS in every rendition: the encoder's own periodic and scene-change IDRs are off.

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
}

/// One encoded picture, Annex B.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    pub data: Vec<u8>,
    pub pts: i64,
    pub keyframe: bool,
}

/// An OpenH264 encoder for one rendition.
pub struct H264Encoder {
    inner: Encoder,
    settings: EncoderSettings,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "H264Encoder({:?})", self.settings)
    }
}

impl H264Encoder {
    pub fn new(settings: EncoderSettings) -> Result<H264Encoder, CodecError> {
        let config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(settings.bitrate))
            .max_frame_rate(FrameRate::from_hz(settings.fps as f32))
            .skip_frames(false)
            .scene_change_detect(false)
            .intra_frame_period(IntraFramePeriod::from_num_frames(0))
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            .complexity(Complexity::Low)
            .num_threads(settings.threads);
        let mut inner = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| CodecError::Init { call: "WelsCreateSVCEncoder", detail: e.to_string() })?;
        // Frame skipping is off on purpose (every input picture must come out), which makes
        // OpenH264 warn on every initialisation; keep its log at errors only.
        let mut level: i32 = openh264_sys2::WELS_LOG_ERROR;
        // SAFETY: SetOption(TRACE_LEVEL) reads one int through the pointer; the option touches
        // only logging, none of the parameters the crate relies on.
        unsafe {
            inner.raw_api().set_option(openh264_sys2::ENCODER_OPTION_TRACE_LEVEL, (&raw mut level).cast());
        }
        Ok(H264Encoder { inner, settings })
    }

    pub fn settings(&self) -> &EncoderSettings {
        &self.settings
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
        let bs = self.inner.encode(&yuv).map_err(|e| CodecError::Encode { pts: frame.pts, detail: e.to_string() })?;
        let ft = bs.frame_type();
        if matches!(ft, FrameType::Skip | FrameType::Invalid) {
            return Ok(None);
        }
        Ok(Some(EncodedFrame { data: bs.to_vec(), pts: frame.pts, keyframe: matches!(ft, FrameType::IDR) }))
    }
}
