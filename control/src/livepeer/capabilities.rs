//! Livepeer's capability bits (go-livepeer `core/capabilities.go`): what zerohop advertises, and
//! whether a job's bits are ones it can do. Advertised honestly: segment slicing (clips, which
//! every backend makes; go-livepeer's HTTP push asks it of every segment), but no MP4 output,
//! no MPEG-7 signatures, no storage but direct, no HEVC/VP8/VP9 in or out, 8-bit 4:2:0 H.264
//! input only.
#![forbid(unsafe_code)]

use zerohop_engine::profile::CodecProfile;

use super::messages::Capabilities;

/// The go-livepeer release whose wire zerohop speaks; sent as the capabilities' `version`, which
/// a gateway's `minVersion` is compared with (semantic versions).
pub const LIVEPEER_VERSION: &str = "0.9.1";

/// A capability's number (its bit in the bit string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum Capability {
    H264 = 0,
    MpegTs = 1,
    Mp4 = 2,
    FractionalFramerates = 3,
    StorageDirect = 4,
    StorageS3 = 5,
    StorageGcs = 6,
    ProfileH264Baseline = 7,
    ProfileH264Main = 8,
    ProfileH264High = 9,
    ProfileH264ConstrainedHigh = 10,
    Gop = 11,
    AuthToken = 12,
    SceneClassification = 13,
    Mpeg7VideoSignature = 14,
    HevcDecode = 15,
    HevcEncode = 16,
    Vp8Decode = 17,
    Vp9Decode = 18,
    Vp8Encode = 19,
    Vp9Encode = 20,
    H264Decode444_8bit = 21,
    H264Decode422_8bit = 22,
    H264Decode444_10bit = 23,
    H264Decode422_10bit = 24,
    H264Decode420_10bit = 25,
    SegmentSlicing = 26,
}

impl Capability {
    /// The name go-livepeer logs for it.
    pub fn name(self) -> &'static str {
        use Capability::*;
        match self {
            H264 => "H.264",
            MpegTs => "MPEGTS",
            Mp4 => "MP4",
            FractionalFramerates => "Fractional framerates",
            StorageDirect => "Storage direct",
            StorageS3 => "Storage S3",
            StorageGcs => "Storage GCS",
            ProfileH264Baseline => "H264 Baseline profile",
            ProfileH264Main => "H264 Main profile",
            ProfileH264High => "H264 High profile",
            ProfileH264ConstrainedHigh => "H264 Constrained High profile",
            Gop => "GOP",
            AuthToken => "Auth token",
            SceneClassification => "Scene classification",
            Mpeg7VideoSignature => "MPEG7 signature",
            HevcDecode => "HEVC decode",
            HevcEncode => "HEVC encode",
            Vp8Decode => "VP8 decode",
            Vp9Decode => "VP9 decode",
            Vp8Encode => "VP8 encode",
            Vp9Encode => "VP9 encode",
            H264Decode444_8bit => "H264 Decode YUV444 8-bit",
            H264Decode422_8bit => "H264 Decode YUV422 8-bit",
            H264Decode444_10bit => "H264 Decode YUV444 10-bit",
            H264Decode422_10bit => "H264 Decode YUV422 10-bit",
            H264Decode420_10bit => "H264 Decode YUV420 10-bit",
            SegmentSlicing => "Segment slicing",
        }
    }

    const ALL: [Capability; 27] = {
        use Capability::*;
        [
            H264,
            MpegTs,
            Mp4,
            FractionalFramerates,
            StorageDirect,
            StorageS3,
            StorageGcs,
            ProfileH264Baseline,
            ProfileH264Main,
            ProfileH264High,
            ProfileH264ConstrainedHigh,
            Gop,
            AuthToken,
            SceneClassification,
            Mpeg7VideoSignature,
            HevcDecode,
            HevcEncode,
            Vp8Decode,
            Vp9Decode,
            Vp8Encode,
            Vp9Encode,
            H264Decode444_8bit,
            H264Decode422_8bit,
            H264Decode444_10bit,
            H264Decode422_10bit,
            H264Decode420_10bit,
            SegmentSlicing,
        ]
    };

    fn from_number(n: u32) -> Option<Capability> {
        Capability::ALL.get(n as usize).copied()
    }
}

/// Bit string of a set of capabilities: bit `n % 64` of word `n / 64`.
pub fn bitstring(caps: &[Capability]) -> Vec<u64> {
    let mut words: Vec<u64> = Vec::new();
    for &c in caps {
        let n = c as usize;
        if words.len() <= n / 64 {
            words.resize(n / 64 + 1, 0);
        }
        words[n / 64] |= 1 << (n % 64);
    }
    words
}

