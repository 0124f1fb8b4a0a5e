//! Which CPU encoder makes the renditions: `--cpu-encoder auto|x264|openh264`.
//!
//! OpenH264 is built into every zerohop; x264 is used where the machine has libx264 build 164
//! (loaded at run time, [`super::x264::sys`]). `auto` takes x264 when it loads and says why
//! when it does not. The binary resolves the choice once at start-up and makes it the
//! process's default ([`CpuEncoder::set_process_default`]), which every session opened without
//! naming an encoder takes (the control plane's, the GPU sessions' host encoders); tests name
//! theirs.

use std::sync::OnceLock;

use super::x264::sys::{self, LoadError, LoadFailure};

/// x264's speed/quality preset (`x264 --preset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum X264Preset {
    Ultrafast,
    #[default]
    Superfast,
    Veryfast,
    Faster,
    Fast,
    Medium,
    Slow,
    Slower,
    Veryslow,
}

impl X264Preset {
    pub const ALL: [X264Preset; 9] = [
        X264Preset::Ultrafast,
        X264Preset::Superfast,
        X264Preset::Veryfast,
        X264Preset::Faster,
        X264Preset::Fast,
        X264Preset::Medium,
        X264Preset::Slow,
        X264Preset::Slower,
        X264Preset::Veryslow,
    ];

    /// x264's name of the preset.
    pub fn name(self) -> &'static str {
        match self {
            X264Preset::Ultrafast => "ultrafast",
            X264Preset::Superfast => "superfast",
            X264Preset::Veryfast => "veryfast",
            X264Preset::Faster => "faster",
            X264Preset::Fast => "fast",
            X264Preset::Medium => "medium",
            X264Preset::Slow => "slow",
            X264Preset::Slower => "slower",
            X264Preset::Veryslow => "veryslow",
        }
    }
}

/// The CPU encoder a rendition is encoded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuEncoder {
    /// OpenH264 (built in): Constrained Baseline.
    #[default]
    OpenH264,
    /// libx264 (loaded at run time): High profile at `preset`.
    X264 { preset: X264Preset },
}

static PROCESS_DEFAULT: OnceLock<CpuEncoder> = OnceLock::new();

impl CpuEncoder {
    /// Its name in logs and reports: `openh264`, `x264 (superfast)`.
    pub fn name(self) -> String {
        match self {
            CpuEncoder::OpenH264 => "openh264".into(),
            CpuEncoder::X264 { preset } => format!("x264 ({})", preset.name()),
        }
    }

    /// Makes `self` the encoder of sessions that do not name one; the first call wins (the
    /// binary's, at start-up). Returns whether this call set it.
    pub fn set_process_default(self) -> bool {
        PROCESS_DEFAULT.set(self).is_ok()
    }

    /// The binary's choice, or OpenH264 where none was made (libraries, tests).
    pub fn process_default() -> CpuEncoder {
        PROCESS_DEFAULT.get().copied().unwrap_or_default()
    }
}

/// What `--cpu-encoder` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuEncoderChoice {
    /// x264 when libx264 build 164 loads, else OpenH264.
    #[default]
    Auto,
    X264,
    OpenH264,
}

/// The encoder a choice came to, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEncoder {
    pub encoder: CpuEncoder,
    pub why: String,
}

/// `--cpu-encoder x264` on a machine where libx264 does not load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--cpu-encoder x264: {0}. Install libx264 build {build} (Debian/Ubuntu: apt-get install libx264-164), \
     point ZEROHOP_X264_LIB at it, or write --cpu-encoder openh264",
    build = sys::X264_BUILD
)]
pub struct X264Unavailable(pub LoadError);

impl CpuEncoderChoice {
    /// The encoder this choice comes to on this machine (opens the process's libx264).
    pub fn resolve(self, preset: X264Preset) -> Result<ResolvedEncoder, X264Unavailable> {
        let lib = match self {
            CpuEncoderChoice::OpenH264 => Err(None),
            _ => sys::library().map_err(Some),
        };
        self.resolve_with(preset, lib.map(|l| l.name.as_str()))
    }

    /// As [`resolve`](Self::resolve), given what opening libx264 gave: its name, or why not
    /// (`None`: not tried).
    pub fn resolve_with(
        self,
        preset: X264Preset,
        lib: Result<&str, Option<LoadError>>,
    ) -> Result<ResolvedEncoder, X264Unavailable> {
        let x264 = CpuEncoder::X264 { preset };
        let build = sys::X264_BUILD;
        match (self, lib) {
            (CpuEncoderChoice::OpenH264, _) => {
                Ok(ResolvedEncoder { encoder: CpuEncoder::OpenH264, why: "--cpu-encoder openh264".into() })
            }
            (_, Ok(name)) => Ok(ResolvedEncoder {
                encoder: x264,
                why: format!(
                    "{}: {name} (build {build}) loaded; x264 is GPL-2.0+, --cpu-encoder openh264 opts out",
                    if self == CpuEncoderChoice::Auto { "--cpu-encoder auto" } else { "--cpu-encoder x264" }
                ),
            }),
            (CpuEncoderChoice::X264, Err(e)) => {
                Err(X264Unavailable(e.unwrap_or_else(|| {
                    LoadError::new(&sys::library_name(), LoadFailure::NotFound("not tried".into()))
                })))
            }
            (CpuEncoderChoice::Auto, Err(e)) => Ok(ResolvedEncoder {
                encoder: CpuEncoder::OpenH264,
                why: format!(
                    "--cpu-encoder auto: libx264 not usable ({}); apt-get install libx264-164 to encode with x264",
                    e.map_or_else(|| "not tried".to_string(), |e| e.to_string())
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn absent() -> LoadError {
        sys::Library::open("/nonexistent/libx264.so.164").expect_err("no such file")
    }

    #[test]
    fn auto_falls_back_to_openh264_saying_why() {
        let r = CpuEncoderChoice::Auto.resolve_with(X264Preset::Superfast, Err(Some(absent()))).expect("auto");
        assert_eq!(r.encoder, CpuEncoder::OpenH264);
        assert!(r.why.contains("/nonexistent/libx264.so.164") && r.why.contains("libx264-164"), "{}", r.why);
    }

    #[test]
    fn explicit_x264_without_the_library_says_what_to_install_or_write() {
        let e = CpuEncoderChoice::X264.resolve_with(X264Preset::Fast, Err(Some(absent()))).expect_err("absent");
        let m = e.to_string();
        assert!(m.contains("apt-get install libx264-164") && m.contains("--cpu-encoder openh264"), "{m}");
        assert!(m.contains("/nonexistent/libx264.so.164"), "{m}");
    }

    #[test]
    fn a_library_that_loads_is_taken_by_auto_and_x264() {
        for choice in [CpuEncoderChoice::Auto, CpuEncoderChoice::X264] {
            let r = choice.resolve_with(X264Preset::Veryfast, Ok("libx264.so.164")).expect("loads");
            assert_eq!(r.encoder, CpuEncoder::X264 { preset: X264Preset::Veryfast });
            assert!(r.why.contains("GPL"), "{}", r.why);
        }
        let r = CpuEncoderChoice::OpenH264.resolve_with(X264Preset::Fast, Ok("libx264.so.164")).expect("openh264");
        assert_eq!(r.encoder, CpuEncoder::OpenH264);
    }

    #[test]
    fn unset_process_default_is_openh264() {
        // Tests never set it: sessions that name no encoder get OpenH264.
        assert_eq!(CpuEncoder::process_default(), CpuEncoder::OpenH264);
    }
}
