//! Rendition profiles and ladders: Livepeer's preset names, and a JSON form.
#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// Keyframe spacing of a rendition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gop {
    /// A keyframe every this many seconds (and always at the first frame of a segment).
    Seconds(f64),
    /// Every frame is a keyframe.
    Intra,
}

/// H.264 profile requested for a rendition. The CPU encoders write what they write whatever is
/// asked (x264 High, OpenH264 Constrained Baseline); the CUDA backend honours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CodecProfile {
    #[default]
    Baseline,
    Main,
    High,
}

/// One rung of a ladder.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    /// The box the picture is fitted into (aspect ratio kept, never upscaled).
    pub width: u32,
    pub height: u32,
    /// Target bitrate, bits per second.
    pub bitrate: u32,
    /// Output frame rate as `fps / fps_den`; `fps == 0` keeps the input's rate.
    pub fps: u32,
    pub fps_den: u32,
    pub gop: Gop,
    pub codec_profile: CodecProfile,
}

/// Errors of profile names, ladders and JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown profile preset {name:?}; known presets: {}", PRESET_NAMES.join(", "))]
    UnknownPreset { name: String },
    #[error("invalid profile JSON: {0}")]
    Json(String),
    #[error("profile {name:?}: {what}")]
    Invalid { name: String, what: String },
    #[error("the ladder is empty")]
    EmptyLadder,
    #[error("the ladder has {0} renditions; at most {MAX_RENDITIONS} are allowed")]
    TooManyRenditions(usize),
    #[error("two renditions are named {0:?} (names are compared ignoring case); names must be unique")]
    DuplicateName(String),
}

pub const MAX_RENDITIONS: usize = 16;
/// Default GOP of presets, seconds.
pub const PRESET_GOP_SECONDS: f64 = 2.0;

/// (name, width, height, kbps, fps): Livepeer's presets (go-livepeer `ffmpeg/videoprofile.go`).
const PRESETS: &[(&str, u32, u32, u32, u32)] = &[
    ("P720p60fps16x9", 1280, 720, 6000, 60),
    ("P720p30fps16x9", 1280, 720, 4000, 30),
    ("P720p25fps16x9", 1280, 720, 3500, 25),
    ("P720p30fps4x3", 960, 720, 3500, 30),
    ("P576p30fps16x9", 1024, 576, 1500, 30),
    ("P576p25fps16x9", 1024, 576, 1500, 25),
    ("P360p30fps16x9", 640, 360, 1200, 30),
    ("P360p25fps16x9", 640, 360, 1000, 25),
    ("P360p30fps4x3", 480, 360, 1000, 30),
    ("P240p30fps16x9", 426, 240, 600, 30),
    ("P240p25fps16x9", 426, 240, 600, 25),
    ("P240p30fps4x3", 320, 240, 600, 30),
    ("P144p30fps16x9", 256, 144, 400, 30),
    ("P144p25fps16x9", 256, 144, 400, 25),
];

/// Every preset name, in table order.
pub const PRESET_NAMES: &[&str] = &[
    "P720p60fps16x9",
    "P720p30fps16x9",
    "P720p25fps16x9",
    "P720p30fps4x3",
    "P576p30fps16x9",
    "P576p25fps16x9",
    "P360p30fps16x9",
    "P360p25fps16x9",
    "P360p30fps4x3",
    "P240p30fps16x9",
    "P240p25fps16x9",
    "P240p30fps4x3",
    "P144p30fps16x9",
    "P144p25fps16x9",
];

impl Profile {
    /// A preset by its Livepeer name.
    pub fn preset(name: &str) -> Result<Profile, ProfileError> {
        let &(n, width, height, kbps, fps) = PRESETS
            .iter()
            .find(|p| p.0.eq_ignore_ascii_case(name))
            .ok_or_else(|| ProfileError::UnknownPreset { name: name.to_string() })?;
        Ok(Profile {
            name: n.to_string(),
            width,
            height,
            bitrate: kbps * 1000,
            fps,
            fps_den: 1,
            gop: Gop::Seconds(PRESET_GOP_SECONDS),
            codec_profile: CodecProfile::Baseline,
        })
    }

    /// Every preset, in table order (for doc/cli.md and `--help`).
    pub fn presets() -> Vec<Profile> {
        PRESET_NAMES.iter().filter_map(|n| Profile::preset(n).ok()).collect()
    }

