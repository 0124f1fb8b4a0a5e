//! The `zerohop` command line.

mod accel_cmd;
mod bench_cmd;
mod capacity_cmd;
mod fault_soak;
mod gpu_cmd;
mod node_cmd;
mod progress;

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use zerohop_engine::probe::probe;
use zerohop_engine::scale::ScaleFilter;
use zerohop_engine::{Ladder, Profile, RenditionSink, RenditionStats, TranscodeError};

/// The bundled sample: 2 s of 1080p30 H.264 High (B-frames) + AAC, made by x264.
const SAMPLE: &[u8] = include_bytes!("../tests/fixtures/h264_1080p30_high_bframes_aac.ts");
const SAMPLE_NAME: &str = "sample_1080p30";

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
    Transcode {
        /// MPEG-TS segments, in stream order.
        inputs: Vec<PathBuf>,
        /// The ladder: comma-separated preset names, or JSON. Default: 720p/480p/360p/240p.
        #[arg(short, long)]
        profiles: Option<String>,
        /// Read the ladder from a JSON file instead.
        #[arg(long, conflicts_with = "profiles")]
        profiles_file: Option<PathBuf>,
        /// Output directory (created if missing).
        #[arg(short, long, default_value = "zerohop-out")]
        out: PathBuf,
        /// Scaling filter (CPU backend).
        #[arg(long, value_enum, default_value_t = Filter::CatmullRom)]
        filter: Filter,
        /// Backend: cpu; cuda (NVDEC -> CUDA kernel -> NVENC, frames kept on the GPU; needs a
        /// build with `--features cuda`); auto (cuda when it opens, else cpu, saying why).
        #[arg(long, value_enum, default_value_t = accel_cmd::Accel::Cpu)]
        accel: accel_cmd::Accel,
        /// GPU ordinal for --accel cuda/auto.
        #[arg(long, default_value_t = 0)]
        gpu: usize,
        /// Where the GPU session encodes: auto (NVENC, or the CPU on GPUs without one), nvenc,
        /// cpu.
        #[arg(long, value_enum, default_value_t = accel_cmd::GpuEncode::Auto)]
        gpu_encode: accel_cmd::GpuEncode,
        /// NVENC preset, p1 (fastest) to p7 (best quality), low-latency tuning.
        #[arg(long, value_enum, default_value_t = accel_cmd::NvencPreset::P1)]
        nvenc_preset: accel_cmd::NvencPreset,
    },
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
    Bench(bench_cmd::BenchArgs),
    /// Run a transcoder that dials out to its orchestrator (works behind NAT).
    Transcoder(node_cmd::TranscoderArgs),
    /// Push segments to a node and write the renditions as they stream back.
    Push(node_cmd::PushArgs),
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

#[derive(Clone, Copy, ValueEnum)]
enum Filter {
    Bilinear,
    CatmullRom,
    Lanczos3,
}

