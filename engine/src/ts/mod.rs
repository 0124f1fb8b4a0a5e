//! MPEG-TS (ISO/IEC 13818-1) demuxing and muxing, sans-IO.
//!
//! Neither side touches a file or a socket: the [`Demuxer`] takes bytes pushed in whatever pieces
//! they arrive in and hands out whole PES packets; the [`Muxer`] takes access units and appends
//! whole 188-byte TS packets to a caller's buffer. Packets are parsed as borrowed views
//! ([`packet::Packet`]) whose fields decode on demand.
#![forbid(unsafe_code)]

pub mod crc;
pub mod demux;
pub mod mux;
pub mod packet;

pub use demux::{DemuxError, DemuxEvent, DemuxStats, Demuxer, ElementaryStream, Pes, PesTally, ProgramInfo};
pub use mux::{AudioTrack, Muxer, MuxerConfig};
pub use packet::{PACKET_SIZE, SYNC_BYTE};

/// 90 kHz MPEG system clock ticks per second (PTS/DTS units).
pub const TICKS_PER_SECOND: u64 = 90_000;
/// PTS/DTS are 33-bit counters that wrap.
pub const TIMESTAMP_WRAP: u64 = 1 << 33;

/// Stream types of a PMT entry (ISO/IEC 13818-1 table 2-34 and common registrations).
pub mod stream_type {
    pub const MPEG1_VIDEO: u8 = 0x01;
    pub const MPEG2_VIDEO: u8 = 0x02;
    pub const MPEG1_AUDIO: u8 = 0x03;
    pub const MPEG2_AUDIO: u8 = 0x04;
    pub const PRIVATE_PES: u8 = 0x06;
    pub const AAC_ADTS: u8 = 0x0F;
    pub const MPEG4_VISUAL: u8 = 0x10;
    pub const AAC_LATM: u8 = 0x11;
    pub const H264: u8 = 0x1B;
    pub const HEVC: u8 = 0x24;
    pub const VVC: u8 = 0x33;
    pub const AC3: u8 = 0x81;
    pub const EAC3: u8 = 0x87;

    /// A human name for a stream type, for messages and `zerohop probe`.
    pub fn name(t: u8) -> &'static str {
        match t {
            MPEG1_VIDEO => "MPEG-1 video",
            MPEG2_VIDEO => "MPEG-2 video",
            MPEG1_AUDIO => "MPEG-1 audio (MP3)",
            MPEG2_AUDIO => "MPEG-2 audio",
            PRIVATE_PES => "private PES data",
            AAC_ADTS => "AAC (ADTS)",
            MPEG4_VISUAL => "MPEG-4 Part 2 video",
            AAC_LATM => "AAC (LATM)",
            H264 => "H.264/AVC",
            HEVC => "H.265/HEVC",
            VVC => "H.266/VVC",
            AC3 => "AC-3",
            EAC3 => "E-AC-3",
            _ => "unknown",
        }
    }

    /// Whether the stream type is a video coding format (whether or not zerohop decodes it).
    pub fn is_video(t: u8) -> bool {
        matches!(t, MPEG1_VIDEO | MPEG2_VIDEO | MPEG4_VISUAL | H264 | HEVC | VVC | 0x42 | 0xD1 | 0xEA)
    }
}

/// Difference `a - b` of two 33-bit timestamps, taking the wrap into account
/// (the result is in `-2^32 .. 2^32`).
pub fn ts_diff(a: u64, b: u64) -> i64 {
    let d = (a.wrapping_sub(b)) & (TIMESTAMP_WRAP - 1);
    if d >= TIMESTAMP_WRAP / 2 { d as i64 - TIMESTAMP_WRAP as i64 } else { d as i64 }
}

/// Extends 33-bit timestamps to a monotonic 64-bit timeline across wraps.
///
/// Each value is placed at the 64-bit position nearest the previous one, so a stream that
/// crosses 2^33 keeps counting up, and a B-frame slightly behind the last value stays behind it.
#[derive(Debug, Clone, Default)]
pub struct Unwrapper {
    last: Option<i64>,
}

impl Unwrapper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Places a 33-bit timestamp on the extended timeline.
    pub fn unwrap(&mut self, ts33: u64) -> i64 {
        let ts33 = ts33 & (TIMESTAMP_WRAP - 1);
        let v = match self.last {
            None => ts33 as i64,
            Some(last) => last + ts_diff(ts33, last.rem_euclid(TIMESTAMP_WRAP as i64) as u64),
        };
        self.last = Some(v);
        v
    }
}

/// Brings an extended timestamp back into 33 bits.
pub fn wrap33(ts: i64) -> u64 {
    ts.rem_euclid(TIMESTAMP_WRAP as i64) as u64
}
