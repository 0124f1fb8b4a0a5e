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

/// `--x264-preset`: one of x264's own presets, by its name (the engine's list, so the two never
/// drift apart).
fn x264_preset() -> impl clap::builder::TypedValueParser<Value = X264Preset> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(X264Preset::ALL.map(X264Preset::name))
        .map(|name| X264Preset::ALL.into_iter().find(|p| p.name() == name).expect("a possible value is a preset"))
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
    #[arg(long, value_parser = x264_preset(), default_value = "superfast")]
    pub x264_preset: X264Preset,
}

impl Default for EncoderArgs {
    fn default() -> Self {
        EncoderArgs { cpu_encoder: CpuEncoderArg::Auto, x264_preset: X264Preset::Superfast }
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
        Ok(self.choice().resolve(self.x264_preset)?)
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