    fn validate(self) -> Result<Profile, ProfileError> {
        let bad = |what: String| Err(ProfileError::Invalid { name: self.name.clone(), what });
        if self.name.is_empty()
            || self.name.len() > 64
            || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            || self.name.chars().all(|c| c == '.')
        {
            return bad("name must be 1-64 characters of A-Z a-z 0-9 _ - . and not only dots (it names files)".into());
        }
        if !(16..=4096).contains(&self.width) || !(16..=2304).contains(&self.height) {
            return bad(format!("size {}x{} is outside 16x16 .. 4096x2304", self.width, self.height));
        }
        if !(10_000..=100_000_000).contains(&self.bitrate) {
            return bad(format!("bitrate {} bps is outside 10 kbps .. 100 Mbps", self.bitrate));
        }
        // In u64: 240 x a large denominator overflows u32 (found by the profile_json fuzz target).
        if self.fps_den == 0 || u64::from(self.fps) > 240 * u64::from(self.fps_den) {
            return bad(format!("frame rate {}/{} is not in 0 (keep input) .. 240", self.fps, self.fps_den));
        }
        if let Gop::Seconds(s) = self.gop
            && !(s.is_finite() && (0.1..=60.0).contains(&s))
        {
            return bad(format!("gop {s} s is outside 0.1 .. 60 s"));
        }
        Ok(self)
    }

    /// The output size for an input of `src_w` x `src_h`: the source's aspect ratio fitted inside
    /// the profile's box (never larger than the source), each side rounded to the nearest even size.
    pub fn output_size(&self, src_w: u32, src_h: u32) -> (u32, u32) {
        let (src_w, src_h) = (src_w.max(1), src_h.max(1));
        let (bw, bh) = (self.width.min(src_w), self.height.min(src_h));
        // One factor for both axes: the tighter of the two box constraints.
        let scale = (f64::from(bw) / f64::from(src_w)).min(f64::from(bh) / f64::from(src_h));
        // Nearest even size, never past the (even) box.
        let even = |exact: f64, bound: u32| (((exact / 2.0).round() as u32) * 2).min(bound & !1).max(2);
        (even(f64::from(src_w) * scale, bw), even(f64::from(src_h) * scale, bh))
    }

    /// Output frame rate, or `None` to keep the input's.
    pub fn frame_rate(&self) -> Option<f64> {
        (self.fps > 0).then(|| f64::from(self.fps) / f64::from(self.fps_den))
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}x{} box, {} kbps", self.name, self.width, self.height, self.bitrate / 1000)?;
        match self.frame_rate() {
            Some(r) => write!(f, ", {r:.3} fps")?,
            None => write!(f, ", source fps")?,
        }
        match self.gop {
            Gop::Seconds(s) => write!(f, ", GOP {s} s)"),
            Gop::Intra => write!(f, ", all-intra)"),
        }
    }
}

/// The renditions to produce from each segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Ladder {
    profiles: Vec<Profile>,
}

impl Ladder {
    pub fn new(profiles: Vec<Profile>) -> Result<Ladder, ProfileError> {
        if profiles.is_empty() {
            return Err(ProfileError::EmptyLadder);
        }
        if profiles.len() > MAX_RENDITIONS {
            return Err(ProfileError::TooManyRenditions(profiles.len()));
        }
        let mut profiles = profiles.into_iter().map(Profile::validate).collect::<Result<Vec<_>, _>>()?;
        for (i, p) in profiles.iter().enumerate() {
            // Names become file names, and file systems that ignore case would merge two.
            if profiles[..i].iter().any(|q| q.name.eq_ignore_ascii_case(&p.name)) {
                return Err(ProfileError::DuplicateName(p.name.clone()));
            }
        }
        profiles.shrink_to_fit();
        Ok(Ladder { profiles })
    }

