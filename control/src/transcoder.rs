//! A remote transcoder: dials out to its orchestrator (it may sit behind NAT), registers with
//! its id, secret and capacity, and runs the tasks it is sent, all over one HTTP/2 connection.
//!
//! * `POST /v1/transcoders/link`: our request body carries live load reports, the response body
//!   our tasks (JSON lines), for as long as the connection lives.
//! * Per task: `GET /v1/tasks/{id}/input` streams the broadcaster's upload while it arrives; the
//!   engine decodes it as it comes; `POST /v1/tasks/{id}/results` streams the records back.
//! * The link is re-established with exponential backoff and jitter; a wrong secret or a
//!   certificate that does not match the pin ends the transcoder with a clear error instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use zerohop_engine::{Clip, Ladder, SegmentOptions};

use crate::body::ChannelBody;
use crate::client::{Client, ClientError, Transport};
use crate::framing::{self, Kind, SEGMENT};
use crate::headers;
use crate::link::{self, LineReader, Report, ToTranscoder};
use crate::metrics as m;
use crate::relay::{Abort, InputBuf, Out, SessionSlot, SessionTable, run_local};

/// Transcoder settings.
#[derive(Debug, Clone)]
pub struct TranscoderConfig {
    pub orch_addr: String,
    pub transport: Transport,
    pub id: String,
    pub secret: String,
    /// Segments transcoded at once (advertised as capacity).
    pub max_sessions: u32,
    /// Largest output (width, height) this transcoder makes, advertised for placement.
    pub max_output: (u32, u32),
    /// Opens its sessions (CPU, or GPUs); its backend name is advertised.
    pub sessions: crate::relay::SessionFactory,
    /// What a certificate that matches no pin does to the transcoder.
    pub on_pin_mismatch: PinMismatch,
}

/// What a transcoder does when the orchestrator presents a certificate that matches no pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PinMismatch {
    /// Keep dialling with backoff, logging an error each time: an orchestrator restarted with a
    /// new certificate by mistake can be fixed there, without touching every transcoder.
    #[default]
    Retry,
    /// Stop with [`LinkError::CertificateMismatch`].
    Exit,
}

/// What the CPU backend encodes at most: OpenH264 at level 5.2's frame size.
pub const CPU_MAX_OUTPUT: (u32, u32) = (4096, 2304);

/// Why the transcoder stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the orchestrator refused transcoder id {id:?}: {message} (check --orch-secret-file)")]
    BadSecret { id: String, message: String },
    #[error("the orchestrator's certificate does not match --orch-cert-sha256; not connecting")]
    CertificateMismatch,
    #[error("the orchestrator does not accept remote transcoders: {0}")]
    NotAccepted(String),
    #[error("the orchestrator refused this transcoder's link protocol: {0}")]
    IncompatibleVersion(String),
}

enum Attempt {
    Stopped,
    Lost(String),
    /// The orchestrator closed this link for a new one with our id, from `new` (it saw this one
    /// come from `old`).
    Replaced {
        old: String,
        new: String,
    },
}

/// What the links of one transcoder share: the segments it runs now (whichever orchestrator
/// sent them: every link reports this one load against one capacity, so a segment from one
/// orchestrator counts against what the others may send) and how many orchestrators are linked.
#[derive(Debug, Clone)]
pub struct Shared {
    load: Arc<watch::Sender<u32>>,
    linked: Arc<AtomicUsize>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared { load: Arc::new(watch::channel(0).0), linked: Arc::default() }
    }
}

impl Shared {
    /// Orchestrators linked now (what the transcoder's `/readyz` answers from).
    pub fn linked(&self) -> usize {
        self.linked.load(Ordering::Acquire)
    }

    /// Segments running now, all links together.
    pub fn load(&self) -> u32 {
        *self.load.borrow()
    }

    /// Counts one more linked orchestrator for as long as the guard lives.
    pub(crate) fn registered(&self) -> impl Drop + '_ {
        Registered::new(&self.linked)
    }
}

