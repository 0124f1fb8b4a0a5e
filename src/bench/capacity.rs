//! `zerohop bench --streams N`, `--max-streams` and `--soak N`: what an operator sizes a node
//! with. Each stream issues one segment per segment duration (as a live broadcaster does, the
//! way livepeer_bench paces), uploads it whole, and the segment's real-time ratio is its time to
//! last byte over its media duration. All through a combined node on loopback HTTP/2 + TLS.

use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use serde_json::json;
use tokio::sync::watch;
use zerohop_control::relay::SessionFactory;
use zerohop_control::tls::{self, Trust};
use zerohop_control::transcoder::{LinkError, TranscoderConfig};
use zerohop_control::{Client, Node, NodeConfig, Transport, Upload};
use zerohop_engine::Ladder;

use crate::bench_cmd::cpu_time;

/// One segment's figures.
#[derive(Debug, Clone)]
pub struct SegSample {
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
pub struct Summary {
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

fn quantiles(mut v: Vec<f64>) -> [f64; 3] {
    if v.is_empty() {
        return [0.0; 3];
    }
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    [q(0.5), q(0.95), q(0.99)]
}

/// Bytes the allocator has handed out and not got back (glibc's `mallinfo2`: in-use arena
/// chunks plus mmapped blocks), MiB: what a leak grows, as opposed to RSS, which also holds
/// memory freed but kept by the allocator.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn heap_in_use_mib() -> Option<f64> {
    #[repr(C)]
    struct Mallinfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }
    unsafe extern "C" {
        fn mallinfo2() -> Mallinfo2;
    }
    // SAFETY: glibc's mallinfo2 (2.33+) takes nothing and returns this plain struct by value.
    let m = unsafe { mallinfo2() };
    let _ = (m.arena, m.ordblks, m.smblks, m.hblks, m.usmblks, m.fsmblks, m.fordblks, m.keepcost);
    Some((m.uordblks + m.hblkhd) as f64 / (1024.0 * 1024.0))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn heap_in_use_mib() -> Option<f64> {
    None
}

/// VmRSS and VmHWM of this process, MiB.
pub fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// What the streams are pushed to: a combined node, or an orchestrator with remote
/// transcoders dialling in over loopback TLS (split mode).
pub struct Target {
    pub node: Node,
    pub transport: Transport,
    transcoders: Vec<RunningTranscoder>,
}

/// An in-process transcoder: its stop switch and its task.
type RunningTranscoder = (watch::Sender<bool>, tokio::task::JoinHandle<Result<(), LinkError>>);

impl Target {
    /// `transcoders` 0: a combined node with `sessions` local sessions. Otherwise an
    /// orchestrator with no local engine and `transcoders` transcoders sharing `sessions`.
    pub async fn start(
        ladder: &Ladder,
        sessions: usize,
        transcoders: usize,
        factory: &SessionFactory,
    ) -> Result<Target> {
        let identity = tls::self_signed(&["localhost".into()])?;
        let fp = identity.fingerprint();
        let transport = Transport::Tls { trust: Trust::Pin(fp), server_name: "localhost".into() };
        let mut cfg = NodeConfig::new("127.0.0.1:0".parse()?, Some(tls::server_config(identity)?));
        cfg.default_ladder = ladder.clone();
        let secret = "bench transcoder secret".to_string();
        if transcoders == 0 {
            cfg.max_sessions = sessions;
            cfg.sessions = factory.clone();
        } else {
            cfg.max_sessions = 0;
            cfg.transcoders.shared = Some(secret.clone());
        }
        let node = Node::start(cfg).await?;
        let mut target = Target { node, transport, transcoders: Vec::new() };
        for i in 0..transcoders {
            let (stop_tx, stop) = watch::channel(false);
            let cfg = TranscoderConfig {
                orch_addr: target.node.local_addr().to_string(),
                transport: target.transport.clone(),
                id: format!("bench-t{i}"),
                secret: secret.clone(),
                max_sessions: sessions.div_ceil(transcoders).max(1) as u32,
                max_output: zerohop_control::transcoder::CPU_MAX_OUTPUT,
                sessions: factory.clone(),
            };
            target.transcoders.push((stop_tx, tokio::spawn(zerohop_control::transcoder::run(cfg, stop))));
        }
        if transcoders > 0 {
            let mut c = Client::connect(&target.node.local_addr().to_string(), &target.transport, None).await?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let (_, body) = c.get("/v1/transcoders").await?;
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                if v["transcoders"].as_array().map_or(0, Vec::len) == transcoders {
                    break;
                }
                anyhow::ensure!(Instant::now() < deadline, "the bench's transcoders did not register within 10 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(target)
    }

    pub async fn shutdown(self) {
        for (stop, task) in self.transcoders {
            let _ = stop.send(true);
            let _ = task.await;
        }
        self.node.shutdown().await;
    }
}

/// `streams` concurrent live streams of `per_stream` segments each, segments issued one media
/// duration apart per stream (streams staggered evenly), uploaded whole.
pub async fn live_streams(
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
    let progress = std::sync::Arc::new(crate::progress::Progress::new(format!("{streams} stream(s)"), total));
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
        ratio_p95: quantiles(ratios)[1],
        ttfb_ms: quantiles(samples.iter().map(|s| s.ttfb.as_secs_f64() * 1e3).collect()),
        ttlb_ms: quantiles(samples.iter().map(|s| s.ttlb.as_secs_f64() * 1e3).collect()),
        segments_per_s: samples.len() as f64 / wall,
        frames_per_s: samples.iter().filter(|s| s.ok).map(|s| s.frames).sum::<u64>() as f64 / wall,
        cpu_s: (cpu_time() - cpu0).as_secs_f64(),
        peak_rss_mib: rss_mib().1,
    };
    Ok((samples, summary))
}

/// Finds the largest number of live streams whose p95 real-time ratio stays at or under
/// `limit` (no segment falls behind its live cadence), trying 1, 2, 3, ...
pub async fn max_streams(
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
pub async fn soak(ladder: &Ladder, segment: &Bytes, count: u64, factory: &SessionFactory) -> Result<serde_json::Value> {
    let target = Target::start(ladder, 2, 0, factory).await?;
    let mut c = Client::connect(&target.node.local_addr().to_string(), &target.transport, None).await?;
    let (mut rss_100, mut heap_100, mut failed) = (0.0, None, 0u64);
    let mut curve = Vec::new();
    let t0 = Instant::now();
    let progress = crate::progress::Progress::new("soak", count);
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
