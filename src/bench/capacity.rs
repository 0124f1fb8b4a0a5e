//! `zerohop bench --streams N`, `--max-streams` and `--soak N`: what an operator sizes a node
//! with. Each stream issues one segment per segment duration (as a live broadcaster does, the
//! way livepeer_bench paces), uploads it whole, and the segment's real-time ratio is its time to
//! last byte over its media duration. Through a combined node, or an orchestrator with
//! `--transcoders` remote transcoders, on loopback HTTP/2 + TLS.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use serde_json::json;
use zerohop_control::relay::SessionFactory;
use zerohop_control::{Client, Node, Transport, Upload};
use zerohop_engine::Ladder;

use super::args::BenchArgs;
use super::procstat::{cpu_time, heap_in_use_mib, rss_mib};
use super::progress::Progress;
use super::quantile::{ms_p50_95_99, p50_95_99};
use super::target::Target;

/// The operator's figures: --streams, --max-streams, --soak.
pub fn report(a: &BenchArgs, ladder: &Ladder, segment: &Bytes, media: Duration) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut doc = serde_json::Map::new();
    doc.insert("segment_media_ms".into(), json!(media.as_secs_f64() * 1e3));
    let factory = crate::accel_cmd::factory(a.accel.accel, &a.accel.gpus, a.accel.gpu_options())?;
    doc.insert("backend".into(), json!(factory.backend));
    doc.insert("devices".into(), json!(factory.devices));
    let factory = &factory;
    rt.block_on(async {
        let mode =
            if a.transcoders == 0 { "combined".to_string() } else { format!("split, {} transcoder(s)", a.transcoders) };
        doc.insert("mode".into(), json!(mode));
        if let Some(n) = a.streams {
            let target = Target::start(ladder, n.max(1), a.transcoders, factory).await?;
            let (samples, summary) =
                live_streams(&target.node, &target.transport, segment, media, n.max(1), a.segments_per_stream).await?;
            target.shutdown().await;
            println!("{mode}: {}", summary.line());
            doc.insert(
                "streams".into(),
                json!({"summary": summary.json(),
                "segments": samples.iter().map(SegSample::json).collect::<Vec<_>>()}),
            );
        }
        if a.max_streams {
            let (best, tried) =
                max_streams(ladder, segment, media, a.segments_per_stream, 0.8, a.transcoders, factory).await?;
            println!("{mode}: max streams at p95 real-time ratio <= 0.8: {best}");
            doc.insert(
                "max_streams".into(),
                json!({"limit_ratio": 0.8, "streams": best,
                "tried": tried.iter().map(Summary::json).collect::<Vec<_>>()}),
            );
        }
        if let Some(n) = a.soak {
            let r = soak(ladder, segment, n, factory).await?;
            println!(
                "soak: {} segments, {} failed, RSS {:.1} MiB after 100 -> {:.1} MiB at the end ({:+.2} %)",
                r["segments"],
                r["failed"],
                r["rss_after_100_mib"].as_f64().unwrap_or(0.0),
                r["rss_end_mib"].as_f64().unwrap_or(0.0),
                r["rss_growth_percent"].as_f64().unwrap_or(0.0)
            );
            if let (Some(a), Some(b)) = (r["heap_in_use_after_100_mib"].as_f64(), r["heap_in_use_end_mib"].as_f64()) {
                println!(
                    "soak: heap in use (allocated, not freed) {a:.1} MiB after 100 -> {b:.1} MiB at the end ({:+.2} %)",
                    (b - a) / a.max(1e-9) * 100.0
                );
            }
            doc.insert("soak".into(), r);
        }
        Ok::<_, anyhow::Error>(())
    })?;
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&serde_json::Value::Object(doc))?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One segment's figures.
#[derive(Debug, Clone)]
struct SegSample {
    pub stream: usize,
    pub seq: u64,
    pub media: Duration,
    pub ttfb: Duration,
    pub ttlb: Duration,
    pub frames: u64,
    pub bytes: u64,
    pub ok: bool,
}

