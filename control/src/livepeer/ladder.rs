//! A Livepeer ladder (`VideoProfile`s) as zerohop's, and back: what each field means on both
//! sides (go-livepeer `server/segment_rpc.go` makeFfmpegVideoProfiles, `common/util.go`
//! FFmpegProfiletoNetProfile). A field zerohop cannot honour refuses the ladder, saying which.
#![forbid(unsafe_code)]

use std::time::Duration;
use zerohop_engine::profile::{CodecProfile, PRESET_GOP_SECONDS};

use zerohop_engine::{Clip, Gop, Ladder, Profile, SegmentOptions};

use super::messages::{SegData, SegParameters, VideoProfile};

/// LPMS's `GOPIntraOnly`: every picture a keyframe.
const GOP_INTRA: i32 = -1;

/// A ladder zerohop cannot make.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LadderError {
    #[error("the segment names no renditions")]
    Empty,
    #[error("rendition {name:?}: {what}")]
    Unsupported { name: String, what: String },
    #[error("{0}")]
    Invalid(String),
}

/// zerohop's ladder for Livepeer's profiles.
pub fn from_livepeer(profiles: &[VideoProfile]) -> Result<Ladder, LadderError> {
    if profiles.is_empty() {
        return Err(LadderError::Empty);
    }
    let rungs = profiles.iter().map(rung).collect::<Result<Vec<_>, _>>()?;
    Ladder::new(rungs).map_err(|e| LadderError::Invalid(e.to_string()))
}

fn rung(p: &VideoProfile) -> Result<Profile, LadderError> {
    // go-livepeer names an unnamed profile after its size and rate.
    let name = if p.name.is_empty() { format!("net_{}x{}_{}", p.width, p.height, p.bitrate) } else { p.name.clone() };
    let no = |what: String| Err(LadderError::Unsupported { name: name.clone(), what });
    if p.format != 0 {
        return no(format!("output format {} (zerohop writes MPEG-TS, format 0, only)", p.format));
    }
    if p.encoder != 0 {
        return no(format!("output codec {} (zerohop encodes H.264, codec 0, only)", p.encoder));
    }
    // LPMS's colour depth is bits over 8 (0: 8-bit, 2: 10-bit).
    if p.color_depth != 0 || p.chroma_format != 0 {
        return no(format!(
            "{}-bit {} output (zerohop writes 8-bit 4:2:0)",
            8 + p.color_depth,
            ["4:2:0", "4:2:2", "4:4:4"].get(p.chroma_format as usize).unwrap_or(&"unknown chroma")
        ));
    }
    if p.width <= 0 || p.height <= 0 || p.bitrate <= 0 {
        return no(format!("size {}x{} at {} bit/s", p.width, p.height, p.bitrate));
    }
    let codec_profile = match p.profile {
        // The encoder's default: what zerohop's own ladders ask for.
        0 | 1 => CodecProfile::Baseline,
        2 => CodecProfile::Main,
        3 | 4 => CodecProfile::High,
        n => return no(format!("H.264 profile {n}")),
    };
    let gop = match p.gop {
        0 => Gop::Seconds(PRESET_GOP_SECONDS),
        GOP_INTRA => Gop::Intra,
        ms if ms > 0 => Gop::Seconds(f64::from(ms) / 1000.0),
        n => return no(format!("GOP {n}")),
    };
    Ok(Profile {
        name,
        width: p.width as u32,
        height: p.height as u32,
        bitrate: p.bitrate as u32,
        fps: p.fps,
        fps_den: if p.fps == 0 { 1 } else { p.fps_den.max(1) },
        gop,
        codec_profile,
    })
}

/// A segment's slice (`segment_parameters`, milliseconds from its first picture; a `to` of 0
/// is none) as the engine's options.
pub fn options(seg: &SegData) -> SegmentOptions {
    let clip = seg
        .segment_parameters
        .as_ref()
        .filter(|p| p.from > 0 || p.to > 0)
        .map(|p| Clip { from: Duration::from_millis(p.from), to: (p.to > 0).then(|| Duration::from_millis(p.to)) });
    SegmentOptions { clip, ..Default::default() }
}

/// The slice go-livepeer's `SegParameters` carries for a clip.
pub fn parameters(options: &SegmentOptions) -> Option<SegParameters> {
    options
        .clip
        .map(|c| SegParameters { from: c.from.as_millis() as u64, to: c.to.map_or(0, |t| t.as_millis() as u64) })
}

