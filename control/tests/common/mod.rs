//! Helpers shared by the control plane's integration tests: a node on loopback with real TLS,
//! the client's transport to it, pushes that collect the renditions, transcoders on their own
//! runtimes, and the fixtures.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use zerohop_control::framing::Kind;
use zerohop_control::headers;
use zerohop_control::tls::{self, Trust};
use zerohop_control::transcoder::{self, LinkError, TranscoderConfig};
use zerohop_control::{Client, ClientError, Node, NodeConfig, PushOutcome, Transport, Upload};
use zerohop_engine::{Ladder, MemorySink, Session, SessionConfig, StreamSession};

/// The ladder the tests push with.
pub const LADDER: &str = "P360p30fps16x9,P240p30fps16x9";

/// Each rendition's bytes, by rendition index.
pub type Renditions = BTreeMap<u8, Vec<u8>>;

pub fn fixture(name: &str) -> Bytes {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name);
    Bytes::from(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

/// What the engine makes from `data` with [`LADDER`] in a fresh local session.
pub fn local(data: Bytes) -> Vec<Vec<u8>> {
    let ladder: Ladder = LADDER.parse().expect("ladder");
    let mut s = Session::open(SessionConfig::new(ladder.clone())).expect("session");
    let (sinks, boxed) = MemorySink::ladder(ladder.len());
    s.transcode(data, boxed).expect("local");
    sinks.iter().map(MemorySink::take).collect()
}

/// A fresh self-signed `localhost` certificate: the server's TLS config and its SHA-256.
pub fn tls_identity() -> (Arc<rustls::ServerConfig>, String) {
    let identity = tls::self_signed(&["localhost".into()]).expect("cert");
    let fp = identity.fingerprint();
    (tls::server_config(identity).expect("tls"), fp)
}

/// A node config on a loopback port with a fresh certificate, and that certificate's SHA-256.
pub fn tls_config() -> (NodeConfig, String) {
    let (tls, fp) = tls_identity();
    (NodeConfig::new("127.0.0.1:0".parse().expect("addr"), Some(tls)), fp)
}

/// A node with real TLS on loopback, after `setup` adjusted its config; and its certificate's
/// SHA-256.
pub async fn start_node(setup: impl FnOnce(&mut NodeConfig)) -> (Node, String) {
    let (mut cfg, fp) = tls_config();
    setup(&mut cfg);
    (Node::start(cfg).await.expect("node"), fp)
}

/// An orchestrator without sessions of its own (every segment goes to a remote transcoder) that
/// admits the transcoders of `secrets` (lines of `id secret`, as its secrets file).
pub async fn orchestrator_admitting(secrets: &str) -> (Node, String) {
    start_node(|cfg| {
        cfg.max_sessions = 0;
        cfg.transcoders = zerohop_control::node::TranscoderSecrets::parse_secrets(secrets).expect("secrets");
    })
    .await
}

/// TLS to `localhost` with the certificate pinned by its SHA-256.
pub fn transport(fp: &str) -> Transport {
    Transport::Tls { trust: Trust::Pin(fp.to_string()), server_name: "localhost".into() }
}

/// A client of `node` over pinned TLS.
pub async fn connect(node: &Node, fp: &str, token: Option<&str>) -> Result<Client, ClientError> {
    Client::connect(&node.local_addr().to_string(), &transport(fp), token.map(String::from)).await
}

/// Pushes segment `seq` of `stream` with [`LADDER`]; calls `on_chunk` for every encoded chunk
/// and returns the outcome and each rendition's bytes.
pub async fn push_collect(
    c: &mut Client,
    stream: &str,
    seq: u64,
    data: Upload,
    mut on_chunk: impl FnMut(),
) -> Result<(PushOutcome, Renditions), ClientError> {
    let mut outs = Renditions::new();
    let o = c
        .push(stream, seq, Some(LADDER), data, |r| {
            if r.kind == Kind::Chunk {
                on_chunk();
                outs.entry(r.rendition).or_default().extend_from_slice(&r.payload);
            }
        })
        .await?;
    Ok((o, outs))
}

/// The `zerohop-error-code` trailer of a pushed segment.
pub fn error_code(o: &PushOutcome) -> Option<&str> {
    o.trailers.as_ref()?.get(headers::ERROR_CODE)?.to_str().ok()
}

/// A one-session CPU transcoder's settings for dialling `addr` with pinned TLS.
pub fn transcoder_config(addr: &str, fp: &str, id: &str, secret: &str) -> TranscoderConfig {
    TranscoderConfig {
        orch_addr: addr.to_string(),
        transport: transport(fp),
        id: id.into(),
        secret: secret.into(),
        max_sessions: 1,
        max_output: transcoder::CPU_MAX_OUTPUT,
        sessions: Default::default(),
        on_pin_mismatch: transcoder::PinMismatch::Exit,
    }
}

/// A transcoder on its own runtime; `shutdown_background` kills it like a process.
pub fn spawn_transcoder(
    cfg: TranscoderConfig,
) -> (tokio::runtime::Runtime, tokio::task::JoinHandle<Result<(), LinkError>>) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let h = rt.spawn(async move {
        let _keep = stop_tx;
        transcoder::run(cfg, stop).await
    });
    (rt, h)
}

/// How many transcoders `GET /v1/transcoders` lists.
pub async fn transcoders(c: &mut Client) -> usize {
    let (_, body) = c.get("/v1/transcoders").await.expect("status");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    v["transcoders"].as_array().map_or(0, Vec::len)
}

/// Waits (up to 5 s) until `n` transcoders are listed.
pub async fn wait_for_transcoders(c: &mut Client, n: usize) {
    for _ in 0..200 {
        if transcoders(c).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{n} transcoders did not register within 5 s");
}
