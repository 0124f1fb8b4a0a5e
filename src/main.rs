//! The `zerohop` command line: the commands and their dispatch. Each command lives in its own
//! module (doc/STRUCTURE.md).

mod accel_cmd;
mod bench;
mod config;
mod encoder_args;
mod exit;
mod fixtures;
mod gpu_cmd;
mod ladder_cmd;
mod livepeer_cmd;
mod loopback;
mod node_cmd;
mod part_file;
mod probe_cmd;
mod push_cmd;
mod push_output;
#[cfg(test)]
mod scratch;
mod sign_url_cmd;
mod transcode_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use exit::Exit;

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

/// `--version`'s text: the build, and with the CUDA backend which kernels it embeds.
fn long_version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        #[allow(unused_mut)]
        let mut text = LONG_VERSION.to_string();
        #[cfg(feature = "cuda")]
        text.push_str(&format!("\nkernels: {}", zerohop_engine::cuda::driver::kernel_form()));
        // clap builds this text on every run; x264 is looked for only when it is shown, so no
        // other command's process loads x264 for it (doc/performance.md, x264: the licence).
        if std::env::args().any(|a| a == "--version" || a == "-V") {
            text.push_str(&format!("\nCPU encoder (--cpu-encoder auto): {}", encoder_args::describe_auto()));
        }
        text
    })
}

/// After `--help`: the exit statuses, and where settings come from.
fn after_help() -> String {
    format!("{}\n\n{SETTINGS}", Exit::statuses())
}

const SETTINGS: &str = "Settings: the node commands (combined, orchestrator, transcoder) take every flag from the \
environment too, as ZEROHOP_<FLAG> ([env: ...] beside each), and from a TOML file (--config FILE or ZEROHOP_CONFIG) \
whose keys are the long flag names. Command line > environment > config file > default.";

#[derive(Parser)]
#[command(name = "zerohop", version, long_version = long_version(), about = "A video-miner node: live MPEG-TS segments in, a rendition ladder out.", after_help = after_help())]
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
    Probe {
        /// The MPEG-TS segment to inspect.
        input: PathBuf,
    },
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
    /// Print a playback URL signed with the node's --playback-key-file: it plays a private
    /// stream (--private-playback) without a token until it expires.
    SignUrl(sign_url_cmd::SignUrlArgs),
    /// Start a combined node on loopback, push the bundled segments through it over HTTP/2 + TLS,
    /// write the renditions and print TTFB, TTLB and real-time ratio.
    Demo {
        /// Directory the renditions are written to (created if missing).
        #[arg(short, long, default_value = "zerohop-demo")]
        out: PathBuf,
    },
}

/// The command line as clap sees it: the derive structs, with the environment names and
/// `--config` of [`config::command`].
fn cli_command() -> clap::Command {
    config::command(Cli::command())
}

/// The command line, the environment and the config file, or the exit status of a usage error
/// (already printed).
fn parse_cli() -> Result<Cli, ExitCode> {
    let matches = match config::matches(cli_command(), std::env::args_os().collect()) {
        Ok(m) => m,
        Err(config::Failure::Setting(e)) => {
            eprintln!("error: {e}");
            return Err(ExitCode::from(Exit::Usage));
        }
        Err(config::Failure::Clap { error, from_file }) => {
            let _ = error.print();
            if error.use_stderr() && !from_file.is_empty() {
                eprintln!("note: the config file gave {}", from_file.join(" "));
            }
            return Err(ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(Exit::Usage as u8)));
        }
    };
    Cli::from_arg_matches(&matches).map_err(|e| {
        let _ = e.print();
        ExitCode::from(Exit::Usage)
    })
}

fn main() -> ExitCode {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // Where speed matters, and only there, a build without OpenH264's assembly says so once.
    let speed_matters = matches!(
        cli.command,
        Command::Transcode(_)
            | Command::Combined(_)
            | Command::Transcoder(_)
            | Command::Bench(_)
            | Command::Demo { .. }
    );
    if speed_matters && let Some(w) = zerohop_engine::build_info::speed_warning() {
        eprintln!("\n{w}\n");
    }
    // The CPU encoder (--cpu-encoder) of the commands that encode: chosen once, said once.
    let encoder = match &cli.command {
        Command::Transcode(a) => Some(&a.encoder),
        Command::Combined(a) => Some(&a.accel.encoder),
        // Only with an in-process engine: an orchestrator of remote transcoders encodes nothing
        // and loads no libx264.
        Command::Orchestrator(a) if a.max_sessions.is_some_and(|n| n > 0) => Some(&a.accel.encoder),
        Command::Transcoder(a) => Some(&a.accel.encoder),
        Command::Bench(a) => Some(&a.accel.encoder),
        _ => None,
    };
    if let Some(Err(e)) = encoder.map(encoder_args::EncoderArgs::apply) {
        eprintln!("error: {e:#}");
        return ExitCode::from(Exit::Error);
    }
    // Who writes the hop events of ZEROHOP_HOP_LOG (control's hop_log), when it is set.
    let role = match &cli.command {
        Command::Combined(_) => Some("combined"),
        Command::Orchestrator(_) => Some("orchestrator"),
        Command::Transcoder(_) => Some("transcoder"),
        Command::Push(_) => Some("push"),
        _ => None,
    };
    if let Some(role) = role {
        zerohop_control::hop_log::set_role(role);
    }
    let result = match cli.command {
        Command::Transcode(a) => transcode_cmd::transcode(a),
        Command::Probe { input } => probe_cmd::probe(&input),
        Command::Presets => ladder_cmd::presets(),
        Command::Combined(a) => node_cmd::combined(a),
        Command::Orchestrator(a) => node_cmd::orchestrator(a),
        Command::Bench(a) => bench::bench(a),
        Command::Transcoder(a) => match a.livepeer.livepeer_orch.clone() {
            Some(orch) => livepeer_cmd::transcoder(a, orch),
            None => node_cmd::transcoder(a),
        },
        Command::Push(a) => push_cmd::push(a),
        Command::Demo { out } => push_cmd::demo(out),
        Command::GpuInfo(a) => gpu_cmd::gpu_info(a),
        Command::SignUrl(a) => sign_url_cmd::sign_url(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(Exit::Error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Exit, cli_command};

    /// Every flag and argument of every command says what it is for in `--help`.
    #[test]
    fn every_flag_and_argument_has_help() {
        let cli = cli_command();
        let mut missing = Vec::new();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_hide_set() && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{} {}", sub.get_name(), arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "flags without help text: {missing:?}");
    }

    #[test]
    fn help_ends_with_the_exit_statuses_and_usage_is_clap_s_status() {
        let help = cli_command().render_long_help().to_string();
        assert!(help.contains(&Exit::statuses()), "{help}");
        let e = cli_command().try_get_matches_from(["zerohop", "--no-such-flag"]).expect_err("usage");
        assert_eq!(e.exit_code(), Exit::Usage as i32, "clap's own usage exit status");
    }
}