    /// The common network ladder: 720p 3 Mbps / 480p 1.6 Mbps / 360p 800 kbps / 240p 250 kbps,
    /// 1 s GOP, source frame rate.
    pub fn default_ladder() -> Ladder {
        let rung = |name: &str, width: u32, height: u32, kbps: u32| Profile {
            name: name.to_string(),
            width,
            height,
            bitrate: kbps * 1000,
            fps: 0,
            fps_den: 1,
            gop: Gop::Seconds(1.0),
            codec_profile: CodecProfile::Baseline,
        };
        Ladder {
            profiles: vec![
                rung("720p", 1280, 720, 3000),
                rung("480p", 854, 480, 1600),
                rung("360p", 640, 360, 800),
                rung("240p", 426, 240, 250),
            ],
        }
    }

    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    /// The ladder as JSON in the form [`Ladder::from_json`] reads (round-trips).
    pub fn to_json(&self) -> String {
        let v: Vec<serde_json::Value> = self
            .profiles
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name, "width": p.width, "height": p.height, "bitrate": p.bitrate,
                    "fps": p.fps, "fpsDen": p.fps_den,
                    "gop": match p.gop { Gop::Intra => serde_json::json!("intra"), Gop::Seconds(s) => serde_json::json!(s) },
                    "profile": match p.codec_profile {
                        CodecProfile::Baseline => "H264Baseline", CodecProfile::Main => "H264Main", CodecProfile::High => "H264High",
                    },
                })
            })
            .collect();
        serde_json::Value::Array(v).to_string()
    }

    /// Parses a JSON profile array (or `{"profiles": [...]}`), in Livepeer's field names:
    /// `{name, width, height, bitrate, fps, fpsDen, gop, profile}`. `bitrate` is bits/s as a
    /// number or a string with a k/M suffix; `gop` is seconds as a number or string, or "intra".
    pub fn from_json(json: &str) -> Result<Ladder, ProfileError> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Doc {
            List(Vec<JsonProfile>),
            Wrapped { profiles: Vec<JsonProfile> },
        }
        let doc: Doc = serde_json::from_str(json).map_err(|e| ProfileError::Json(e.to_string()))?;
        let list = match doc {
            Doc::List(l) | Doc::Wrapped { profiles: l } => l,
        };
        Ladder::new(list.into_iter().map(JsonProfile::into_profile).collect::<Result<_, _>>()?)
    }
}

impl FromStr for Ladder {
    type Err = ProfileError;