impl SegSample {
    pub fn ratio(&self) -> f64 {
        self.ttlb.as_secs_f64() / self.media.as_secs_f64().max(1e-9)
    }
    pub fn json(&self) -> serde_json::Value {
        json!({"stream": self.stream, "seq": self.seq, "media_ms": self.media.as_secs_f64() * 1e3,
               "ttfb_ms": self.ttfb.as_secs_f64() * 1e3, "ttlb_ms": self.ttlb.as_secs_f64() * 1e3,
               "realtime_ratio": self.ratio(), "frames": self.frames, "bytes": self.bytes, "ok": self.ok})
    }
}

/// Summary of a run.
#[derive(Debug, Clone)]
struct Summary {
    pub streams: usize,
    pub segments: usize,
    pub failed: usize,
    pub ratio_mean: f64,
    pub ratio_p95: f64,
    pub ttfb_ms: [f64; 3],
    pub ttlb_ms: [f64; 3],
    pub segments_per_s: f64,
    /// Source pictures transcoded per second, all streams together: the frame rate each
    /// rendition of the ladder sustains (every rung of a same-rate ladder makes one per picture).
    pub frames_per_s: f64,
    pub cpu_s: f64,
    pub peak_rss_mib: f64,
}

impl Summary {
    pub fn json(&self) -> serde_json::Value {
        json!({"streams": self.streams, "segments": self.segments, "failed": self.failed,
               "realtime_ratio_mean": self.ratio_mean, "realtime_ratio_p95": self.ratio_p95,
               "ttfb_ms": {"p50": self.ttfb_ms[0], "p95": self.ttfb_ms[1], "p99": self.ttfb_ms[2]},
               "ttlb_ms": {"p50": self.ttlb_ms[0], "p95": self.ttlb_ms[1], "p99": self.ttlb_ms[2]},
               "segments_per_s": self.segments_per_s, "fps_per_rendition": self.frames_per_s, "cpu_seconds": self.cpu_s, "peak_rss_mib": self.peak_rss_mib})
    }

    pub fn line(&self) -> String {
        format!(
            "{:>3} stream(s): {:>4} segments ({} failed)  real-time ratio mean {:.3} p95 {:.3}  TTFB p50 {:.0} ms  TTLB p50/p95/p99 {:.0}/{:.0}/{:.0} ms  {:.2} seg/s  {:.0} fps per rendition  CPU {:.1} s  peak RSS {:.0} MiB",
            self.streams,
            self.segments,
            self.failed,
            self.ratio_mean,
            self.ratio_p95,
            self.ttfb_ms[0],
            self.ttlb_ms[0],
            self.ttlb_ms[1],
            self.ttlb_ms[2],
            self.segments_per_s,
            self.frames_per_s,
            self.cpu_s,
            self.peak_rss_mib
        )
    }
}

/// `streams` concurrent live streams of `per_stream` segments each, segments issued one media
/// duration apart per stream (streams staggered evenly), uploaded whole.
async fn live_streams(
    node: &Node,
    transport: &Transport,
    segment: &Bytes,
    media: Duration,
    streams: usize,
    per_stream: u64,
) -> Result<(Vec<SegSample>, Summary)> {
    let addr = node.local_addr().to_string();
    let (cpu0, t0) = (cpu_time(), Instant::now());
    let total = streams as u64 * per_stream;
    let progress = std::sync::Arc::new(Progress::new(format!("{streams} stream(s)"), total));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for s in 0..streams {
        let (addr, transport, segment) = (addr.clone(), transport.clone(), segment.clone());
        let (progress, done) = (progress.clone(), done.clone());
        let offset = media.mul_f64(s as f64 / streams as f64);
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&addr, &transport, None).await?;
            let start = Instant::now() + offset;
            let mut out = Vec::new();
            for seq in 0..per_stream {
                tokio::time::sleep_until((start + media * seq as u32).into()).await;
                let mut bytes = 0u64;
                let o = c
                    .push(&format!("live{s}"), seq, None, Upload::Full(segment.clone()), |r| {
                        bytes += r.payload.len() as u64
                    })
                    .await?;
                let frames = o.end.as_ref().and_then(|e| e["frames"].as_u64()).unwrap_or(0);
                let sample = SegSample { stream: s, seq, media, ttfb: o.ttfb, ttlb: o.ttlb, frames, bytes, ok: o.ok() };
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                progress.update(n, &format!("last real-time ratio {:.3}", sample.ratio()));
                out.push(sample);
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await??);
    }
    progress.finish();
    let wall = t0.elapsed().as_secs_f64();
    let ratios: Vec<f64> = samples.iter().map(SegSample::ratio).collect();
    let summary = Summary {
        streams,
        segments: samples.len(),
        failed: samples.iter().filter(|s| !s.ok).count(),
        ratio_mean: ratios.iter().sum::<f64>() / ratios.len().max(1) as f64,
        ratio_p95: p50_95_99(ratios)[1],
        ttfb_ms: ms_p50_95_99(samples.iter().map(|s| s.ttfb)),
        ttlb_ms: ms_p50_95_99(samples.iter().map(|s| s.ttlb)),
        segments_per_s: samples.len() as f64 / wall,
        frames_per_s: samples.iter().filter(|s| s.ok).map(|s| s.frames).sum::<u64>() as f64 / wall,
        cpu_s: (cpu_time() - cpu0).as_secs_f64(),
        peak_rss_mib: rss_mib().1,
    };
    Ok((samples, summary))
}

