//! H.264 elementary stream inspection: NAL units of an Annex B access unit, and the SPS facts
//! that decide whether the engine can transcode a stream.
#![forbid(unsafe_code)]

use h264_reader::nal::UnitType;
use h264_reader::nal::sps::{FrameMbsFlags, PicOrderCntType, SeqParameterSet};
use h264_reader::rbsp::{BitReader, decode_nal};

/// Iterates the NAL units (without start codes) of an Annex B byte stream.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = find_start(data, 0).map(|(_, next)| next);
    std::iter::from_fn(move || {
        let start = pos?;
        match find_start(data, start) {
            Some((end, next)) => {
                pos = Some(next);
                // Trailing zero bytes before a 4-byte start code belong to no NAL unit.
                let mut e = end;
                while e > start && data[e - 1] == 0 {
                    e -= 1;
                }
                Some(&data[start..e])
            }
            None => {
                pos = None;
                Some(&data[start..])
            }
        }
    })
    .filter(|n| !n.is_empty())
}

/// Position of the next `00 00 01` at or after `from`: (start of the code, first byte after it).
fn find_start(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i + 3 <= data.len() {
        if data[i + 2] > 1 {
            i += 3;
        } else if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            return Some((i, i + 3));
        } else {
            i += 1;
        }
    }
    None
}

/// What the SPS says about a stream.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SpsInfo {
    pub width: u32,
    pub height: u32,
    pub profile_idc: u8,
    pub level_idc: u8,
    pub chroma_format_idc: u32,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    pub frame_mbs_only: bool,
    pub mbaff: bool,
    /// Frames per second from the VUI timing info, when present.
    pub fps: Option<f64>,
    /// Pictures that may precede another in decoding order and follow it in output order, when
    /// the SPS says: 0 for POC type 2 (output order is decoding order) or the VUI's
    /// `max_num_reorder_frames`; `None` when it does not say.
    pub reorder_frames: Option<u32>,
}

impl SpsInfo {
    /// A profile name for people.
    pub fn profile_name(&self) -> &'static str {
        match self.profile_idc {
            66 => "Baseline",
            77 => "Main",
            88 => "Extended",
            100 => "High",
            110 => "High 10",
            122 => "High 4:2:2",
            244 => "High 4:4:4 Predictive",
            44 => "CAVLC 4:4:4 Intra",
            _ => "unknown",
        }
    }

    /// Why the CPU decoder cannot take this stream, if it cannot.
    pub fn check_supported(&self) -> Result<(), Unsupported> {
        if self.bit_depth_luma != 8 || self.bit_depth_chroma != 8 {
            return Err(Unsupported::BitDepth { luma: self.bit_depth_luma, chroma: self.bit_depth_chroma });
        }
        if self.chroma_format_idc != 1 {
            return Err(Unsupported::Chroma { chroma_format_idc: self.chroma_format_idc });
        }
        if !self.frame_mbs_only {
            return Err(Unsupported::Interlaced { mbaff: self.mbaff });
        }
        if self.width < 16 || self.height < 16 || self.width > 4096 || self.height > 2304 {
            return Err(Unsupported::Size { width: self.width, height: self.height });
        }
        Ok(())
    }
}

/// A stream the engine recognises but does not transcode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    #[error(
        "video codec is {found} (stream_type 0x{stream_type:02x}); zerohop transcodes H.264/AVC (stream_type 0x1b)"
    )]
    Codec { found: &'static str, stream_type: u8 },
    #[error("bit depth is {luma}-bit luma / {chroma}-bit chroma; zerohop supports 8-bit H.264 only")]
    BitDepth { luma: u8, chroma: u8 },
    #[error("chroma format is {} (chroma_format_idc {chroma_format_idc}); zerohop supports 4:2:0 only", chroma_name(*.chroma_format_idc))]
    Chroma { chroma_format_idc: u32 },
    #[error("the stream is interlaced ({}); zerohop supports progressive frames (frame_mbs_only_flag = 1) only", if *.mbaff { "MBAFF" } else { "field coding" })]
    Interlaced { mbaff: bool },
    #[error("picture size {width}x{height} is outside the supported 16x16 .. 4096x2304")]
    Size { width: u32, height: u32 },
}

fn chroma_name(idc: u32) -> &'static str {
    match idc {
        0 => "4:0:0 (monochrome)",
        1 => "4:2:0",
        2 => "4:2:2",
        3 => "4:4:4",
        _ => "invalid",
    }
}

/// A sequence parameter set that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid H.264 sequence parameter set: {0}")]
pub struct BadSps(pub String);

