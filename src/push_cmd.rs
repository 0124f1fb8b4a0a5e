//! `zerohop push` and `zerohop demo`: segments pushed to a node over HTTP/2, the renditions
//! written as they stream back (through [`crate::push_output`], which owns what becomes a file).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use zerohop_control::{Client, Node, Upload};

use crate::fixtures::{SAMPLE, STREAM_SEQ0, STREAM_SEQ1, read_segments};
use crate::loopback::loopback_tls;
use crate::node_cmd::{TrustArgs, init_logs, runtime};
use crate::push_output::SegmentOutput;

/// Options of `zerohop push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// MPEG-TS segments, in stream order.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The node, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:8935")]
    pub orch: String,
    /// The stream's name on the node (`/v1/streams/{stream}/segments/{seq}`).
    #[arg(long, default_value = "stream")]
    pub stream: String,
    /// Directory the renditions are written to, `<stream>_<seq>_<rendition>.ts` (created if missing).
    #[arg(short, long, default_value = "zerohop-pushed")]
    pub out: PathBuf,
    /// The ladder (presets or JSON); default: the node's.
    #[arg(short, long)]
    pub profiles: Option<String>,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// File holding the bearer token (its first line). Without it, the token itself from the
    /// environment (never the command line): [env: ZEROHOP_TOKEN]
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Upload pace: bytes per 10 ms (0: as fast as possible). Simulates a live encoder.
    #[arg(long, default_value_t = 0)]
    pub pace: usize,
}

/// What one pushed segment gave.
struct Pushed {
    label: String,
    ttfb: Duration,
    ttlb: Duration,
    media: Duration,
    ok: bool,
    files: Vec<PathBuf>,
}

/// Pushes `segments` in order on one connection, writing each rendition as it arrives.
async fn push_all(
    client: &mut Client,
    stream: &str,
    segments: Vec<(String, Bytes)>,
    profiles: Option<&str>,
    out: &Path,
    pace: usize,
) -> Result<Vec<Pushed>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut results = Vec::new();
    for (seq, (label, data)) in segments.into_iter().enumerate() {
        let upload = if pace > 0 {
            Upload::Paced { data, piece: pace, interval: Duration::from_millis(10) }
        } else {
            Upload::Full(data)
        };
        let mut output = SegmentOutput::new(out, format!("{stream}_{seq}"));
        let outcome = client.push(stream, seq as u64, profiles, upload, |rec| output.record(rec)).await;
        let written = match output.finish(outcome.as_ref().is_ok_and(|o| o.ok())) {
            Ok(w) => w,
            Err(e) => bail!("writing renditions: {e}"),
        };
        if !written.problems.is_empty() {
            eprintln!("[{seq}] {label}: FAILED: {}", written.problems.join("; "));
        }
        match outcome {
            Ok(o) => {
                let media = Duration::from_millis(o.end.as_ref().and_then(|e| e["media_ms"].as_u64()).unwrap_or(0));
                if !o.ok() {
                    eprintln!("[{seq}] {label}: FAILED in-band: {:?} {:?}", o.errors, o.end);
                }
                let ok = o.ok() && written.problems.is_empty();
                results.push(Pushed { label, ttfb: o.ttfb, ttlb: o.ttlb, media, ok, files: written.files });
            }
            Err(e) => {
                eprintln!("[{seq}] {label}: {e}");
                results.push(Pushed {
                    label,
                    ttfb: Duration::ZERO,
                    ttlb: Duration::ZERO,
                    media: Duration::ZERO,
                    ok: false,
                    files: vec![],
                });
            }
        }
        if let Some(r) = results.last().filter(|r| r.ok) {
            eprintln!(
                "[{seq}] {}: TTFB {:.1} ms, TTLB {:.1} ms, media {:.2} s, real-time ratio {:.2}",
                r.label,
                r.ttfb.as_secs_f64() * 1e3,
                r.ttlb.as_secs_f64() * 1e3,
                r.media.as_secs_f64(),
                r.ttlb.as_secs_f64() / r.media.as_secs_f64().max(1e-9)
            );
        }
    }
    Ok(results)
}

fn summary(results: &[Pushed], out: &Path) -> ExitCode {
    let ok = results.iter().filter(|r| r.ok).count();
    let files: usize = results.iter().map(|r| r.files.len()).sum();
    println!("{ok} of {} segment(s) ok; {files} rendition file(s) in {}", results.len(), out.display());
    if ok == results.len() { ExitCode::SUCCESS } else { ExitCode::from(crate::exit::Exit::SegmentsFailed) }
}

pub fn push(a: PushArgs) -> Result<ExitCode> {
    let token = zerohop_control::secret::load(a.token_file.as_deref(), "ZEROHOP_TOKEN")?;
    let transport = a.trust.transport(&a.orch)?;
    let segments = read_segments(&a.inputs)?;
    let rt = runtime()?;
    rt.block_on(async {
        let mut client = Client::connect(&a.orch, &transport, token).await?;
        let results = push_all(&mut client, &a.stream, segments, a.profiles.as_deref(), &a.out, a.pace).await?;
        Ok(summary(&results, &a.out))
    })
}

/// The bundled demo segments: two consecutive 720p segments of one stream, then the 1080p sample.
const DEMO: [(&str, &[u8]); 3] = [
    ("stream_seq0.ts (720p30 Main + AAC)", STREAM_SEQ0),
    ("stream_seq1.ts (720p30 Main + AAC)", STREAM_SEQ1),
    ("h264_1080p30_high_bframes_aac.ts", SAMPLE),
];
pub fn demo(out: PathBuf) -> Result<ExitCode> {
    init_logs();
    let rt = runtime()?;
    rt.block_on(async move {
        let (cfg, transport, fp) = loopback_tls()?;
        let node = Node::start(cfg).await?;
        let addr = node.local_addr();
        eprintln!("combined node on https://{addr} (HTTP/2, self-signed certificate SHA-256 {fp}), CPU backend, default ladder");
        let mut client = Client::connect(&addr.to_string(), &transport, None).await?;
        let segments = DEMO.iter().map(|(l, d)| (l.to_string(), Bytes::from_static(d))).collect();
        let results = push_all(&mut client, "demo", segments, None, &out, 0).await?;
        node.shutdown().await;
        let code = summary(&results, &out);
        // The ratios above are what this build can do; say so when it is the slow build.
        if let Some(why) = zerohop_engine::build_info::slow_build_note() {
            println!("{why}");
        }
        Ok(code)
    })
}