/// Finds the largest number of live streams whose p95 real-time ratio stays at or under
/// `limit` (no segment falls behind its live cadence), trying 1, 2, 3, ...
async fn max_streams(
    ladder: &Ladder,
    segment: &Bytes,
    media: Duration,
    per_stream: u64,
    limit: f64,
    transcoders: usize,
    factory: &SessionFactory,
) -> Result<(usize, Vec<Summary>)> {
    let mut tried = Vec::new();
    let mut best = 0;
    // A GPU box can hold many more streams than a CPU one.
    for n in 1..=256 {
        let target = Target::start(ladder, n, transcoders, factory).await?;
        let (_, s) = live_streams(&target.node, &target.transport, segment, media, n, per_stream).await?;
        target.shutdown().await;
        eprintln!("{}", s.line());
        let fits = s.failed == 0 && s.ratio_p95 <= limit;
        tried.push(s);
        if !fits {
            break;
        }
        best = n;
    }
    Ok((best, tried))
}

/// `count` segments through one combined node, one after another on one stream; RSS after the
/// first 100 and at the end (a leak shows as growth).
async fn soak(ladder: &Ladder, segment: &Bytes, count: u64, factory: &SessionFactory) -> Result<serde_json::Value> {
    let target = Target::start(ladder, 2, 0, factory).await?;
    let mut c = Client::connect(&target.node.local_addr().to_string(), &target.transport, None).await?;
    let (mut rss_100, mut heap_100, mut failed) = (0.0, None, 0u64);
    let mut curve = Vec::new();
    let t0 = Instant::now();
    let progress = Progress::new("soak", count);
    for seq in 0..count {
        let o = c.push("soak", seq, None, Upload::Full(segment.clone()), |_| {}).await?;
        if !o.ok() {
            failed += 1;
        }
        progress.update(seq + 1, &format!("{failed} failed, RSS {:.1} MiB", rss_mib().0));
        if seq + 1 == 100.min(count) {
            rss_100 = rss_mib().0;
            heap_100 = heap_in_use_mib();
        }
        if (seq + 1) % 100 == 0 || seq + 1 == count {
            let (rss, _) = rss_mib();
            curve.push(json!({"segments": seq + 1, "rss_mib": rss, "heap_in_use_mib": heap_in_use_mib()}));
        }
    }
    progress.finish();
    target.shutdown().await;
    let (rss_end, peak) = rss_mib();
    let growth = (rss_end - rss_100) / rss_100.max(1e-9) * 100.0;
    // Heap in use at the last sample, taken with the node still up (its sessions alive).
    let heap_end = curve.last().and_then(|c| c["heap_in_use_mib"].as_f64());
    let heap_growth = heap_100.zip(heap_end).map(|(a, b)| (b - a) / a.max(1e-9) * 100.0);
    Ok(json!({"segments": count, "failed": failed, "rss_after_100_mib": rss_100, "rss_end_mib": rss_end,
              "rss_growth_percent": growth, "peak_rss_mib": peak, "wall_s": t0.elapsed().as_secs_f64(),
              "heap_in_use_after_100_mib": heap_100, "heap_in_use_end_mib": heap_end,
              "heap_growth_percent": heap_growth, "rss_curve": curve}))
}
