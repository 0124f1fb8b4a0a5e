//! What an NVENC session is opened with: the preset and one rendition's settings.

use nvidia_video_codec_sdk::sys::nvEncodeAPI as sys;
use sys::GUID;

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
    pub(super) fn guid(self) -> GUID {
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
    /// Pictures kept in flight after NVENC said they are ready, before their bitstream is
    /// locked (NvEncoder's output delay): the encoder works on them while the caller submits
    /// other rungs' pictures. 0 locks each picture as soon as it is ready.
    pub output_delay: u32,
}
