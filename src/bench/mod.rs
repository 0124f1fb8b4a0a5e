//! `zerohop bench`: the figures that show what the hop costs. The same segments go through the
//! engine alone, a combined node, and an orchestrator with a remote transcoder (both over real
//! loopback HTTP/2 with TLS), and the tool reports time to first and last byte and their ratio.
//!
//! The family: [`capacity`] (`--streams`, `--max-streams`, `--soak`), [`fault_soak`]
//! (`--fault-soak`), [`relay`] (`--relay-mib`); below them [`target`] (the node pushed to),
//! [`procstat`] (CPU and memory from /proc), [`quantile`] and [`progress`].

mod args;
mod capacity;
mod fault_soak;
mod live_edge;
mod procstat;
mod progress;
mod quantile;
mod relay;
mod target;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use serde_json::json;
use zerohop_control::relay::SessionFactory;
use zerohop_control::{Client, Upload};
use zerohop_engine::{Ladder, MemorySink};

pub use self::args::BenchArgs;
use self::quantile::ms_p50_95_99;
use self::target::Target;
use crate::fixtures::{SAMPLE, SAMPLE_NAME, read_segments};

/// The ladder when none is given: 720p/480p/360p of the common ladder, one-second GOPs.
const DEFAULT_LADDER: &str = r#"[{"name":"720p","width":1280,"height":720,"bitrate":3000000,"gop":1},
    {"name":"480p","width":854,"height":480,"bitrate":1600000,"gop":1},
    {"name":"360p","width":640,"height":360,"bitrate":800000,"gop":1}]"#;

#[derive(Debug, Default, Clone)]
struct Sample {
    ttfb: Duration,
    ttlb: Duration,
    /// Request start to the last upload byte.
    upload: Duration,
}

/// What the engine alone gives, per run of each segment.
#[derive(Debug, Default)]
struct EngineRuns {
    wall: Vec<Duration>,
    /// Media duration of each run (the segment's).
    media: Vec<Duration>,
    /// First chunk out after the first decoded picture: the TTFB goal inside the engine...
    first_out: Vec<Duration>,
    /// ...against one frame's encode time of the largest rendition.
    frame_encode: Vec<Duration>,
}

/// Bytes per `tick` for `len` bytes of `media` at `pace` times real time (at least a TS packet).
fn paced_piece(len: usize, media: Duration, pace: f64, tick: Duration) -> usize {
    let rate = len as f64 / media.as_secs_f64().max(1e-3) * pace.max(0.01);
    ((rate * tick.as_secs_f64()) as usize).max(188)
}

/// `pace`: the upload's rate as a multiple of the segment's real-time rate.
fn upload(data: &Bytes, live: bool, media: Duration, pace: f64) -> Upload {
    if live {
        // A piece every 10 ms at the segment's rate, as a live encoder's output arrives.
        let piece = paced_piece(data.len(), media, pace, live_edge::TICK);
        Upload::Paced { data: data.clone(), piece, interval: live_edge::TICK }
    } else {
        Upload::Full(data.clone())
    }
}