/// Parses an SPS NAL unit (with its one-byte header, emulation prevention bytes in place).
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, BadSps> {
    let rbsp = decode_nal(nal).map_err(|e| BadSps(e.to_string()))?;
    let sps = SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).map_err(|e| BadSps(format!("{e:?}")))?;
    let (width, height) = sps.pixel_dimensions().map_err(|e| BadSps(format!("{e:?}")))?;
    let (frame_mbs_only, mbaff) = match sps.frame_mbs_flags {
        FrameMbsFlags::Frames => (true, false),
        FrameMbsFlags::Fields { mb_adaptive_frame_field_flag } => (false, mb_adaptive_frame_field_flag),
    };
    Ok(SpsInfo {
        width,
        height,
        profile_idc: sps.profile_idc.into(),
        level_idc: sps.level_idc,
        chroma_format_idc: sps.chroma_info.chroma_format.to_u32(),
        bit_depth_luma: sps.chroma_info.bit_depth_luma_minus8 + 8,
        bit_depth_chroma: sps.chroma_info.bit_depth_chroma_minus8 + 8,
        frame_mbs_only,
        mbaff,
        fps: sps.fps().filter(|f| f.is_finite() && *f > 0.0 && *f <= 1000.0),
        reorder_frames: match sps.pic_order_cnt {
            PicOrderCntType::TypeTwo => Some(0),
            _ => sps
                .vui_parameters
                .as_ref()
                .and_then(|v| v.bitstream_restrictions.as_ref())
                .map(|b| b.max_num_reorder_frames),
        },
    })
}

/// Facts of one access unit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccessUnitInfo {
    /// The first SPS in the unit, parsed (Err when present but unparsable).
    pub sps: Option<Result<SpsInfo, BadSps>>,
    pub idr: bool,
    /// Carries at least one coded slice (a picture).
    pub has_picture: bool,
}

/// Looks at the NAL units of an access unit.
pub fn inspect_access_unit(au: &[u8]) -> AccessUnitInfo {
    let mut info = AccessUnitInfo::default();
    for nal in nal_units(au) {
        // H.264 table 7-1; five bits, so never out of range.
        match UnitType::for_id(nal[0] & 0x1F) {
            Ok(UnitType::SeqParameterSet) if info.sps.is_none() => info.sps = Some(parse_sps(nal)),
            Ok(UnitType::SliceLayerWithoutPartitioningIdr) => {
                info.idr = true;
                info.has_picture = true;
            }
            Ok(UnitType::SliceLayerWithoutPartitioningNonIdr) => info.has_picture = true,
            _ => {}
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_nal_units_with_3_and_4_byte_start_codes() {
        let data = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5];
        let nals: Vec<&[u8]> = nal_units(&data).collect();
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]);
    }

    /// An SPS x264 wrote: the first one in the 360p fixture (at the start of its first PES, so no
    /// TS header falls inside it).
    fn fixture_sps() -> Vec<u8> {
        let ts = include_bytes!("../../tests/fixtures/h264_360p25_baseline_noaudio.ts");
        let at = ts.windows(4).position(|w| w == [0, 0, 1, 0x67]).expect("an SPS") + 3;
        let len = ts[at..].windows(3).position(|w| w == [0, 0, 1]).expect("the unit after it");
        ts[at..at + len].to_vec()
    }

    /// Garbage gets a verdict, never a panic: an SPS that parses has values inside H.264's
    /// ranges; one that does not says why; a unit with no start code holds no SPS and no picture;
    /// every truncation of a real SPS is refused rather than read as another stream.
    #[test]
    fn garbage_gets_a_verdict_not_a_panic() {
        let real = fixture_sps();
        let info = parse_sps(&real).expect("x264's SPS");
        assert_eq!((info.width, info.height, info.bit_depth_luma, info.chroma_format_idc), (640, 360, 8, 1));
        for n in 0..64u8 {
            let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ n).collect();
            if !data.windows(3).any(|w| w == [0, 0, 1]) {
                assert_eq!(inspect_access_unit(&data), AccessUnitInfo::default(), "no start code: nothing inside");
            }
            let mut sps = vec![0x67];
            sps.extend_from_slice(&data);
            match parse_sps(&sps) {
                Ok(s) => {
                    assert!(s.width >= 16 && s.height >= 16 && s.width % 2 == 0, "{s:?}");
                    assert!((8..=14).contains(&s.bit_depth_luma) && s.chroma_format_idc <= 3, "{s:?}");
                }
                Err(BadSps(why)) => assert!(!why.is_empty(), "a refusal says why"),
            }
        }
        for cut in 1..real.len() - 1 {
            match parse_sps(&real[..cut]) {
                Err(BadSps(why)) => assert!(!why.is_empty()),
                Ok(s) => assert_eq!((s.width, s.height), (640, 360), "a truncated SPS read as another size"),
            }
        }
    }
}