    /// A comma-separated list of preset names, or JSON (starting with `[` or `{`).
    fn from_str(s: &str) -> Result<Ladder, ProfileError> {
        let s = s.trim();
        if s.starts_with('[') || s.starts_with('{') {
            return Ladder::from_json(s);
        }
        Ladder::new(
            s.split(',').map(str::trim).filter(|n| !n.is_empty()).map(Profile::preset).collect::<Result<_, _>>()?,
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonProfile {
    name: String,
    width: u32,
    height: u32,
    bitrate: serde_json::Value,
    #[serde(default)]
    fps: u32,
    #[serde(default, rename = "fpsDen")]
    fps_den: Option<u32>,
    #[serde(default)]
    gop: Option<serde_json::Value>,
    #[serde(default)]
    profile: Option<String>,
}

impl JsonProfile {
    fn into_profile(self) -> Result<Profile, ProfileError> {
        let name = self.name.clone();
        let invalid = |what: String| ProfileError::Invalid { name: name.clone(), what };
        let bitrate = match &self.bitrate {
            serde_json::Value::Number(n) => n.as_u64().filter(|&b| b <= u64::from(u32::MAX)).map(|b| b as u32),
            serde_json::Value::String(s) => parse_bitrate(s),
            _ => None,
        }
        .ok_or_else(|| {
            invalid(format!("bitrate {} is not bits/s (a number, or a string like \"800k\")", self.bitrate))
        })?;
        let gop = match &self.gop {
            None | Some(serde_json::Value::Null) => Gop::Seconds(PRESET_GOP_SECONDS),
            Some(serde_json::Value::Number(n)) => Gop::Seconds(n.as_f64().unwrap_or(f64::NAN)),
            Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("intra") => Gop::Intra,
            Some(serde_json::Value::String(s)) => Gop::Seconds(
                s.trim_end_matches('s')
                    .parse::<f64>()
                    .map_err(|_| invalid(format!("gop {s:?} is not seconds or \"intra\"")))?,
            ),
            Some(other) => return Err(invalid(format!("gop {other} is not seconds or \"intra\""))),
        };
        let codec_profile = match self.profile.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("h264baseline") | Some("baseline") | Some("h264constrainedbaseline") => {
                CodecProfile::Baseline
            }
            Some("h264main") | Some("main") => CodecProfile::Main,
            Some("h264high") | Some("high") => CodecProfile::High,
            Some(p) => return Err(invalid(format!("profile {p:?} is not H264Baseline, H264Main or H264High"))),
        };
        Ok(Profile {
            name: self.name,
            width: self.width,
            height: self.height,
            bitrate,
            fps: self.fps,
            fps_den: self.fps_den.unwrap_or(1),
            gop,
            codec_profile,
        })
    }
}

fn parse_bitrate(s: &str) -> Option<u32> {
    let s = s.trim();
    let (num, mul) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1e3),
        'm' | 'M' => (&s[..s.len() - 1], 1e6),
        _ => (s, 1.0),
    };
    let v = num.trim().parse::<f64>().ok()? * mul;
    (v.is_finite() && v >= 0.0 && v <= f64::from(u32::MAX)).then_some(v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz target's find: a large frame-rate denominator overflowed the range check (a
    /// panic in debug builds, a wrong verdict in release); 30000/88881001 fps is a valid, tiny
    /// rate that survives its own JSON form.
    #[test]
    fn a_large_frame_rate_denominator_is_checked_without_overflow() {
        let json =
            r#"[{"name":"a","width":854,"height":480,"bitrate":"1.6M","fps":30000,"fpsDen":88881001,"gop":"1.5"}]"#;
        let l: Ladder = json.parse().expect("a valid ladder");
        assert_eq!(Ladder::from_json(&l.to_json()).expect("its own JSON").to_json(), l.to_json());
        let too_fast = r#"[{"name":"a","width":854,"height":480,"bitrate":"1.6M","fps":4294967295,"fpsDen":17895697}]"#;
        assert!(too_fast.parse::<Ladder>().is_err(), "240.000001 fps is refused");
    }

    #[test]
    fn presets_parse_and_fit() {
        let l: Ladder = "P720p30fps16x9, P360p30fps16x9".parse().expect("presets");
        assert_eq!(l.profiles()[0].bitrate, 4_000_000);
        assert_eq!(l.profiles()[0].output_size(1920, 1080), (1280, 720));
        // 4:3 input in a 16:9 box keeps its aspect ratio.
        assert_eq!(l.profiles()[0].output_size(640, 480), (640, 480));
        assert_eq!(l.profiles()[1].output_size(1440, 1080), (480, 360));
        assert_eq!(Profile::preset("P240p30fps16x9").expect("p").output_size(1920, 1080), (426, 240));
        assert!(matches!("P9000p".parse::<Ladder>(), Err(ProfileError::UnknownPreset { .. })));
        assert_eq!(Profile::presets().len(), PRESET_NAMES.len());
    }

    #[test]
    fn json_forms() {
        let l = Ladder::from_json(
            r#"[{"name":"a","width":854,"height":480,"bitrate":"1.6M","fps":30000,"fpsDen":1001,"gop":"1.5"},
                {"name":"b","width":640,"height":360,"bitrate":800000,"gop":"intra","profile":"H264High"}]"#,
        )
        .expect("json");
        assert_eq!(l.profiles()[0].bitrate, 1_600_000);
        assert_eq!(l.profiles()[0].gop, Gop::Seconds(1.5));
        assert!((l.profiles()[0].frame_rate().expect("fps") - 29.97).abs() < 0.01);
        assert_eq!(l.profiles()[1].gop, Gop::Intra);
        assert!(Ladder::from_json(r#"{"profiles":[{"name":"x","width":10,"height":480,"bitrate":1}]}"#).is_err());
        assert!(Ladder::from_json("[]").is_err());
        assert_eq!(Ladder::from_json(&l.to_json()).expect("round trip"), l);
        let d = Ladder::default_ladder();
        assert_eq!(Ladder::from_json(&d.to_json()).expect("round trip"), d);
        assert!(Ladder::from_json(r#"[{"name":"a","width":640,"height":360,"bitrate":"fast"}]"#).is_err());
        // Names become file names: none of only dots, none that differ only in case.
        let named = |n: &str| format!(r#"{{"name":"{n}","width":640,"height":360,"bitrate":800000}}"#);
        for bad in ["..", ".", "a/b"] {
            assert!(Ladder::from_json(&format!("[{}]", named(bad))).is_err(), "{bad}");
        }
        let twins = Ladder::from_json(&format!("[{},{}]", named("hd"), named("HD")));
        assert!(matches!(twins, Err(ProfileError::DuplicateName(_))), "{twins:?}");
        assert!(Ladder::from_json(&format!("[{}]", named("v1.low"))).is_ok());
    }
}
