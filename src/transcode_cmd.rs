//! `zerohop transcode`: segments from files (or the bundled sample) into a rendition ladder,
//! one file per segment and rendition, each written as `.part` and renamed when complete.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::ValueEnum;
use zerohop_engine::scale::ScaleFilter;
use zerohop_engine::{Ladder, RenditionSink, RenditionStats, SegmentReport, TranscodeError};

use crate::accel_cmd::Accel;
use crate::fixtures::{SAMPLE, SAMPLE_NAME};
use crate::part_file::PartFile;

/// Options of `zerohop transcode`.
#[derive(Debug, clap::Args)]
pub struct TranscodeArgs {
    /// MPEG-TS segments, in stream order.
    pub inputs: Vec<PathBuf>,
    /// The ladder: comma-separated preset names, or JSON. Default: 720p/480p/360p/240p.
    #[arg(short, long)]
    pub profiles: Option<String>,
    /// Read the ladder from a JSON file instead.
    #[arg(long, conflicts_with = "profiles")]
    pub profiles_file: Option<PathBuf>,
    /// Output directory (created if missing).
    #[arg(short, long, default_value = "zerohop-out")]
    pub out: PathBuf,
    /// Scaling filter (CPU backend).
    #[arg(long, value_enum, default_value_t = Filter::CatmullRom)]
    pub filter: Filter,
    /// Backend: cpu; cuda (NVDEC -> CUDA kernel -> NVENC, frames kept on the GPU; needs a
    /// build with `--features cuda`); auto (cuda when it opens, else cpu, saying why).
    #[arg(long, value_enum, default_value_t = Accel::Cpu)]
    pub accel: Accel,
    /// GPU ordinal for --accel cuda/auto.
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
    #[command(flatten)]
    pub encoder: crate::encoder_args::EncoderArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Filter {
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

/// A rendition's file: written as `.part`, renamed into place when complete, so a failed
/// segment leaves no truncated file behind.
struct FileSink(PartFile);

impl RenditionSink for FileSink {
    fn chunk(&mut self, data: Bytes) -> std::io::Result<()> {
        self.0.write(&data)
    }
    fn finish(&mut self, _stats: &RenditionStats) -> std::io::Result<()> {
        self.0.commit()
    }
    fn fail(&mut self, _error: &TranscodeError) {
        self.0.discard();
    }
}

/// Per rendition over all segments: name, size, frames and bytes.
struct Total {
    name: String,
    width: u32,
    height: u32,
    frames: u64,
    bytes: u64,
}

/// What the segments added up to.
#[derive(Default)]
struct Tally {
    media: Duration,
    wall: Duration,
    frames: u64,
    failed: usize,
    renditions: Vec<Total>,
}

impl Tally {
    fn add(&mut self, r: &SegmentReport) {
        self.media += r.media_duration;
        self.wall += r.wall_time;
        self.frames += r.frames_decoded;
        for s in &r.renditions {
            match self.renditions.iter_mut().find(|t| t.name == s.name) {
                Some(t) => {
                    t.frames += s.frames_out;
                    t.bytes += s.ts_bytes;
                }
                None => self.renditions.push(Total {
                    name: s.name.clone(),
                    width: s.width,
                    height: s.height,
                    frames: s.frames_out,
                    bytes: s.ts_bytes,
                }),
            }
        }
    }
}

pub fn transcode(a: TranscodeArgs) -> Result<ExitCode> {
    let ladder = crate::ladder_cmd::read_ladder(a.profiles.as_deref(), a.profiles_file.as_deref(), || {
        Ok(Ladder::default_ladder())
    })?;
    let out = a.out.as_path();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let options = a.encoder.gpu_options();
    let mut session = crate::accel_cmd::open_session(&ladder, a.filter.into(), a.accel, a.gpu, options)?;
    eprintln!("backend: {}", session.backend());
    let jobs: Vec<(String, Option<PathBuf>)> = if a.inputs.is_empty() {
        eprintln!("no input given: transcoding the bundled sample (2 s of 1080p30 H.264 High + AAC)");
        vec![(SAMPLE_NAME.to_string(), None)]
    } else {
        a.inputs
            .into_iter()
            .map(|p| (p.file_stem().map_or_else(|| "segment".into(), |s| s.to_string_lossy().into_owned()), Some(p)))
            .collect()
    };
    eprintln!("ladder: {}", ladder.profiles().iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "));
    let n = jobs.len();
    let mut tally = Tally::default();
    let started = Instant::now();
    for (i, (stem, path)) in jobs.into_iter().enumerate() {
        let label = path.as_ref().map_or_else(|| SAMPLE_NAME.to_string(), |p| p.display().to_string());
        let sinks = ladder
            .profiles()
            .iter()
            .map(|p| {
                PartFile::create(out.join(format!("{stem}_{}.ts", p.name)))
                    .map(|f| Box::new(FileSink(f)) as Box<dyn RenditionSink>)
            })
            .collect::<std::io::Result<Vec<_>>>()
            .with_context(|| format!("creating outputs in {}", out.display()))?;
        let mut seg = session.begin_segment(sinks)?;
        // Stream the file in as it is read: decoding starts with the first 64 KiB.
        let read = feed(path.as_deref(), |piece| seg.push(piece).is_ok());
        if let Err(e) = read {
            drop(seg); // abandons the segment; its partial outputs are removed
            eprintln!("[{}/{n}] {label}: {e:#}", i + 1);
            tally.failed += 1;
            continue;
        }
        match seg.finish() {
            Ok(r) => {
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
                tally.add(&r);
            }
            Err(e) => {
                eprintln!("[{}/{n}] {label}: FAILED [{}] {e}", i + 1, e.code());
                tally.failed += 1;
            }
        }
    }
    report(&tally, n, started.elapsed(), out)
}

/// Hands the segment to `push` in 64 KiB pieces as it is read (the bundled sample when `path`
/// is `None`), until `push` returns false.
fn feed(path: Option<&Path>, mut push: impl FnMut(Bytes) -> bool) -> Result<()> {
    let Some(p) = path else {
        for piece in SAMPLE.chunks(64 * 1024) {
            if !push(Bytes::from_static(piece)) {
                break;
            }
        }
        return Ok(());
    };
    let mut f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
    loop {
        let mut buf = vec![0u8; 64 * 1024];
        let n = f.read(&mut buf).with_context(|| format!("reading {}", p.display()))?;
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        if !push(Bytes::from(buf)) {
            return Ok(());
        }
    }
}

fn report(t: &Tally, n: usize, elapsed: Duration, out: &Path) -> Result<ExitCode> {
    let media = t.media;
    println!("\n{:<16} {:>9} {:>7} {:>10} {:>9}", "rendition", "size", "frames", "bytes", "kbps");
    for r in &t.renditions {
        let kbps = if media.is_zero() { 0.0 } else { r.bytes as f64 * 8.0 / media.as_secs_f64() / 1000.0 };
        let (name, f, b) = (&r.name, r.frames, r.bytes);
        println!("{name:<16} {:>9} {f:>7} {b:>10} {kbps:>9.0}", format!("{}x{}", r.width, r.height));
    }
    let ratio = if media.is_zero() { f64::NAN } else { t.wall.as_secs_f64() / media.as_secs_f64() };
    println!(
        "\n{} segment(s) ok, {} failed; {} frames, {:.2} s of media in {:.2} s (real-time ratio {ratio:.2}); output in {}",
        n - t.failed,
        t.failed,
        t.frames,
        media.as_secs_f64(),
        elapsed.as_secs_f64(),
        out.display()
    );
    if t.failed > 0 {
        eprintln!("{} of {n} segment(s) failed", t.failed);
        return Ok(ExitCode::from(crate::exit::Exit::SegmentsFailed));
    }
    Ok(ExitCode::SUCCESS)
}