/// go-livepeer's test: every bit of `needed` is in `have` (a longer `needed` fails).
pub fn compatible(needed: &[u64], have: &[u64]) -> bool {
    needed.len() <= have.len() && needed.iter().zip(have).all(|(n, h)| n & h == *n)
}

/// The capabilities set in `needed` that `have` lacks, by name ("capability 40" for numbers
/// this build does not know), for the error a refused job gets.
pub fn missing(needed: &[u64], have: &[u64]) -> Vec<String> {
    let mut out = Vec::new();
    for (w, &bits) in needed.iter().enumerate() {
        let lack = bits & !have.get(w).copied().unwrap_or(0);
        for b in 0..64 {
            if lack & (1 << b) != 0 {
                let n = (w * 64 + b) as u32;
                out.push(Capability::from_number(n).map_or(format!("capability {n}"), |c| c.name().to_string()));
            }
        }
    }
    out
}

/// What zerohop does, given the H.264 profiles whose decoders read what its encoder writes
/// (OpenH264's Constrained Baseline is read by all four; x264's High by High alone; NVENC
/// writes what it is asked).
pub fn zerohop(profiles: &[CodecProfile]) -> Vec<Capability> {
    use Capability::*;
    let mut caps = vec![H264, MpegTs, FractionalFramerates, StorageDirect, Gop, AuthToken, SegmentSlicing];
    for p in profiles {
        caps.push(match p {
            CodecProfile::Baseline => ProfileH264Baseline,
            CodecProfile::Main => ProfileH264Main,
            CodecProfile::High => ProfileH264High,
        });
    }
    if profiles.contains(&CodecProfile::Baseline) || profiles.contains(&CodecProfile::High) {
        // Constrained High (High without B-slices): what both write (neither uses B-frames).
        caps.push(ProfileH264ConstrainedHigh);
    }
    caps.sort();
    caps.dedup();
    caps
}

/// The message a transcoder registers with, or an orchestrator answers with.
pub fn message(caps: &[Capability], capacity: u32) -> Capabilities {
    Capabilities {
        bitstring: bitstring(caps),
        mandatories: Vec::new(),
        capacities: caps.iter().map(|&c| (c as u32, capacity)).collect(),
        version: LIVEPEER_VERSION.to_string(),
        constraints: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_numbers_are_go_livepeers() {
        // Spot checks against core/capabilities.go's constants, and the table's order.
        assert_eq!(Capability::AuthToken as u32, 12);
        assert_eq!(Capability::Mpeg7VideoSignature as u32, 14);
        assert_eq!(Capability::SegmentSlicing as u32, 26);
        for (i, c) in Capability::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{c:?}");
        }
    }

    #[test]
    fn bit_strings_and_compatibility_follow_go_livepeer() {
        use Capability::*;
        assert_eq!(bitstring(&[H264, MpegTs, AuthToken]), vec![0b1_0000_0000_0011]);
        let ours = bitstring(&zerohop(&[CodecProfile::High]));
        // A gateway's job for the default ladder: H.264 in and out, MPEG-TS, auth token, GOP.
        let job = bitstring(&[H264, MpegTs, AuthToken, Gop]);
        assert!(compatible(&job, &ours));
        assert!(missing(&job, &ours).is_empty());
        // Never advertised: MP4, signatures, HEVC, 10-bit, S3.
        assert!(compatible(&bitstring(&[H264, MpegTs, AuthToken, SegmentSlicing]), &ours), "HTTP push's jobs");
        for c in [Mp4, Mpeg7VideoSignature, HevcDecode, H264Decode420_10bit, StorageS3] {
            let job = bitstring(&[H264, c]);
            assert!(!compatible(&job, &ours), "{c:?}");
            assert_eq!(missing(&job, &ours), vec![c.name().to_string()]);
        }
        assert!(!compatible(&bitstring(&[ProfileH264Baseline]), &ours), "x264 writes High");
        let openh264 = bitstring(&zerohop(&[CodecProfile::Baseline, CodecProfile::Main, CodecProfile::High]));
        assert!(compatible(&bitstring(&[ProfileH264Baseline, ProfileH264Main]), &openh264));
        // A second word, as a newer peer may send.
        assert!(!compatible(&[0, 1], &ours));
        assert_eq!(missing(&[0, 1], &ours), vec!["capability 64".to_string()]);
    }
}
