//! `zerohop bench`: the figures that show what the hop costs. The same segments go through the
//! engine alone, a combined node, and an orchestrator with a remote transcoder (both over real
//! loopback HTTP/2 with TLS), and the tool reports time to first and last byte and their ratio.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use serde_json::json;
use zerohop_control::node::{TRANSCODER_ID_HEADER, TranscoderSecrets};
use zerohop_control::tls::{self, Trust};
use zerohop_control::transcoder::{self, TranscoderConfig};
use zerohop_control::{Client, Node, NodeConfig, Transport, Upload};
use zerohop_engine::{Ladder, MemorySink, RenditionSink};

const SAMPLE: &[u8] = include_bytes!("../tests/fixtures/h264_1080p30_high_bframes_aac.ts");

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
    pub accel: crate::node_cmd::AccelArgs,
}

#[derive(Debug, Default, Clone)]
struct Sample {
    ttfb: Duration,
    ttlb: Duration,
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn upload(data: &Bytes, live: bool, media: Duration) -> Upload {
    if live {
        // 50 pieces over the segment's duration, as a live encoder would produce them.
        let piece = data.len().div_ceil(50);
        Upload::Paced { data: data.clone(), piece, interval: media / 50 }
    } else {
        Upload::Full(data.clone())
    }
}

pub fn bench(a: BenchArgs) -> Result<ExitCode> {
    if let Some(n) = a.fault_soak {
        return crate::fault_soak::run(n, a.seed, a.json.as_deref());
    }
    let ladder: Ladder = match &a.profiles {
        Some(p) => p.parse()?,
        None => Ladder::from_json(
            r#"[{"name":"720p","width":1280,"height":720,"bitrate":3000000,"gop":1},
                {"name":"480p","width":854,"height":480,"bitrate":1600000,"gop":1},
                {"name":"360p","width":640,"height":360,"bitrate":800000,"gop":1}]"#,
        )?,
    };
    let segments: Vec<(String, Bytes)> = if a.inputs.is_empty() {
        vec![("sample_1080p30".into(), Bytes::from_static(SAMPLE))]
    } else {
        a.inputs
            .iter()
            .map(|p| {
                Ok((
                    p.display().to_string(),
                    Bytes::from(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
                ))
            })
            .collect::<Result<_>>()?
    };
    // Engine alone (also gives each segment's media duration).
    let mut engine = Vec::new();
    let mut media = Vec::new();
    // The TTFB goal inside the engine: first chunk out after the first decoded picture, against
    // one frame's encode time of the largest rendition.
    let (mut first_out, mut frame_encode) = (Vec::new(), Vec::new());
    let mut session = crate::accel_cmd::open_session(
        &ladder,
        zerohop_engine::scale::ScaleFilter::default(),
        a.accel.accel,
        a.accel.gpus.first().copied().unwrap_or(0),
        a.accel.gpu_options(),
    )?;
    eprintln!("engine backend: {}", session.backend());
    for (_, data) in &segments {
        for _ in 0..a.repeat {
            let sinks = (0..ladder.len()).map(|_| Box::new(MemorySink::new()) as Box<dyn RenditionSink>).collect();
            let mut seg = session.begin_segment(sinks)?;
            seg.push(data.clone())?;
            let r = seg.finish()?;
            engine.push(r.wall_time);
            media.push(r.media_duration);
            let first_chunk = r.renditions.iter().filter_map(|x| x.first_chunk_after).min();
            if let (Some(c), Some(p)) = (first_chunk, r.first_picture_after) {
                first_out.push(c.saturating_sub(p));
            }
            if let Some(big) = r.renditions.iter().max_by_key(|x| u64::from(x.width) * u64::from(x.height))
                && big.frames_out > 0
            {
                frame_encode.push(big.encode_time / big.frames_out as u32);
            }
        }
    }
    drop(session);
    if a.streams.is_some() || a.max_streams || a.soak.is_some() {
        return capacity(&a, &ladder, &segments[0].1, media[0]);
    }
    let media_total: Duration = media.iter().sum();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (combined, split, relay) = rt.block_on(async {
        let identity = tls::self_signed(&["localhost".into()])?;
        let fp = identity.fingerprint();
        let transport = Transport::Tls { trust: Trust::Pin(fp.clone()), server_name: "localhost".into() };
        let server = tls::server_config(identity)?;
        // Combined node.
        let mut cfg = NodeConfig::new("127.0.0.1:0".parse()?, Some(server.clone()));
        cfg.default_ladder = ladder.clone();
        let node = Node::start(cfg).await?;
        let combined = run_mode(&node, &transport, &segments, &media, a.repeat, a.live).await?;
        node.shutdown().await;
        // Orchestrator + one remote transcoder.
        let mut cfg = NodeConfig::new("127.0.0.1:0".parse()?, Some(server));
        cfg.default_ladder = ladder.clone();
        cfg.max_sessions = 0;
        cfg.transcoders = TranscoderSecrets { shared: Some("bench".into()), ..Default::default() };
        let orch = Node::start(cfg).await?;
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let t = tokio::spawn(transcoder::run(
            TranscoderConfig {
                orch_addr: orch.local_addr().to_string(),
                transport: transport.clone(),
                id: "bench".into(),
                secret: "bench".into(),
                max_sessions: 2,
                max_output: zerohop_control::transcoder::CPU_MAX_OUTPUT,
                sessions: Default::default(),
            },
            stop,
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let split = run_mode(&orch, &transport, &segments, &media, a.repeat, a.live).await?;
        let _ = stop_tx.send(true);
        let _ = t.await;
        orch.shutdown().await;
        let relay = if a.relay_mib > 0 {
            Some((relay_throughput(true, a.relay_mib).await?, relay_throughput(false, a.relay_mib).await?))
        } else {
            None
        };
        Ok::<_, anyhow::Error>((combined, split, relay))
    })?;
    let report = |name: &str, s: &[Sample]| {
        let mut f: Vec<Duration> = s.iter().map(|x| x.ttfb).collect();
        let mut l: Vec<Duration> = s.iter().map(|x| x.ttlb).collect();
        let total: Duration = l.iter().sum();
        let row = json!({"mode": name, "ttfb_ms": {"p50": ms(pct(&mut f, 0.5)), "p95": ms(pct(&mut f, 0.95)), "p99": ms(pct(&mut f, 0.99))},
                         "ttlb_ms": {"p50": ms(pct(&mut l, 0.5)), "p95": ms(pct(&mut l, 0.95)), "p99": ms(pct(&mut l, 0.99))},
                         "realtime_ratio": total.as_secs_f64() / media_total.as_secs_f64()});
        println!(
            "{name:<10} TTFB p50 {:>7.1} ms p95 {:>7.1} ms   TTLB p50 {:>7.1} ms p95 {:>7.1} ms   real-time ratio {:.3}",
            row["ttfb_ms"]["p50"].as_f64().unwrap_or(0.0),
            row["ttfb_ms"]["p95"].as_f64().unwrap_or(0.0),
            row["ttlb_ms"]["p50"].as_f64().unwrap_or(0.0),
            row["ttlb_ms"]["p95"].as_f64().unwrap_or(0.0),
            row["realtime_ratio"].as_f64().unwrap_or(0.0)
        );
        row
    };
    println!(
        "{} segment(s) x {} runs, ladder {}, {} upload, HTTP/2 + TLS on loopback",
        segments.len(),
        a.repeat,
        ladder.profiles().iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join("/"),
        if a.live { "live-paced" } else { "full-speed" }
    );
    let mut e = engine.clone();
    println!("{:<10} transcode p50 {:>7.1} ms (no network)", "engine", ms(pct(&mut e, 0.5)));
    let (first_out_ms, frame_encode_ms) = (ms(pct(&mut first_out, 0.5)), ms(pct(&mut frame_encode, 0.5)));
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
                         "engine_ms_p50": ms(pct(&mut e, 0.5)), "first_chunk_after_first_picture_ms_p50": first_out_ms,
                         "largest_rendition_frame_encode_ms_p50": frame_encode_ms, "combined": c, "split": s, "split_over_combined_ttlb": ratio,
                         "relay": relay.map(|(t, c)| json!({"mib": a.relay_mib, "tls": relay_json(&t), "h2c": relay_json(&c)}))});
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The operator's figures: --streams, --max-streams, --soak.
fn capacity(a: &BenchArgs, ladder: &Ladder, segment: &Bytes, media: Duration) -> Result<ExitCode> {
    use crate::capacity_cmd as cap;
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
            let target = cap::Target::start(ladder, n.max(1), a.transcoders, factory).await?;
            let (samples, summary) =
                cap::live_streams(&target.node, &target.transport, segment, media, n.max(1), a.segments_per_stream)
                    .await?;
            target.shutdown().await;
            println!("{mode}: {}", summary.line());
            doc.insert(
                "streams".into(),
                json!({"summary": summary.json(),
                "segments": samples.iter().map(cap::SegSample::json).collect::<Vec<_>>()}),
            );
        }
        if a.max_streams {
            let (best, tried) =
                cap::max_streams(ladder, segment, media, a.segments_per_stream, 0.8, a.transcoders, factory).await?;
            println!("{mode}: max streams at p95 real-time ratio <= 0.8: {best}");
            doc.insert(
                "max_streams".into(),
                json!({"limit_ratio": 0.8, "streams": best,
                "tried": tried.iter().map(cap::Summary::json).collect::<Vec<_>>()}),
            );
        }
        if let Some(n) = a.soak {
            let r = cap::soak(ladder, segment, n, factory).await?;
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

async fn run_mode(
    node: &Node,
    transport: &Transport,
    segments: &[(String, Bytes)],
    media: &[Duration],
    repeat: usize,
    live: bool,
) -> Result<Vec<Sample>> {
    let mut client = Client::connect(&node.local_addr().to_string(), transport, None).await?;
    let mut out = Vec::new();
    let mut seq = 0;
    for (i, (_, data)) in segments.iter().enumerate() {
        for _ in 0..repeat {
            let o = client.push("bench", seq, None, upload(data, live, media[i * repeat]), |_| {}).await?;
            anyhow::ensure!(o.ok(), "segment failed: {:?}", o.errors);
            out.push(Sample { ttfb: o.ttfb, ttlb: o.ttlb });
            seq += 1;
        }
    }
    Ok(out)
}

/// Relay figures: all three parties, and the orchestrator alone.
#[derive(Debug, Clone, Copy)]
struct RelayFigures {
    gb_per_s: f64,
    /// Cores busy in the whole process (broadcaster + orchestrator + transcoder).
    cores: f64,
    /// Cores busy on the orchestrator's threads.
    orch_cores: f64,
    /// What one orchestrator core relays: bytes per orchestrator CPU-second.
    orch_gb_per_core_s: f64,
}

const ORCH_THREAD: &str = "zh-orch";

fn relay_json(r: &RelayFigures) -> serde_json::Value {
    json!({"gb_per_s": r.gb_per_s, "cores": r.cores, "orchestrator_cores": r.orch_cores,
           "orchestrator_gb_per_cpu_s": r.orch_gb_per_core_s})
}

/// User + system CPU time from a /proc `stat` line.
fn stat_cpu(stat: &str) -> Duration {
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    Duration::from_secs_f64(ticks as f64 / 100.0)
}

/// Process CPU time (user + system) from /proc, for the relay's core count.
pub(crate) fn cpu_time() -> Duration {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// CPU time of this process's threads named `prefix...` (live threads only).
fn threads_cpu_time(prefix: &str) -> Duration {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return Duration::ZERO };
    dir.flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix)))
        .map(|t| stat_cpu(&std::fs::read_to_string(t.path().join("stat")).unwrap_or_default()))
        .sum()
}

