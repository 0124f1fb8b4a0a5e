//! `--cpu-encoder auto|x264|openh264` and `--x264-preset` (`EncoderArgs`), flattened into every
//! command that encodes on the CPU (transcode, combined, transcoder, bench, and the orchestrator
//! which shares the node's options). Resolved once at start-up: the choice, and why, is logged
//! and becomes the process's encoder (`CpuEncoder::set_process_default`), which the CPU
//! sessions and the host encoders of GPUs without NVENC take.

use anyhow::Result;
use clap::ValueEnum;
use zerohop_engine::codec::{CpuEncoder, CpuEncoderChoice, ResolvedEncoder, X264Preset};

/// `--cpu-encoder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum CpuEncoderArg {
    /// x264 where libx264 build 164 loads (GPL-2.0+), else OpenH264, saying why.
    #[default]
    Auto,
    /// libx264 (High profile), or refuse to start.
    X264,
    /// OpenH264, built in (Constrained Baseline).
    Openh264,
}

/// `--x264-preset`: x264's own presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum X264PresetArg {
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

impl From<X264PresetArg> for X264Preset {
    fn from(p: X264PresetArg) -> X264Preset {
        match p {
            X264PresetArg::Ultrafast => X264Preset::Ultrafast,
            X264PresetArg::Superfast => X264Preset::Superfast,
            X264PresetArg::Veryfast => X264Preset::Veryfast,
            X264PresetArg::Faster => X264Preset::Faster,
            X264PresetArg::Fast => X264Preset::Fast,
            X264PresetArg::Medium => X264Preset::Medium,
            X264PresetArg::Slow => X264Preset::Slow,
            X264PresetArg::Slower => X264Preset::Slower,
            X264PresetArg::Veryslow => X264Preset::Veryslow,
        }
    }
}

/// Which CPU encoder makes the renditions.
#[derive(Debug, Clone, clap::Args)]
pub struct EncoderArgs {
    /// CPU H.264 encoder: auto (x264 where libx264 build 164 is installed, else OpenH264,
    /// saying why), x264 (refuse to start without it), openh264 (built in). x264 is
    /// GPL-2.0+: a process that loads it is bound by that licence; openh264 opts out. The
    /// library loaded can be named with ZEROHOP_X264_LIB.
    #[arg(long, value_enum, default_value_t = CpuEncoderArg::Auto)]
    pub cpu_encoder: CpuEncoderArg,
    /// x264's preset (speed against quality per bit); always with zerolatency tuning (no
    /// B-frames, no lookahead).
    #[arg(long, value_enum, default_value_t = X264PresetArg::Superfast)]
    pub x264_preset: X264PresetArg,
}

impl Default for EncoderArgs {
    fn default() -> Self {
        EncoderArgs { cpu_encoder: CpuEncoderArg::Auto, x264_preset: X264PresetArg::Superfast }
    }
}

impl EncoderArgs {
    fn choice(&self) -> CpuEncoderChoice {
        match self.cpu_encoder {
            CpuEncoderArg::Auto => CpuEncoderChoice::Auto,
            CpuEncoderArg::X264 => CpuEncoderChoice::X264,
            CpuEncoderArg::Openh264 => CpuEncoderChoice::OpenH264,
        }
    }

    /// What this machine makes of the options (opens libx264 unless openh264 was asked).
    pub fn resolve(&self) -> Result<ResolvedEncoder> {
        Ok(self.choice().resolve(self.x264_preset.into())?)
    }

    /// Resolves the options, says on stderr which encoder encodes and why, and makes it the
    /// process's encoder; an error (x264 asked for and absent) stops the command.
    pub fn apply(&self) -> Result<CpuEncoder> {
        let r = self.resolve()?;
        eprintln!("CPU encoder: {} ({})", r.encoder.name(), r.why);
        r.encoder.set_process_default();
        Ok(r.encoder)
    }
}

/// What `--cpu-encoder auto` comes to on this machine, for `probe` and `--version --verbose`;
/// with `ZEROHOP_CPU_ENCODER=openh264` in the environment, that (x264 is not loaded: whoever
/// opted out of it gets no process that loads it).
pub fn describe_auto() -> String {
    let mut args = EncoderArgs::default();
    if std::env::var("ZEROHOP_CPU_ENCODER").is_ok_and(|v| v.eq_ignore_ascii_case("openh264")) {
        args.cpu_encoder = CpuEncoderArg::Openh264;
    }
    match args.resolve() {
        Ok(r) => format!("{} ({})", r.encoder.name(), r.why),
        Err(e) => format!("none ({e:#})"),
    }
}
