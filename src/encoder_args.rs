//! Which encoder makes the renditions (`EncoderArgs`), flattened into every command that
//! encodes (transcode, combined, transcoder, bench, and the orchestrator which shares the node's
//! options): where a GPU session encodes (`--gpu-encode`, `--nvenc-preset`), and the CPU
//! encoder (`--cpu-encoder auto|x264|openh264`, `--x264-preset`). The CPU encoder is resolved
//! once at start-up: the choice, and why, is logged and becomes the process's encoder
//! (`CpuEncoder::set_process_default`), which the CPU sessions and the host encoders of GPUs
//! without NVENC take.

use anyhow::Result;
use clap::ValueEnum;
use zerohop_engine::codec::{CpuEncoder, CpuEncoderChoice, ResolvedEncoder, X264Preset};

/// Where a GPU session encodes: `--gpu-encode auto|nvenc|cpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum GpuEncode {
    /// NVENC where the GPU has one; GPUs without (H100, H200, A100) decode and scale on the GPU
    /// and encode on the CPU.
    #[default]
    Auto,
    /// NVENC, or refuse to start.
    Nvenc,
    /// Decode and scale on the GPU, encode on the CPU, even where NVENC exists.
    Cpu,
}

/// NVENC's preset: `--nvenc-preset p1..p7` (P1 fastest, P7 best quality).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum NvencPreset {
    #[default]
    P1,
    P2,
    P3,
    P4,
    P5,
    P6,
    P7,
}

/// How GPU sessions are opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GpuOptions {
    pub encode: GpuEncode,
    pub preset: NvencPreset,
}

#[cfg(feature = "cuda")]
impl From<GpuOptions> for zerohop_engine::cuda::ladder_device::LadderOptions {
    fn from(o: GpuOptions) -> Self {
        use zerohop_engine::cuda::ladder_device::EncodeOn;
        use zerohop_engine::cuda::nvenc::Preset;
        let encode = match o.encode {
            GpuEncode::Auto => EncodeOn::Auto,
            GpuEncode::Nvenc => EncodeOn::Nvenc,
            GpuEncode::Cpu => EncodeOn::Host,
        };
        let preset = match o.preset {
            NvencPreset::P1 => Preset::P1,
            NvencPreset::P2 => Preset::P2,
            NvencPreset::P3 => Preset::P3,
            NvencPreset::P4 => Preset::P4,
            NvencPreset::P5 => Preset::P5,
            NvencPreset::P6 => Preset::P6,
            NvencPreset::P7 => Preset::P7,
        };
        zerohop_engine::cuda::ladder_device::LadderOptions { encode, preset }
    }
}

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

/// Which encoder makes the renditions.
#[derive(Debug, Clone, clap::Args)]
pub struct EncoderArgs {
    /// Where GPU sessions encode: auto (NVENC where the GPU has one; GPUs without, such as
    /// H100/H200/A100, decode and scale on the GPU and encode on the CPU), nvenc, cpu.
    #[arg(long, value_enum, default_value_t = GpuEncode::Auto)]
    pub gpu_encode: GpuEncode,
    /// NVENC preset, p1 (fastest, the default for live segments) to p7 (best quality); always
    /// with low-latency tuning.
    #[arg(long, value_enum, default_value_t = NvencPreset::P1)]
    pub nvenc_preset: NvencPreset,
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
        EncoderArgs {
            gpu_encode: GpuEncode::Auto,
            nvenc_preset: NvencPreset::P1,
            cpu_encoder: CpuEncoderArg::Auto,
            x264_preset: X264Preset::Superfast,
        }
    }
}

impl EncoderArgs {
    /// How GPU sessions are opened.
    pub fn gpu_options(&self) -> GpuOptions {
        GpuOptions { encode: self.gpu_encode, preset: self.nvenc_preset }
    }

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

/// What `--cpu-encoder auto` comes to on this machine, for `probe` and `--version`;
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