/// Counts a registered link for as long as it lives.
struct Registered<'a>(&'a AtomicUsize);

impl<'a> Registered<'a> {
    fn new(linked: &'a AtomicUsize) -> Registered<'a> {
        let n = linked.fetch_add(1, Ordering::AcqRel) + 1;
        metrics::gauge!(m::ORCHESTRATORS_LINKED).set(n as f64);
        Registered(linked)
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let n = self.0.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!(m::ORCHESTRATORS_LINKED).set(n as f64);
    }
}

/// Runs until `stop` turns true (then finishes running tasks) or a fatal error.
pub async fn run(config: TranscoderConfig, stop: watch::Receiver<bool>) -> Result<(), LinkError> {
    run_shared(config, stop, Shared::default()).await
}

/// One link per orchestrator (`configs` differ in `orch_addr` and `transport`), each
/// reconnecting on its own, all sharing one capacity. A fatal error on one link (a wrong secret
/// there) ends that link and is logged; the others go on. Returns when every link has ended:
/// the first fatal error, if any.
pub async fn run_all(
    configs: Vec<TranscoderConfig>,
    stop: watch::Receiver<bool>,
    shared: Shared,
) -> Result<(), LinkError> {
    let links: Vec<_> = configs
        .into_iter()
        .map(|c| {
            let orch = c.orch_addr.clone();
            (orch, tokio::spawn(run_shared(c, stop.clone(), shared.clone())))
        })
        .collect();
    let mut first = None;
    for (orch, link) in links {
        match link.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(%orch, error = %e, "the link to this orchestrator ended for good");
                first.get_or_insert(e);
            }
            Err(e) => tracing::error!(%orch, error = %e, "the link task panicked"),
        }
    }
    first.map_or(Ok(()), Err)
}