/// Livepeer's profiles for zerohop's ladder (what a zerohop orchestrator sends a go-livepeer
/// transcoder).
pub fn to_livepeer(ladder: &Ladder) -> Vec<VideoProfile> {
    ladder
        .profiles()
        .iter()
        .map(|p| VideoProfile {
            name: p.name.clone(),
            width: p.width as i32,
            height: p.height as i32,
            bitrate: p.bitrate as i32,
            fps: p.fps,
            fps_den: if p.fps == 0 { 0 } else { p.fps_den },
            profile: match p.codec_profile {
                CodecProfile::Baseline => 1,
                CodecProfile::Main => 2,
                CodecProfile::High => 3,
            },
            gop: match p.gop {
                Gop::Intra => GOP_INTRA,
                Gop::Seconds(s) => (s * 1000.0).round() as i32,
            },
            ..VideoProfile::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p240() -> VideoProfile {
        VideoProfile {
            name: "P240p30fps16x9".into(),
            width: 426,
            height: 240,
            bitrate: 600_000,
            fps: 30,
            ..Default::default()
        }
    }

    #[test]
    fn livepeers_default_profiles_become_a_ladder_and_come_back() {
        let ladder = from_livepeer(&[p240()]).expect("holds in this test");
        let r = &ladder.profiles()[0];
        assert_eq!((r.width, r.height, r.bitrate, r.fps, r.fps_den), (426, 240, 600_000, 30, 1));
        assert_eq!(r.gop, Gop::Seconds(PRESET_GOP_SECONDS));
        let back = to_livepeer(&ladder);
        assert_eq!(
            (back[0].width, back[0].bitrate, back[0].fps, back[0].gop, back[0].profile),
            (426, 600_000, 30, 2000, 1)
        );
        let again = from_livepeer(&back).expect("holds in this test");
        assert_eq!(again, ladder);
    }

    #[test]
    fn gop_milliseconds_intra_and_fractional_rates() {
        let mut p = p240();
        p.gop = 1500;
        p.fps = 30000;
        p.fps_den = 1001;
        let r = from_livepeer(&[p.clone()]).expect("holds in this test").profiles()[0].clone();
        assert_eq!((r.gop, r.fps, r.fps_den), (Gop::Seconds(1.5), 30000, 1001));
        p.gop = -1;
        assert_eq!(from_livepeer(&[p]).expect("holds in this test").profiles()[0].gop, Gop::Intra);
    }

    #[test]
    fn what_zerohop_cannot_make_is_refused_by_name() {
        type Change = fn(&mut VideoProfile);
        let cases: [(Change, &str); 5] = [
            (|p| p.format = 1, "output format 1"),
            (|p| p.encoder = 1, "output codec 1"),
            (|p| p.color_depth = 2, "10-bit"),
            (|p| p.gop = -2, "GOP -2"),
            (|p| p.width = 0, "size 0x240"),
        ];
        for (change, says) in cases {
            let mut p = p240();
            change(&mut p);
            let e = from_livepeer(&[p]).expect_err(says).to_string();
            assert!(e.contains("P240p30fps16x9") && e.contains(says), "{e}");
        }
        assert_eq!(from_livepeer(&[]), Err(LadderError::Empty));
        let unnamed = VideoProfile { name: String::new(), ..p240() };
        assert_eq!(from_livepeer(&[unnamed]).expect("holds in this test").profiles()[0].name, "net_426x240_600000");
    }

    #[test]
    fn a_slice_becomes_a_clip_and_back_and_an_empty_one_is_none() {
        let mut seg = SegData::default();
        assert_eq!(options(&seg).clip, None);
        seg.segment_parameters = Some(SegParameters { from: 0, to: 0 });
        assert_eq!(options(&seg).clip, None, "an empty slice is no clip");
        seg.segment_parameters = Some(SegParameters { from: 500, to: 0 });
        let o = options(&seg);
        assert_eq!(o.clip, Some(Clip { from: Duration::from_millis(500), to: None }));
        assert_eq!(parameters(&o), Some(SegParameters { from: 500, to: 0 }));
        seg.segment_parameters = Some(SegParameters { from: 0, to: 1200 });
        assert_eq!(options(&seg).clip.expect("holds in this test").to, Some(Duration::from_millis(1200)));
    }
}