/// Bytes through the orchestrator's relay: a broadcaster uploads `mib` MiB (in 64 MiB segments)
/// and a transcoder that only counts what it reads (no engine) answers each with an end record.
/// Returns (GB/s, cores busy in this process, which holds all three parties).
async fn relay_throughput(tls_on: bool, mib: usize) -> Result<RelayFigures> {
    use http_body_util::BodyExt;
    use zerohop_control::body::ChannelBody;
    use zerohop_control::framing::{self, Kind, SEGMENT};
    let identity = tls::self_signed(&["localhost".into()])?;
    let fp = identity.fingerprint();
    let (transport, server) = if tls_on {
        (Transport::Tls { trust: Trust::Pin(fp), server_name: "localhost".into() }, Some(tls::server_config(identity)?))
    } else {
        (Transport::H2c, None)
    };
    let mut cfg = NodeConfig::new("127.0.0.1:0".parse()?, server);
    cfg.max_sessions = 0;
    cfg.max_segment_bytes = 64 << 20;
    cfg.transcoders = TranscoderSecrets { shared: Some("relay".into()), ..Default::default() };
    // The orchestrator on its own named threads, so its CPU time is counted apart from the
    // broadcaster's and the transcoder's in this process.
    let orch_rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name(ORCH_THREAD).enable_all().build()?;
    let orch = orch_rt.spawn(Node::start(cfg)).await??;
    let addr = orch.local_addr().to_string();
    // The counting transcoder.
    let t = Client::connect(&addr, &transport, None).await?;
    let (_reports, report_body) = ChannelBody::channel(1);
    let link = t
        .request(http::Method::POST, "/v1/transcoders/link")
        .header(TRANSCODER_ID_HEADER, "relay")
        .header(http::header::AUTHORIZATION, "Bearer relay")
        .header("zerohop-capacity", 1)
        .body(report_body)?;
    let mut tasks = t.send(link).await?.into_body();
    let counter = tokio::spawn(async move {
        let mut total = 0u64;
        while let Some(Ok(frame)) = tasks.frame().await {
            let Ok(line) = frame.into_data() else { continue };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else { continue };
            let id = v["task"].as_u64().unwrap_or(0);
            let get = t
                .request(http::Method::GET, &format!("/v1/tasks/{id}/input"))
                .header(TRANSCODER_ID_HEADER, "relay")
                .header(http::header::AUTHORIZATION, "Bearer relay")
                .body(ChannelBody::empty())?;
            let mut input = t.send(get).await?.into_body();
            while let Some(Ok(f)) = input.frame().await {
                total += f.data_ref().map_or(0, |d| d.len() as u64);
            }
            let mut rec = bytes::BytesMut::new();
            framing::encode(Kind::Chunk, 0, &[0x47; 188], &mut rec);
            framing::encode(Kind::End, SEGMENT, br#"{"status":"ok"}"#, &mut rec);
            let post = t
                .request(http::Method::POST, &format!("/v1/tasks/{id}/results"))
                .header(TRANSCODER_ID_HEADER, "relay")
                .header(http::header::AUTHORIZATION, "Bearer relay")
                .body(ChannelBody::full(rec.freeze()))?;
            t.send(post).await?;
        }
        Ok::<u64, anyhow::Error>(total)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut b = Client::connect(&addr, &transport, None).await?;
    let segment = Bytes::from(vec![0x47u8; 64 << 20]);
    let segments = mib.div_ceil(64);
    let (cpu0, orch0, t0) = (cpu_time(), threads_cpu_time(ORCH_THREAD), Instant::now());
    for seq in 0..segments {
        let o = b.push("relay", seq as u64, None, Upload::Full(segment.clone()), |_| {}).await?;
        anyhow::ensure!(o.ok(), "relay segment failed: {o:?}");
    }
    let (wall, cpu, orch_cpu) = (t0.elapsed(), cpu_time() - cpu0, threads_cpu_time(ORCH_THREAD) - orch0);
    orch_rt.spawn(orch.shutdown()).await?;
    orch_rt.shutdown_background();
    counter.abort();
    let bytes = (segments * segment.len()) as f64;
    let w = wall.as_secs_f64();
    Ok(RelayFigures {
        gb_per_s: bytes / w / 1e9,
        cores: cpu.as_secs_f64() / w,
        orch_cores: orch_cpu.as_secs_f64() / w,
        orch_gb_per_core_s: bytes / orch_cpu.as_secs_f64().max(1e-9) / 1e9,
    })
}