/// [`run`] as one of several links sharing `shared`.
pub async fn run_shared(
    config: TranscoderConfig,
    mut stop: watch::Receiver<bool>,
    shared: Shared,
) -> Result<(), LinkError> {
    metrics::counter!(m::TRANSCODER_TASKS_ABANDONED).increment(0);
    let sessions = SessionTable::default();
    let mut backoff = Duration::from_millis(250);
    // Times in a row this link was replaced by another with our id.
    let mut replaced = 0u32;
    loop {
        let began = Instant::now();
        match attempt(&config, &sessions, &mut stop, &shared).await? {
            Attempt::Stopped => return Ok(()),
            Attempt::Lost(why) => {
                replaced = 0;
                tracing::warn!(orch = %config.orch_addr, reason = %why, "link to orchestrator lost");
                if began.elapsed() > Duration::from_secs(30) {
                    backoff = Duration::from_millis(250);
                }
            }
            // A link that hears it was replaced was alive: what replaced it is most likely
            // another box (or process) with our id, so the backoff keeps growing (no reset).
            Attempt::Replaced { old, new } => {
                replaced += 1;
                let orch = &config.orch_addr;
                let id = &config.id;
                if replaced == 1 {
                    tracing::warn!(
                        %orch, %id, this_link = %old, new_link = %new,
                        "the orchestrator closed this link: a new link with this transcoder id came from {new}; \
                         reconnecting. If {new} is not this box re-linking, two transcoders share the id {id:?}: \
                         give each its own --transcoder-id"
                    );
                } else {
                    tracing::error!(
                        %orch, %id, this_link = %old, new_link = %new, replaced,
                        "this link was replaced {replaced} times in a row by links with the same id from elsewhere \
                         (last from {new}): two transcoders share the id {id:?}; give each its own --transcoder-id"
                    );
                }
            }
        }
        let wait = jittered(backoff, jitter_fraction());
        tracing::info!(wait_ms = wait.as_millis() as u64, "reconnecting");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return Ok(()),
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// The wait before redialling: a random share of `backoff` in [backoff/2, backoff] (`fraction`
/// in [0, 1)), so transcoders cut off together do not all dial back at the same instant.
pub(crate) fn jittered(backoff: Duration, fraction: f64) -> Duration {
    backoff.mul_f64(0.5 + fraction.clamp(0.0, 1.0) / 2.0)
}

/// A uniform number in [0, 1) from the operating system's RNG; the middle, 0.5, in the unlikely
/// case that it cannot be read (the backoff still doubles).
pub(crate) fn jitter_fraction() -> f64 {
    match getrandom::u64() {
        // The top 53 bits: every value an f64 in [0, 1) holds at this spacing, equally likely.
        Ok(r) => (r >> 11) as f64 / (1u64 << 53) as f64,
        Err(e) => {
            tracing::debug!(error = %e, "no random bytes for the reconnect jitter; waiting 3/4 of the backoff");
            0.5
        }
    }
}

async fn attempt(
    config: &TranscoderConfig,
    sessions: &SessionTable,
    stop: &mut watch::Receiver<bool>,
    shared: &Shared,
) -> Result<Attempt, LinkError> {
    let client = match Client::connect(&config.orch_addr, &config.transport, None).await {
        Ok(c) => Arc::new(c),
        Err(ClientError::CertificateMismatch) if config.on_pin_mismatch == PinMismatch::Exit => {
            return Err(LinkError::CertificateMismatch);
        }
        Err(ClientError::CertificateMismatch) => {
            tracing::error!(
                orch = %config.orch_addr,
                "the orchestrator's certificate matches no --orch-cert-sha256 pin: not linking; retrying with backoff \
                 (fix the orchestrator's identity, or add its new fingerprint to the pins; --exit-on-pin-mismatch stops instead)"
            );
            return Ok(Attempt::Lost("certificate matches no pin".into()));
        }
        Err(e) => return Ok(Attempt::Lost(e.to_string())),
    };
    let (report_tx, report_body) = ChannelBody::channel(16);
    let backend = config.sessions.backend.clone();
    // The first report rides with the request; later ones follow the shared load.
    let mut load_rx = shared.load.subscribe();
    let first = *load_rx.borrow_and_update();
    report_tx.try_send(Ok(Frame::data(report_line(&backend, config.max_sessions, first)))).ok();
    let req = client
        .request(Method::POST, "/v1/transcoders/link")
        .header(headers::TRANSCODER_ID, &config.id)
        .header(http::header::AUTHORIZATION, format!("Bearer {}", config.secret))
        .header(headers::CAPACITY, config.max_sessions)
        .header(headers::LINK_VERSION, link::VERSION)
        .header(headers::CAPABILITIES, link::encode_capabilities(&backend, &config.sessions.devices, config.max_output))
        .body(report_body);
    let Ok(req) = req else { return Ok(Attempt::Lost("bad request".into())) };
    let resp = match client.send(req).await {
        Ok(r) => r,
        Err(e) => return Ok(Attempt::Lost(e.to_string())),
    };
    match resp.status() {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED => {
            let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let message = String::from_utf8_lossy(&body).into_owned();
            return Err(LinkError::BadSecret { id: config.id.clone(), message });
        }
        StatusCode::FORBIDDEN => return Err(LinkError::NotAccepted("403".into())),
        StatusCode::BAD_REQUEST => {
            let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let message = String::from_utf8_lossy(&body).into_owned();
            if message.contains(crate::fault::code::LINK_VERSION) {
                return Err(LinkError::IncompatibleVersion(message));
            }
            return Ok(Attempt::Lost(format!("link refused with 400: {message}")));
        }
        s => {
            // Say why: the operator reads this, not the status.
            let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let why = String::from_utf8_lossy(&body).trim().to_string();
            tracing::warn!(orch = %config.orch_addr, status = %s, %why, "the orchestrator refused the link");
            return Ok(Attempt::Lost(format!("link refused with {s}: {why}")));
        }
    }
    tracing::info!(orch = %config.orch_addr, id = %config.id, capacity = config.max_sessions, "registered with orchestrator");
    let _registered = Registered::new(&shared.linked);
    let capacity = config.max_sessions;
    let reporter = tokio::spawn(async move {
        while load_rx.changed().await.is_ok() {
            let l = *load_rx.borrow_and_update();
            if report_tx.send(Ok(Frame::data(report_line(&backend, capacity, l)))).await.is_err() {
                break;
            }
        }
    });
    let mut tasks = resp.into_body();
    let mut lines = LineReader::default();
    // Turned true when the orchestrator replaces this link: it has already failed this link's
    // tasks over, so their work here is wasted and they stop (each task's input ends aborted).
    let (abandon, _) = watch::channel(false);
    let result = 'link: loop {
        let frame = tokio::select! {
            f = tasks.frame() => f,
            _ = stop.changed() => break Attempt::Stopped,
        };
        let data = match frame {
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
            Some(Err(e)) => break Attempt::Lost(e.to_string()),
            None => break Attempt::Lost("the orchestrator closed the link".into()),
        };
        lines.push(&data);
        while let Some(line) = lines.poll() {
            let Ok(line) = line else { break };
            let (task, stream, ladder) = match ToTranscoder::parse(&line) {
                Some(ToTranscoder::Task { task, stream, seq, ladder, clip }) => (task, (stream, seq), (ladder, clip)),
                Some(ToTranscoder::Replaced { old, new }) => {
                    // Each running task's input feed holds a receiver until its input ends.
                    let running = abandon.receiver_count();
                    abandon.send_replace(true);
                    if running > 0 {
                        tracing::info!(
                            running,
                            "stopping this link's tasks: the orchestrator failed them over when it replaced the link"
                        );
                    }
                    break 'link Attempt::Replaced { old, new };
                }
                Some(ToTranscoder::EndStream { stream }) => {
                    // The broadcaster ended the stream: free its sessions unless a task still runs.
                    let (closed, open) = sessions.end(&stream);
                    if closed {
                        tracing::info!(%stream, "stream ended; sessions closed");
                    }
                    metrics::gauge!(m::TRANSCODER_STREAMS).set(open as f64);
                    continue;
                }
                None => continue,
            };
            let (stream, seq) = stream;
            let (slot, open) = sessions.slot(&stream);
            metrics::gauge!(m::TRANSCODER_STREAMS).set(open as f64);
            let (client, config, load) = (client.clone(), config.clone(), shared.load.clone());
            let abandoned = abandon.subscribe();
            tokio::spawn(async move {
                load.send_modify(|l| *l += 1);
                let hop = (stream, seq);
                if let Err(e) = run_task(&client, &config, task, &hop, slot, ladder, abandoned).await {
                    tracing::warn!(task, error = %e, "task failed on this transcoder");
                }
                load.send_modify(|l| *l = l.saturating_sub(1));
            });
        }
    };
    if matches!(result, Attempt::Stopped) {
        // Drain: finish what we have, then leave.
        shared.load.subscribe().wait_for(|l| *l == 0).await.ok();
    }
    reporter.abort();
    Ok(result)
}

/// One live report: what the orchestrator's scheduler counts (JSON line).
fn report_line(backend: &str, capacity: u32, load: u32) -> Bytes {
    Report { capacity, load }.encode(backend)
}

async fn run_task(
    client: &Client,
    config: &TranscoderConfig,
    task: u64,
    (stream, seq): &(String, String),
    slot: SessionSlot,
    ladder: (Ladder, Option<Clip>),
    mut abandoned: watch::Receiver<bool>,
) -> Result<(), String> {
    let auth = format!("Bearer {}", config.secret);
    let req = client
        .request(Method::GET, &format!("/v1/tasks/{task}/input"))
        .header(headers::TRANSCODER_ID, &config.id)
        .header(http::header::AUTHORIZATION, &auth)
        .body(ChannelBody::empty())
        .map_err(|e| e.to_string())?;
    let resp = client.send(req).await.map_err(|e| e.to_string())?;
    if resp.status() != StatusCode::OK {
        return Err(format!("input refused with {}", resp.status()));
    }
    // Input as it arrives -> engine.
    let input = InputBuf::new();
    let feed = input.writer();
    let mut body = resp.into_body();
    let mut input_span = crate::hop_log::Span::new(stream, seq, "input");
    let mut result_span = crate::hop_log::Span::new(stream, seq, "result");
    tokio::spawn(async move {
        // Pending for ever once the link ended any other way (its sender dropped): a lost link's
        // tasks finish, their results may still be wanted.
        let abandon = async {
            if abandoned.wait_for(|a| *a).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(abandon);
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                () = &mut abandon => {
                    metrics::counter!(m::TRANSCODER_TASKS_ABANDONED).increment(1);
                    return feed.end(Err(Abort::new(
                        crate::fault::code::TASK_FAILED_OVER,
                        "this transcoder's link was replaced; the orchestrator failed the task over",
                    )));
                }
            };
            match frame {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        input_span.saw();
                        feed.push(d);
                    }
                }
                Some(Err(e)) => {
                    return feed
                        .end(Err(Abort::new(crate::fault::code::INPUT_BROKEN, format!("input broke off: {e}"))));
                }
                None => {
                    input_span.last();
                    return feed.end(Ok(()));
                }
            }
        }
    });
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(64);
    let engine_input = input.clone();
    let sessions = config.sessions.clone();
    let (hop_stream, hop_seq) = (stream.clone(), seq.clone());
    tokio::task::spawn_blocking(move || {
        let (ladder, clip) = ladder;
        let timeline = crate::hop_log::engine_timeline();
        let options = SegmentOptions { clip, timeline: timeline.clone() };
        let _ = run_local(&slot, &sessions, ladder, options, &engine_input, &out_tx, || {});
        if let Some(t) = &timeline {
            crate::hop_log::engine_events(&hop_stream, &hop_seq, t);
        }
    });
    // Engine -> result records, streamed.
    let (tx, results) = ChannelBody::channel(32);
    let req = client
        .request(Method::POST, &format!("/v1/tasks/{task}/results"))
        .header(headers::TRANSCODER_ID, &config.id)
        .header(http::header::AUTHORIZATION, &auth)
        .body(results)
        .map_err(|e| e.to_string())?;
    let forward = tokio::spawn(async move {
        let start = framing::record(Kind::Start, SEGMENT, json!({"task": task}).to_string().as_bytes());
        if tx.send(Ok(Frame::data(start))).await.is_err() {
            return;
        }
        while let Some(o) = out_rx.recv().await {
            let end = matches!(o, Out::End { .. });
            if tx.send(Ok(Frame::data(o.to_record()))).await.is_err() || end {
                if end {
                    result_span.last();
                }
                return;
            }
            result_span.saw();
        }
    });
    let resp = client.send(req).await.map_err(|e| e.to_string())?;
    let _ = forward.await;
    if resp.status() == StatusCode::OK { Ok(()) } else { Err(format!("results refused with {}", resp.status())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_uniform_in_its_range_and_the_wait_stays_within_the_backoff() {
        let draws: Vec<f64> = (0..10_000).map(|_| jitter_fraction()).collect();
        assert!(draws.iter().all(|f| (0.0..1.0).contains(f)), "a fraction outside [0, 1)");
        let distinct: std::collections::BTreeSet<u64> = draws.iter().map(|f| f.to_bits()).collect();
        assert!(distinct.len() > 9_900, "{} distinct values in 10000 draws", distinct.len());
        // Each tenth of [0, 1) holds about 1000 of them (binomial, sd 30): far outside 800..1200
        // only when the numbers are not uniform.
        let mut tenths = [0u32; 10];
        for f in &draws {
            tenths[(f * 10.0) as usize] += 1;
        }
        assert!(tenths.iter().all(|&n| (800..1200).contains(&n)), "tenths {tenths:?}");
        let backoff = Duration::from_secs(8);
        for f in draws.iter().copied().chain([0.0, 0.999_999_999, -1.0, 2.0]) {
            let wait = jittered(backoff, f);
            assert!(wait >= backoff / 2 && wait <= backoff, "{f}: {wait:?}");
        }
        assert_eq!(jittered(backoff, 0.0), backoff / 2);
    }
}