pub fn bench(a: BenchArgs) -> Result<ExitCode> {
    if let Some(n) = a.fault_soak {
        return fault_soak::run(n, a.seed, a.json.as_deref());
    }
    // The live edge is measured on what a node runs by default; the hop figures on their own.
    let default = || Ok(if a.live_edge { Ladder::default_ladder() } else { Ladder::from_json(DEFAULT_LADDER)? });
    let ladder = crate::ladder_cmd::read_ladder(a.profiles.as_deref(), None, default)?;
    let segments: Vec<(String, Bytes)> = if a.inputs.is_empty() {
        vec![(SAMPLE_NAME.into(), Bytes::from_static(SAMPLE))]
    } else {
        read_segments(&a.inputs)?
    };
    let runs = engine_runs(&a, &ladder, &segments)?;
    if a.live_edge {
        return live_edge_report(&a, &ladder, &segments, &runs.media);
    }
    if a.streams.is_some() || a.max_streams || a.soak.is_some() {
        return capacity::report(&a, &ladder, &segments[0].1, runs.media[0]);
    }
    let media = &runs.media;
    let media_total: Duration = media.iter().sum();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (combined, split, relay) = rt.block_on(async {
        let cpu = SessionFactory::default();
        let node = Target::start(&ladder, 2, 0, &cpu).await?;
        let combined = run_mode(&node, &segments, media, a.repeat, a.live, 1.0).await?;
        node.shutdown().await;
        // Orchestrator + one remote transcoder.
        let orch = Target::start(&ladder, 2, 1, &cpu).await?;
        let split = run_mode(&orch, &segments, media, a.repeat, a.live, 1.0).await?;
        orch.shutdown().await;
        let relay = if a.relay_mib > 0 {
            Some((relay::throughput(true, a.relay_mib).await?, relay::throughput(false, a.relay_mib).await?))
        } else {
            None
        };
        Ok::<_, anyhow::Error>((combined, split, relay))
    })?;
    let report = |name: &str, s: &[Sample]| {
        let f = ms_p50_95_99(s.iter().map(|x| x.ttfb));
        let l = ms_p50_95_99(s.iter().map(|x| x.ttlb));
        let ratio = s.iter().map(|x| x.ttlb).sum::<Duration>().as_secs_f64() / media_total.as_secs_f64();
        println!(
            "{name:<10} TTFB p50 {:>7.1} ms p95 {:>7.1} ms   TTLB p50 {:>7.1} ms p95 {:>7.1} ms   real-time ratio {ratio:.3}",
            f[0], f[1], l[0], l[1]
        );
        json!({"mode": name, "ttfb_ms": {"p50": f[0], "p95": f[1], "p99": f[2]},
               "ttlb_ms": {"p50": l[0], "p95": l[1], "p99": l[2]}, "realtime_ratio": ratio})
    };
    println!(
        "{} segment(s) x {} runs, ladder {}, {} upload, HTTP/2 + TLS on loopback",
        segments.len(),
        a.repeat,
        ladder.profiles().iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join("/"),
        if a.live { "live-paced" } else { "full-speed" }
    );
    let engine_ms = ms_p50_95_99(runs.wall.iter().copied())[0];
    println!("{:<10} transcode p50 {engine_ms:>7.1} ms (no network)", "engine");
    let first_out_ms = ms_p50_95_99(runs.first_out.iter().copied())[0];
    let frame_encode_ms = ms_p50_95_99(runs.frame_encode.iter().copied())[0];
    println!(
        "{:<10} first chunk {first_out_ms:.1} ms after the first decoded picture (p50); one frame of the largest \
         rendition encodes in {frame_encode_ms:.1} ms (goal: <= that + 10 ms)",
        "engine"
    );
    let c = report("combined", &combined);
    let s = report("split", &split);
    let ratio = s["ttlb_ms"]["p50"].as_f64().unwrap_or(0.0) / c["ttlb_ms"]["p50"].as_f64().unwrap_or(1.0);
    println!("split / combined TTLB (p50): {ratio:.3}");
    for (name, r) in relay.iter().flat_map(|(t, c)| [("TLS", t), ("h2c", c)]) {
        println!(
            "relay ({name:>3}): {} MiB broadcaster -> orchestrator -> transcoder at {:.2} GB/s, {:.2} cores busy in all; \
             orchestrator {:.2} cores = {:.2} GB per orchestrator CPU-second",
            a.relay_mib, r.gb_per_s, r.cores, r.orch_cores, r.orch_gb_per_core_s
        );
    }
    if let Some(path) = &a.json {
        let doc = json!({"segments": segments.iter().map(|s| &s.0).collect::<Vec<_>>(), "repeat": a.repeat, "live": a.live,
                         "engine_ms_p50": engine_ms, "first_chunk_after_first_picture_ms_p50": first_out_ms,
                         "largest_rendition_frame_encode_ms_p50": frame_encode_ms, "combined": c, "split": s, "split_over_combined_ttlb": ratio,
                         "relay": relay.map(|(t, c)| json!({"mib": a.relay_mib, "tls": t.json(), "h2c": c.json()}))});
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The session the engine-alone figures use: the backend asked for, on its first GPU.
fn engine_session(a: &BenchArgs, ladder: &Ladder) -> Result<Box<dyn zerohop_engine::StreamSession>> {
    crate::accel_cmd::open_session(
        ladder,
        zerohop_engine::scale::ScaleFilter::default(),
        a.accel.accel,
        a.accel.gpus.first().copied().unwrap_or(0),
        a.accel.gpu_options(),
    )
}

/// Each segment `a.repeat` times through the engine alone, on the backend asked for (the first
/// GPU).
fn engine_runs(a: &BenchArgs, ladder: &Ladder, segments: &[(String, Bytes)]) -> Result<EngineRuns> {
    let mut runs = EngineRuns::default();
    let mut session = engine_session(a, ladder)?;
    eprintln!("engine backend: {}", session.backend());
    for (_, data) in segments {
        for _ in 0..a.repeat {
            let (_, sinks) = MemorySink::ladder(ladder.len());
            let mut seg = session.begin_segment(sinks)?;
            seg.push(data.clone())?;
            let r = seg.finish()?;
            runs.wall.push(r.wall_time);
            runs.media.push(r.media_duration);
            let first_chunk = r.renditions.iter().filter_map(|x| x.first_chunk_after).min();
            if let (Some(c), Some(p)) = (first_chunk, r.first_picture_after) {
                runs.first_out.push(c.saturating_sub(p));
            }
            if let Some(big) = r.renditions.iter().max_by_key(|x| u64::from(x.width) * u64::from(x.height))
                && big.frames_out > 0
            {
                runs.frame_encode.push(big.encode_time / big.frames_out as u32);
            }
        }
    }
    Ok(runs)
}

async fn run_mode(
    target: &Target,
    segments: &[(String, Bytes)],
    media: &[Duration],
    repeat: usize,
    live: bool,
    pace: f64,
) -> Result<Vec<Sample>> {
    let mut client = Client::connect(&target.node.local_addr().to_string(), &target.transport, None).await?;
    let mut out = Vec::new();
    let mut seq = 0;
    for (i, (_, data)) in segments.iter().enumerate() {
        for _ in 0..repeat {
            let o = client.push("bench", seq, None, upload(data, live, media[i * repeat], pace), |_| {}).await?;
            anyhow::ensure!(o.ok(), "segment failed: {:?}", o.errors);
            out.push(Sample { ttfb: o.ttfb, ttlb: o.ttlb, upload: o.upload_time });
            seq += 1;
        }
    }
    Ok(out)
}

/// `--live-edge`: the engine alone and a combined node, both paced, and `ffmpeg -re`.
fn live_edge_report(
    a: &BenchArgs,
    ladder: &Ladder,
    segments: &[(String, Bytes)],
    media: &[Duration],
) -> Result<ExitCode> {
    let mut rows = live_edge::report(a, ladder, segments, media)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let combined = rt.block_on(async {
        let cpu = SessionFactory::default();
        let node = Target::start(ladder, 2, 0, &cpu).await?;
        let s = run_mode(&node, segments, media, a.repeat, true, a.pace).await?;
        node.shutdown().await;
        Ok::<_, anyhow::Error>(s)
    })?;
    let per: Vec<(Duration, Duration)> = combined.iter().map(|s| (s.ttlb, s.upload)).collect();
    live_edge::beside(&mut rows, &per, a.repeat);
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&json!({"live_edge": rows}))?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
