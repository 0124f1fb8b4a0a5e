//! The `zerohop` command line: the commands and their dispatch. Each command lives in its own
//! module (doc/STRUCTURE.md).

mod accel_cmd;
mod bench;
mod fixtures;
mod gpu_cmd;
mod ladder_cmd;
mod node_cmd;
mod part_file;
mod probe_cmd;
mod push_cmd;
mod push_output;
mod transcode_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("ZEROHOP_GIT"),
    ", ",
    env!("ZEROHOP_PROFILE"),
    ", ",
    env!("ZEROHOP_TARGET"),
    ", features: ",
    env!("ZEROHOP_FEATURES"),
    ")"
);

#[derive(Parser)]
#[command(name = "zerohop", version, long_version = LONG_VERSION, about = "A video-miner node: live MPEG-TS segments in, a rendition ladder out.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Transcode segments into a rendition ladder: writes DIR/<segment>_<rendition>.ts.
    ///
    /// Consecutive inputs are one stream (one session: encoders are reused). With no input,
    /// transcodes the bundled 1080p30 sample.
    Transcode(transcode_cmd::TranscodeArgs),
    /// Show what the engine sees in a segment and whether it can transcode it.
    Probe { input: PathBuf },
    /// List the profile presets.
    Presets,
    /// Run a combined node: orchestrator with an in-process transcoder (remote transcoders may
    /// join), HTTP/2 over TLS.
    Combined(node_cmd::NodeArgs),
    /// Run an orchestrator: takes segments from broadcasters, runs them on remote transcoders.
    Orchestrator(node_cmd::NodeArgs),
    /// Measure: engine alone, combined node and split node (over loopback HTTP/2 + TLS):
    /// TTFB, TTLB, real-time ratio and the split/combined TTLB ratio.
    Bench(bench::BenchArgs),
    /// Run a transcoder that dials out to its orchestrator (works behind NAT).
    Transcoder(node_cmd::TranscoderArgs),
    /// Push segments to a node and write the renditions as they stream back.
    Push(push_cmd::PushArgs),
    /// GPUs, memory, NVDEC/NVENC capabilities, the NVENC session limit (probed), and a
    /// self-test of the scaling kernel on each GPU against its CPU emulation. Exit status 3
    /// when there is no usable GPU (or the build has no CUDA backend).
    GpuInfo(gpu_cmd::GpuInfoArgs),
    /// Start a combined node on loopback, push the bundled segments through it over HTTP/2 + TLS,
    /// write the renditions and print TTFB, TTLB and real-time ratio.
    Demo {
        #[arg(short, long, default_value = "zerohop-demo")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(w) = zerohop_engine::build_info::speed_warning() {
        eprintln!("\n{w}\n");
    }
    let result = match cli.command {
        Command::Transcode(a) => transcode_cmd::transcode(a),
        Command::Probe { input } => probe_cmd::probe(&input),
        Command::Presets => ladder_cmd::presets(),
        Command::Combined(a) => node_cmd::combined(a),
        Command::Orchestrator(a) => node_cmd::orchestrator(a),
        Command::Bench(a) => bench::bench(a),
        Command::Transcoder(a) => node_cmd::transcoder(a),
        Command::Push(a) => push_cmd::push(a),
        Command::Demo { out } => push_cmd::demo(out),
        Command::GpuInfo(a) => gpu_cmd::gpu_info(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
