//! The options of `zerohop bench`.

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Segments (default: the bundled 2 s 1080p30 sample).
    pub inputs: Vec<PathBuf>,
    /// The ladder (default: 720p/480p/360p of the common ladder).
    #[arg(short, long)]
    pub profiles: Option<String>,
    /// Times each segment goes through each mode.
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Upload at the pace of a live encoder (the segment's bytes spread over its duration)
    /// instead of as fast as possible.
    #[arg(long)]
    pub live: bool,
    /// Live edge: push each segment at its real-time rate (times --pace) into the engine alone
    /// and through a combined node, and report how long after the last input byte the last
    /// rendition byte comes (the tail), the engine's per-stage timeline, and `ffmpeg -re`'s tail
    /// on the same ladder beside it.
    #[arg(long)]
    pub live_edge: bool,
    /// For --live-edge: the input's rate as a multiple of real time (1: a live encoder's).
    #[arg(long, default_value_t = 1.0)]
    pub pace: f64,
    /// For --live-edge: write every mark of each segment's median run here (CSV: segment, ms,
    /// stage, rung, value).
    #[arg(long)]
    pub marks: Option<PathBuf>,
    /// Also measure relay throughput: this many MiB through the orchestrator to a transcoder.
    #[arg(long, default_value_t = 0)]
    pub relay_mib: usize,
    /// Write a machine-readable report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Capacity: run this many concurrent live streams (one segment per segment duration each,
    /// uploaded whole) through a combined node and report per-segment figures.
    #[arg(long)]
    pub streams: Option<usize>,
    /// Segments per stream for --streams and --max-streams.
    #[arg(long, default_value_t = 5)]
    pub segments_per_stream: u64,
    /// Find the largest number of concurrent live streams whose p95 real-time ratio stays
    /// <= 0.8: the capacity to advertise.
    #[arg(long)]
    pub max_streams: bool,
    /// Soak: push this many segments through a combined node; report RSS after the first 100
    /// and at the end.
    #[arg(long)]
    pub soak: Option<u64>,
    /// For --streams and --max-streams: split mode, an orchestrator with this many remote
    /// transcoders over loopback HTTP/2 + TLS sharing the sessions (0: a combined node).
    #[arg(long, default_value_t = 0)]
    pub transcoders: usize,
    /// Fault soak: this many segments through an orchestrator and two transcoders run as
    /// processes, with transcoders killed and stalled, the orchestrator reloaded and restarted,
    /// broadcasters hanging up and corrupt segments, at random. Counts ok / error / abandoned /
    /// lost (must be 0) and samples RSS.
    #[arg(long)]
    pub fault_soak: Option<u64>,
    /// Seed for --fault-soak's random faults (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The backend the engine figures and the capacity runs use (`--accel cuda --gpus 0` for a
    /// GPU's capacity; the first GPU for the engine-alone figures).
    #[command(flatten)]
    pub accel: crate::accel_cmd::AccelArgs,
}