impl From<Filter> for ScaleFilter {
    fn from(f: Filter) -> ScaleFilter {
        match f {
            Filter::Bilinear => ScaleFilter::Bilinear,
            Filter::CatmullRom => ScaleFilter::CatmullRom,
            Filter::Lanczos3 => ScaleFilter::Lanczos3,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(w) = zerohop_engine::build_info::speed_warning() {
        eprintln!("\n{w}\n");
    }
    let result = match cli.command {
        Command::Transcode { inputs, profiles, profiles_file, out, filter, accel, gpu, gpu_encode, nvenc_preset } => {
            let options = accel_cmd::GpuOptions { encode: gpu_encode, preset: nvenc_preset };
            transcode(inputs, profiles, profiles_file, &out, filter.into(), (accel, gpu, options))
        }
        Command::Probe { input } => probe_cmd(&input),
        Command::Combined(a) => node_cmd::combined(a),
        Command::Orchestrator(a) => node_cmd::orchestrator(a),
        Command::Bench(a) => bench_cmd::bench(a),
        Command::Transcoder(a) => node_cmd::transcoder(a),
        Command::Push(a) => node_cmd::push(a),
        Command::Demo { out } => node_cmd::demo(out),
        Command::GpuInfo(a) => gpu_cmd::gpu_info(a),
        Command::Presets => {
            println!("{:<16} {:>9} {:>8} {:>5}", "name", "size", "kbps", "fps");
            for p in Profile::presets() {
                println!(
                    "{:<16} {:>9} {:>8} {:>5}",
                    p.name,
                    format!("{}x{}", p.width, p.height),
                    p.bitrate / 1000,
                    p.fps
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a rendition to `<path>.part` and renames it into place when complete, so a failed
/// segment leaves no truncated file behind.
struct FileSink {
    path: PathBuf,
    part: PathBuf,
    file: Option<BufWriter<File>>,
}

impl FileSink {
    fn create(path: PathBuf) -> std::io::Result<FileSink> {
        let mut part = path.clone().into_os_string();
        part.push(".part");
        let part = PathBuf::from(part);
        let file = BufWriter::with_capacity(256 * 1024, File::create(&part)?);
        Ok(FileSink { path, part, file: Some(file) })
    }
}

impl RenditionSink for FileSink {
    fn chunk(&mut self, data: Bytes) -> std::io::Result<()> {
        self.file.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?.write_all(&data)
    }
    fn finish(&mut self, _stats: &RenditionStats) -> std::io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.flush()?;
            std::fs::rename(&self.part, &self.path)?;
        }
        Ok(())
    }
    fn fail(&mut self, _error: &TranscodeError) {
        self.file = None;
        let _ = std::fs::remove_file(&self.part);
    }
}

fn read_ladder(profiles: Option<String>, profiles_file: Option<PathBuf>) -> Result<Ladder> {
    Ok(match (profiles, profiles_file) {
        (Some(p), _) => p.parse()?,
        (None, Some(f)) => {
            Ladder::from_json(&std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?)?
        }
        (None, None) => Ladder::default_ladder(),
    })
}

fn transcode(
    inputs: Vec<PathBuf>,
    profiles: Option<String>,
    profiles_file: Option<PathBuf>,
    out: &Path,
    filter: ScaleFilter,
    (accel, gpu, gpu_options): (accel_cmd::Accel, usize, accel_cmd::GpuOptions),
) -> Result<ExitCode> {
    let ladder = read_ladder(profiles, profiles_file)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut session = accel_cmd::open_session(&ladder, filter, accel, gpu, gpu_options)?;
    eprintln!("backend: {}", session.backend());
    let sample = inputs.is_empty();
    let jobs: Vec<(String, Option<PathBuf>)> = if sample {
        eprintln!("no input given: transcoding the bundled sample (2 s of 1080p30 H.264 High + AAC)");
        vec![(SAMPLE_NAME.to_string(), None)]
    } else {
        inputs
            .into_iter()
            .map(|p| (p.file_stem().map_or_else(|| "segment".into(), |s| s.to_string_lossy().into_owned()), Some(p)))
            .collect()
    };
    eprintln!("ladder: {}", ladder.profiles().iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "));
    let n = jobs.len();
    let (mut media, mut wall, mut frames, mut failed) = (Duration::ZERO, Duration::ZERO, 0u64, 0usize);
    let mut totals: Vec<(String, u32, u32, u64, u64)> = Vec::new();
    let started = Instant::now();
    for (i, (stem, path)) in jobs.into_iter().enumerate() {
        let label = path.as_ref().map_or_else(|| SAMPLE_NAME.to_string(), |p| p.display().to_string());
        let sinks = ladder
            .profiles()
            .iter()
            .map(|p| {
                FileSink::create(out.join(format!("{stem}_{}.ts", p.name)))
                    .map(|s| Box::new(s) as Box<dyn RenditionSink>)
            })
            .collect::<std::io::Result<Vec<_>>>()
            .with_context(|| format!("creating outputs in {}", out.display()))?;
        let mut seg = session.begin_segment(sinks)?;
        // Stream the file in as it is read: decoding starts with the first 64 KiB.
        let read: Result<()> = (|| {
            match &path {
                None => {
                    for piece in SAMPLE.chunks(64 * 1024) {
                        if seg.push(Bytes::from_static(piece)).is_err() {
                            break;
                        }
                    }
                }
                Some(p) => {
                    let mut f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
                    loop {
                        let mut buf = vec![0u8; 64 * 1024];
                        let n = f.read(&mut buf).with_context(|| format!("reading {}", p.display()))?;
                        if n == 0 {
                            break;
                        }
                        buf.truncate(n);
                        if seg.push(Bytes::from(buf)).is_err() {
                            break;
                        }
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = read {
            drop(seg); // abandons the segment; its partial outputs are removed
            eprintln!("[{}/{n}] {label}: {e:#}", i + 1);
            failed += 1;
            continue;
        }
        match seg.finish() {
            Ok(r) => {
                media += r.media_duration;
                wall += r.wall_time;
                frames += r.frames_decoded;
                eprintln!(
                    "[{}/{n}] {label}: {}x{} {} {:.2} fps, {} frames, {:.2} s media in {:.2} s (real-time ratio {:.2})",
                    i + 1,
                    r.input.width,
                    r.input.height,
                    r.input.profile,
                    r.input.fps,
                    r.frames_decoded,
                    r.media_duration.as_secs_f64(),
                    r.wall_time.as_secs_f64(),
                    r.realtime_ratio()
                );
                for s in &r.renditions {
                    match totals.iter_mut().find(|t| t.0 == s.name) {
                        Some(t) => {
                            t.3 += s.frames_out;
                            t.4 += s.ts_bytes;
                        }
                        None => totals.push((s.name.clone(), s.width, s.height, s.frames_out, s.ts_bytes)),
                    }
                }
            }
            Err(e) => {
                eprintln!("[{}/{n}] {label}: FAILED [{}] {e}", i + 1, e.code());
                failed += 1;
            }
        }
    }
    println!("\n{:<16} {:>9} {:>7} {:>10} {:>9}", "rendition", "size", "frames", "bytes", "kbps");
    for (name, w, h, f, b) in &totals {
        let kbps = if media.is_zero() { 0.0 } else { *b as f64 * 8.0 / media.as_secs_f64() / 1000.0 };
        println!("{name:<16} {:>9} {f:>7} {b:>10} {kbps:>9.0}", format!("{w}x{h}"));
    }
    let ratio = if media.is_zero() { f64::NAN } else { wall.as_secs_f64() / media.as_secs_f64() };
    println!(
        "\n{} segment(s) ok, {failed} failed; {frames} frames, {:.2} s of media in {:.2} s (real-time ratio {ratio:.2}); output in {}",
        n - failed,
        media.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    if failed > 0 {
        bail!("{failed} of {n} segment(s) failed");
    }
    Ok(ExitCode::SUCCESS)
}

fn probe_cmd(input: &Path) -> Result<ExitCode> {
    let data = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let r = probe(&data);
    println!("{}: {} bytes, {} TS packets", input.display(), data.len(), r.demux.packets);
    let d = &r.demux;
    if d.continuity_errors + d.transport_errors + d.sync_losses + d.bad_sections + d.bad_pes_headers > 0 {
        println!(
            "  container damage: {} continuity errors, {} transport errors, {} sync losses, {} bad sections, {} bad PES headers",
            d.continuity_errors, d.transport_errors, d.sync_losses, d.bad_sections, d.bad_pes_headers
        );
    }
    if let Some(p) = &r.program {
        println!("  program {} (PMT PID {}, PCR PID {})", p.program_number, p.pmt_pid, p.pcr_pid);
    }
    for s in &r.streams {
        let start = s.first_pts.map_or_else(|| "-".into(), |p| format!("{:.3} s", p as f64 / 90_000.0));
        println!(
            "  PID {:>5}  0x{:02x} {:<22} {:>5} PES, first PTS {start}",
            s.pid, s.stream_type, s.codec, s.pes_packets
        );
    }
    if let Some(sps) = &r.sps {
        println!(
            "  video: H.264 {} level {}.{}, {}x{}, {}-bit, chroma_format_idc {}, {}, {}",
            sps.profile_name(),
            sps.level_idc / 10,
            sps.level_idc % 10,
            sps.width,
            sps.height,
            sps.bit_depth_luma,
            sps.chroma_format_idc,
            if sps.frame_mbs_only { "progressive" } else { "interlaced" },
            sps.fps.map_or_else(|| "no VUI frame rate".into(), |f| format!("{f:.3} fps"))
        );
        println!("  pictures: {} access units, {} IDR, {} decoded", r.access_units, r.idr_frames, r.frames_decoded);
    }
    println!("  OpenH264 assembly: {}", zerohop_engine::build_info::OPENH264_ASM);
    match &r.verdict {
        Ok(()) => {
            println!("  transcodable: yes");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("  transcodable: no [{}] {e}", e.code());
            Ok(ExitCode::from(2))
        }
    }
}
