//! Plain statistics structs; the control plane turns them into metrics.

use std::time::Duration;

use crate::ts::DemuxStats;

/// What the engine learned about the input video.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct InputInfo {
    pub width: u32,
    pub height: u32,
    pub profile: String,
    pub level_idc: u8,
    /// Frame rate from the SPS VUI, else from PTS spacing, else 0.
    pub fps: f64,
}

/// One rendition's share of a segment.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct RenditionStats {
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// Decoded pictures offered to this rendition.
    pub frames_in: u64,
    /// Pictures encoded and muxed.
    pub frames_out: u64,
    /// Pictures dropped to reach the profile's lower frame rate.
    pub frames_dropped: u64,
    /// Pictures outside the segment's clip ([`crate::Clip`]), never offered to the cadence:
    /// `frames_in == frames_out + frames_dropped + frames_clipped` once the segment is done.
    pub frames_clipped: u64,
    pub keyframes: u64,
    /// PTS of the keyframes (extended 90 kHz timeline), to check alignment across renditions.
    pub keyframe_pts: Vec<i64>,
    pub video_bytes: u64,
    pub ts_bytes: u64,
    pub chunks: u64,
    pub copied_pes: u64,
    pub scale_time: Duration,
    pub encode_time: Duration,
    pub mux_time: Duration,
    /// From the segment's start to this rendition's first chunk handed to its sink.
    pub first_chunk_after: Option<Duration>,
}

/// The outcome of one segment.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SegmentReport {
    pub input: InputInfo,
    pub demux: DemuxStats,
    /// Video access units carrying a picture.
    pub access_units: u64,
    pub frames_decoded: u64,
    /// PTS of the first and last decoded picture (extended 90 kHz timeline).
    pub first_pts: Option<i64>,
    pub last_pts: Option<i64>,
    /// Media duration of the video: last - first PTS plus one frame.
    pub media_duration: Duration,
    pub decode_time: Duration,
    /// From the first byte pushed to the last rendition finished.
    pub wall_time: Duration,
    pub renditions: Vec<RenditionStats>,
    /// From the segment's start to its first decoded picture.
    pub first_picture_after: Option<Duration>,
    /// Host<->device bytes of this segment on an accelerated device (`None` on the CPU).
    pub device_traffic: Option<DeviceTraffic>,
}

impl SegmentReport {
    /// Transcode time divided by media duration (below 1: faster than real time).
    pub fn realtime_ratio(&self) -> f64 {
        if self.media_duration.is_zero() {
            return f64::INFINITY;
        }
        self.wall_time.as_secs_f64() / self.media_duration.as_secs_f64()
    }
}

/// Bytes that crossed between host and device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceTraffic {
    /// Compressed input handed to the decoder.
    pub bitstream_in: u64,
    /// Encoded output read back.
    pub bitstream_out: u64,
    /// Picture bytes copied host<->device: 0 on the zero-copy path.
    pub frame_bytes: u64,
}
