//! `zerohop bench --relay-mib N`: bytes through an orchestrator's relay to a transcoder that
//! only counts them, and the CPU that costs (the whole process, and the orchestrator's threads).

use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::json;
use zerohop_control::body::ChannelBody;
use zerohop_control::framing::{self, Kind, SEGMENT};
use zerohop_control::headers;
use zerohop_control::node::TranscoderSecrets;
use zerohop_control::{Client, Node, NodeConfig, Transport, Upload};

use crate::loopback::loopback_tls;

use super::procstat::{cpu_time, threads_cpu_time};

/// Relay figures: all three parties, and the orchestrator alone.
#[derive(Debug, Clone, Copy)]
pub struct RelayFigures {
    pub gb_per_s: f64,
    /// Cores busy in the whole process (broadcaster + orchestrator + transcoder).
    pub cores: f64,
    /// Cores busy on the orchestrator's threads.
    pub orch_cores: f64,
    /// What one orchestrator core relays: bytes per orchestrator CPU-second.
    pub orch_gb_per_core_s: f64,
}

const ORCH_THREAD: &str = "zh-orch";

impl RelayFigures {
    pub fn json(&self) -> serde_json::Value {
        json!({"gb_per_s": self.gb_per_s, "cores": self.cores, "orchestrator_cores": self.orch_cores,
               "orchestrator_gb_per_cpu_s": self.orch_gb_per_core_s})
    }
}

/// Bytes through the orchestrator's relay: a broadcaster uploads `mib` MiB (in 64 MiB segments)
/// and a transcoder that only counts what it reads (no engine) answers each with an end record.
/// Returns (GB/s, cores busy in this process, which holds all three parties).
pub async fn throughput(tls_on: bool, mib: usize) -> Result<RelayFigures> {
    let (mut cfg, transport) = if tls_on {
        let (cfg, transport, _) = loopback_tls()?;
        (cfg, transport)
    } else {
        (NodeConfig::new("127.0.0.1:0".parse()?, None), Transport::H2c)
    };
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
        .header(headers::TRANSCODER_ID, "relay")
        .header(http::header::AUTHORIZATION, "Bearer relay")
        .header(headers::CAPACITY, 1)
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
                .header(headers::TRANSCODER_ID, "relay")
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
                .header(headers::TRANSCODER_ID, "relay")
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
