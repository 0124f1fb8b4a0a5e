//! Helpers shared by the control plane's integration tests: a node on loopback with real TLS,
//! the client's transport to it, pushes that collect the renditions, transcoders on their own
//! runtimes, and the fixtures.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use zerohop_control::framing::{Kind, Record, RecordReader};
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

/// Pushes segment `seq` of `stream` with [`LADDER`] and shows that the node streams by the order
/// of events, not by timing: the first half of `data` goes up, the second only once a first
/// encoded chunk has come back. A node that answered only after the whole upload would never
/// answer, and the wait fails after [`EVENT`]. Returns the end record's JSON and each
/// rendition's bytes.
pub async fn push_holding_back_the_end(
    c: &Client,
    stream: &str,
    seq: u64,
    data: Bytes,
) -> (serde_json::Value, Renditions) {
    use http_body_util::BodyExt;
    let (tx, body) = zerohop_control::body::ChannelBody::channel(2);
    let req = c
        .request(http::Method::POST, &format!("/v1/streams/{stream}/segments/{seq}"))
        .header(headers::PROFILES, LADDER)
        .body(body)
        .expect("request");
    let half = data.len() / 2;
    tx.send(Ok(http_body::Frame::data(data.slice(..half)))).await.expect("first half");
    let mut reader = RecordReader::new();
    let mut records: Vec<Record> = Vec::new();
    fn read(reader: &mut RecordReader, records: &mut Vec<Record>, frame: http_body::Frame<Bytes>) {
        if let Ok(d) = frame.into_data() {
            reader.push(&d);
            while let Some(r) = reader.poll() {
                records.push(r.expect("a record"));
            }
        }
    }
    let first_chunk = async {
        let mut body = c.send(req).await.expect("send").into_body();
        while !records.iter().any(|r| r.kind == Kind::Chunk) {
            read(&mut reader, &mut records, body.frame().await.expect("results go on").expect("results"));
        }
        body
    };
    let held = format!("a first chunk while the upload's second half is held back, within {EVENT:?}");
    let mut body = tokio::time::timeout(EVENT, first_chunk).await.expect(&held);
    tx.send(Ok(http_body::Frame::data(data.slice(half..)))).await.expect("second half");
    drop(tx);
    while let Some(frame) = body.frame().await {
        read(&mut reader, &mut records, frame.expect("results"));
    }
    reader.finish().expect("whole records");
    let mut end = serde_json::Value::Null;
    let mut outs = Renditions::new();
    for r in records {
        match r.kind {
            Kind::Chunk => outs.entry(r.rendition).or_default().extend_from_slice(&r.payload),
            Kind::Error => panic!("rendition {}: {}", r.rendition, String::from_utf8_lossy(&r.payload)),
            Kind::End => end = serde_json::from_slice(&r.payload).expect("end json"),
            Kind::Start | Kind::Done => {}
        }
    }
    (end, outs)
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

/// What `GET /v1/transcoders` lists: one JSON object per transcoder.
pub async fn transcoder_list(c: &mut Client) -> Vec<serde_json::Value> {
    let (_, body) = c.get("/v1/transcoders").await.expect("status");
    let mut v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    match v["transcoders"].take() {
        serde_json::Value::Array(list) => list,
        other => panic!("no transcoder list: {other}"),
    }
}

/// How many transcoders `GET /v1/transcoders` lists.
pub async fn transcoders(c: &mut Client) -> usize {
    transcoder_list(c).await.len()
}

/// Waits until `n` transcoders are listed.
pub async fn wait_for_transcoders(c: &mut Client, n: usize) {
    wait_until(&format!("{n} transcoders registered"), EVENT, async || transcoders(c).await == n).await;
}

/// How long a test waits for something the node or a transcoder does on its own (registering,
/// freeing a session, stopping a task): far beyond what that takes on a loaded 2-core machine
/// (under a second). A wait ends as soon as the event happens, so only a failing test waits
/// this long.
pub const EVENT: Duration = Duration::from_secs(30);

/// What a [`wait_until`] check answers: `true` or `Some(value)` once the awaited event happened.
pub trait Happened {
    type Value;
    fn happened(self) -> Option<Self::Value>;
}

impl Happened for bool {
    type Value = ();
    fn happened(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Happened for Option<T> {
    type Value = T;
    fn happened(self) -> Option<T> {
        self
    }
}

/// Synchronises on an event instead of a sleep: runs `check` every 20 ms until it answers
/// `true` or `Some(value)` (returned), and panics naming `what` once `within` has passed
/// without that.
pub async fn wait_until<R: Happened>(what: &str, within: Duration, mut check: impl AsyncFnMut() -> R) -> R::Value {
    let until = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await.happened() {
            return v;
        }
        assert!(tokio::time::Instant::now() < until, "waited {within:?} in vain: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Prometheus recorder is process-wide: every node and transcoder of one test binary
/// counts in the same series, and the tests of a binary run in parallel. So a test that asserts
/// how far a series moved holds [`measuring_series`] while it measures (it runs alone), and
/// every other test of that binary that moves the series holds [`moving_series`] (the movers
/// run together, never beside a measuring test).
static SERIES: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Held by a test that moves series another test of its binary measures.
pub async fn moving_series() -> tokio::sync::RwLockReadGuard<'static, ()> {
    SERIES.read().await
}

/// Held by a test while it measures how far series move (no other test moves them meanwhile).
pub async fn measuring_series() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    SERIES.write().await
}

/// The sum of a series' samples in the Prometheus exposition `text`: `name` with any labels
/// (`zerohop_segments_failed_total`), or exactly the labelled series
/// (`zerohop_segments_failed_total{reason="too_large"}`); 0 where there is none.
pub fn series_in(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(key, _)| *key == name || key.strip_prefix(name).is_some_and(|labels| labels.starts_with('{')))
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

/// [`series_in`] this process's exposition now (what `GET /metrics` of any node here answers).
pub fn series(name: &str) -> f64 {
    series_in(&zerohop_control::metrics::render(), name)
}
