//! A zerohop transcoder in a go-livepeer orchestrator's pool (`zerohop transcoder
//! --livepeer-orch`): Livepeer's own transcoder protocol (go-livepeer `server/ot_rpc.go`).
//!
//! 1. `RegisterTranscoder` (gRPC, server-streaming) with the secret, the capacity in sessions
//!    and honest capability bits; the answer streams one `NotifySegment` per task.
//! 2. Per task: `GET` the whole input at the notify's URL, streamed into the engine as it
//!    arrives; the ladder comes from the notify's `SegData`.
//! 3. `POST /transcodeResults`: `multipart/mixed`, one part per rendition in ladder order, each
//!    with its own `Pixels` (go-livepeer drops a part without one, silently), the task's decoded
//!    pixels in the request's `Pixels`; or `livepeer/transcoding-error` with the error's text.
//!
//! The orchestrator waits `max(8 s, 4 x duration)` for a result and drops the whole link of a
//! transcoder that misses it, so a task that would miss it fails first, with an error. A notify
//! with an empty URL ends the session named in its `SegData`. `invalid secret` and
//! `zero capacity` are fatal; anything else redials with backoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::{mpsc, watch};
use zerohop_engine::profile::CodecProfile;
use zerohop_engine::{Ladder, SegmentOptions, SegmentReport};

use super::capabilities::{self, Capability};
use super::grpc::{self, MessageReader, Status};
use super::messages::{NotifySegment, RegisterRequest};
use super::results::{self, Rendition};
use super::{errors, ladder};
use crate::body::ChannelBody;
use crate::client::{Client, Transport};
use crate::relay::{Abort, InputBuf, Out, SessionFactory, SessionSlot, SessionTable, run_local};

/// go-livepeer's `Authorization` value for a transcoder's requests.
pub const AUTH_SCHEME: &str = "Livepeer-Transcoder-1.0";

/// The orchestrator's shortest wait for a result (go-livepeer `common.HTTPTimeout`).
const MIN_DEADLINE: Duration = Duration::from_secs(8);
/// How much of the orchestrator's deadline is kept for posting the results.
const POST_MARGIN: Duration = Duration::from_millis(1500);

/// A zerohop transcoder's settings for a Livepeer orchestrator.
#[derive(Debug, Clone)]
pub struct LivepeerTranscoderConfig {
    /// HOST:PORT of the orchestrator's service address.
    pub orch_addr: String,
    /// TLS with `Trust::AnyCertificate` (go-livepeer's way) or a pin.
    pub transport: Transport,
    pub secret: String,
    /// Sessions at once (advertised capacity).
    pub capacity: u32,
    pub sessions: SessionFactory,
    /// The H.264 profiles whose decoders read what this engine writes (for capability bits).
    pub profiles: Vec<CodecProfile>,
}

impl LivepeerTranscoderConfig {
    /// The capabilities this transcoder registers with.
    pub fn capabilities(&self) -> Vec<Capability> {
        capabilities::zerohop(&self.profiles)
    }
}

/// Why the transcoder stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum LivepeerLinkError {
    #[error(
        "the Livepeer orchestrator at {orch} refused the secret (\"invalid secret\"): give the orchestrator's -orchSecret \
         with --orch-secret-file or ZEROHOP_ORCH_SECRET"
    )]
    InvalidSecret { orch: String },
    #[error(
        "the Livepeer orchestrator at {orch} refused a capacity of {capacity} (\"zero capacity\"): set --max-sessions to 1 or more"
    )]
    ZeroCapacity { orch: String, capacity: u32 },
}

enum Attempt {
    Stopped,
    Lost(String),
}

/// Registers with the orchestrator and serves its tasks until `stop` (then finishes the running
/// tasks) or a fatal refusal; redials with backoff (250 ms doubling to 30 s, jittered) after
/// anything else.
pub async fn run(config: LivepeerTranscoderConfig, stop: watch::Receiver<bool>) -> Result<(), LivepeerLinkError> {
    run_shared(config, stop, crate::transcoder::Shared::default()).await
}

/// [`run`], counting the link in `shared` while registered (what the transcoder's `/readyz`
/// answers from).
pub async fn run_shared(
    config: LivepeerTranscoderConfig,
    mut stop: watch::Receiver<bool>,
    shared: crate::transcoder::Shared,
) -> Result<(), LivepeerLinkError> {
    let sessions = SessionTable::default();
    let running = Arc::new(watch::channel(0u32).0);
    let mut backoff = Duration::from_millis(250);
    loop {
        let began = Instant::now();
        match attempt(&config, &sessions, &running, &mut stop, &shared).await? {
            Attempt::Stopped => {
                running.subscribe().wait_for(|n| *n == 0).await.ok();
                return Ok(());
            }
            Attempt::Lost(why) => {
                tracing::warn!(orch = %config.orch_addr, reason = %why, "Livepeer orchestrator link lost");
                if began.elapsed() > Duration::from_secs(30) {
                    backoff = Duration::from_millis(250);
                }
            }
        }
        let wait = crate::transcoder::jittered(backoff, crate::transcoder::jitter_fraction());
        tracing::info!(wait_ms = wait.as_millis() as u64, "redialling the Livepeer orchestrator");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return Ok(()),
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn attempt(
    config: &LivepeerTranscoderConfig,
    sessions: &SessionTable,
    running: &Arc<watch::Sender<u32>>,
    stop: &mut watch::Receiver<bool>,
    shared: &crate::transcoder::Shared,
) -> Result<Attempt, LivepeerLinkError> {
    let client = match Client::connect(&config.orch_addr, &config.transport, None).await {
        Ok(c) => Arc::new(c),
        Err(e) => return Ok(Attempt::Lost(e.to_string())),
    };
    let register = RegisterRequest {
        secret: config.secret.clone(),
        capacity: i64::from(config.capacity),
        capabilities: Some(capabilities::message(&config.capabilities(), config.capacity)),
    };
    let req = client
        .request(Method::POST, grpc::REGISTER_TRANSCODER)
        .header(http::header::CONTENT_TYPE, grpc::CONTENT_TYPE)
        .header(http::header::TE, "trailers")
        .body(ChannelBody::full(grpc::frame(&register)));
    let Ok(req) = req else { return Ok(Attempt::Lost("bad request".into())) };
    let resp = match client.send(req).await {
        Ok(r) => r,
        Err(e) => return Ok(Attempt::Lost(e.to_string())),
    };
    if resp.status() != StatusCode::OK {
        return Ok(Attempt::Lost(format!("RegisterTranscoder answered HTTP {}", resp.status())));
    }
    // A refusal comes as a trailers-only answer: the status in the headers.
    if let Some(s) = Status::from_headers(resp.headers()) {
        return refused(config, s);
    }
    tracing::info!(orch = %config.orch_addr, capacity = config.capacity, "registered with the Livepeer orchestrator");
    let _registered = shared.registered();
    let mut body = resp.into_body();
    let mut reader = MessageReader::default();
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = stop.changed() => break Ok(Attempt::Stopped),
        };
        let frame = match frame {
            Some(Ok(f)) => f,
            Some(Err(e)) => break Ok(Attempt::Lost(e.to_string())),
            None => break Ok(Attempt::Lost("the orchestrator ended the notify stream".into())),
        };
        let data = match frame.into_data() {
            Ok(d) => d,
            Err(f) => match f.into_trailers().ok().and_then(|t| Status::from_headers(&t)) {
                Some(s) if s.code != grpc::status::OK => break refused(config, s),
                _ => break Ok(Attempt::Lost("the orchestrator ended the notify stream".into())),
            },
        };
        reader.push(&data);
        while let Some(m) = reader.poll() {
            let notify: NotifySegment = match m.and_then(|b| {
                super::trace::received("NotifySegment", &b);
                grpc::decode(b, "NotifySegment")
            }) {
                Ok(n) => n,
                Err(e) => return Ok(Attempt::Lost(e.to_string())),
            };
            on_notify(config, &client, sessions, running, notify);
        }
    }
}

/// A refusal of the registration: fatal for a wrong secret or capacity, as in go-livepeer.
fn refused(config: &LivepeerTranscoderConfig, s: Status) -> Result<Attempt, LivepeerLinkError> {
    let orch = config.orch_addr.clone();
    match s.message.as_str() {
        errors::INVALID_SECRET => Err(LivepeerLinkError::InvalidSecret { orch }),
        errors::ZERO_CAPACITY => Err(LivepeerLinkError::ZeroCapacity { orch, capacity: config.capacity }),
        m => Ok(Attempt::Lost(format!("RegisterTranscoder refused (gRPC status {}): {m}", s.code))),
    }
}

fn on_notify(
    config: &LivepeerTranscoderConfig,
    client: &Arc<Client>,
    sessions: &SessionTable,
    running: &Arc<watch::Sender<u32>>,
    notify: NotifySegment,
) {
    let session = notify.seg_data.as_ref().and_then(|s| s.session_id()).map(str::to_string);
    if notify.url.is_empty() {
        if let Some(id) = session {
            let (closed, _) = sessions.end(&id);
            tracing::info!(session = %id, closed, "the orchestrator ended a transcoding session");
        }
        return;
    }
    // Without a session id, the stream (manifest id) keeps one warm session.
    let key = session.unwrap_or_else(|| {
        notify.seg_data.as_ref().map(|s| String::from_utf8_lossy(&s.manifest_id).into_owned()).unwrap_or_default()
    });
    let (slot, _) = sessions.slot(&key);
    let (config, client, running) = (config.clone(), client.clone(), running.clone());
    tokio::spawn(async move {
        running.send_modify(|n| *n += 1);
        task(&config, &client, slot, notify).await;
        running.send_modify(|n| *n -= 1);
    });
}

/// One task, from notify to posted result.
async fn task(config: &LivepeerTranscoderConfig, client: &Client, slot: SessionSlot, notify: NotifySegment) {
    let started = Instant::now();
    let task_id = notify.task_id;
    let seg = notify.seg_data.clone().unwrap_or_default();
    let budget = MIN_DEADLINE.max(seg.duration() * 4).saturating_sub(POST_MARGIN);
    let outcome = match ladder::from_livepeer(seg.ladder()) {
        Err(e) => Err(errors::for_ladder(&e)),
        Ok(ladder) => {
            let needed = seg.capabilities.as_ref().map(|c| c.bitstring.clone()).unwrap_or_default();
            let have = capabilities::bitstring(&config.capabilities());
            if !capabilities::compatible(&needed, &have) {
                let lack = capabilities::missing(&needed, &have).join(", ");
                Err(format!("{}: zerohop lacks {lack}", errors::INCOMPATIBLE_CAPABILITIES))
            } else {
                match tokio::time::timeout(budget, transcode(config, &notify.url, slot, ladder, ladder::options(&seg)))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(format!(
                        "zerohop: the transcode did not finish within {} ms of the orchestrator's {} ms deadline; \
                         failing the task rather than losing the link",
                        budget.as_millis(),
                        (budget + POST_MARGIN).as_millis()
                    )),
                }
            }
        }
    };
    let mut posted = post(config, client, task_id, outcome.as_ref()).await;
    if let Err(Post::Connection(e)) = &posted {
        // The registration's connection broke: the result still counts on a new one (go-livepeer
        // posts with its own client, which redials).
        tracing::info!(task_id, error = %e, "posting the result again on a new connection");
        posted = match Client::connect(&config.orch_addr, &config.transport, None).await {
            Ok(c) => post(config, &c, task_id, outcome.as_ref()).await,
            Err(e) => Err(Post::Connection(e.to_string())),
        };
    }
    match (&outcome, posted) {
        (Ok(_), Ok(())) => tracing::info!(task_id, ms = started.elapsed().as_millis() as u64, "task done"),
        (Err(e), Ok(())) => tracing::warn!(task_id, error = %e, "task failed; the error was sent"),
        (_, Err(e)) => tracing::warn!(task_id, error = %e, "the result could not be posted"),
    }
}

/// The finished task: each rendition's bytes and pixels, and the decoded pixels.
struct Done {
    renditions: Vec<Rendition>,
    decoded_pixels: i64,
}

async fn transcode(
    config: &LivepeerTranscoderConfig,
    url: &str,
    slot: SessionSlot,
    ladder: Ladder,
    options: SegmentOptions,
) -> Result<Done, String> {
    let input = InputBuf::new();
    // Stopped with this future too (a task past its budget stops downloading).
    let fetch = AbortOnDrop(tokio::spawn(fetch_input(url.to_string(), config.transport.clone(), input.clone())));
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(64);
    let sessions = config.sessions.clone();
    let renditions = ladder.len();
    let engine_input = input.clone();
    let engine = tokio::task::spawn_blocking(move || {
        run_local(&slot, &sessions, ladder, options, &engine_input, &out_tx, || {})
    });
    let gathered = crate::relay::gather(&mut out_rx, renditions).await;
    // The engine may still be sending (gathering stops at the first error): it stops when no
    // one reads.
    drop(out_rx);
    drop(fetch);
    let report: SegmentReport = match engine.await {
        Ok(Ok(r)) => r,
        Ok(Err(f)) => return Err(errors::for_failure(&f)),
        Err(e) => return Err(format!("zerohop: the engine task failed: {e}")),
    };
    let renditions = gathered
        .map_err(|(code, message)| errors::text(&code, &message))?
        .into_iter()
        .map(|(data, pixels)| Rendition { data, pixels: pixels as i64 })
        .collect();
    let decoded_pixels =
        (report.frames_decoded * u64::from(report.input.width) * u64::from(report.input.height)) as i64;
    Ok(Done { renditions, decoded_pixels })
}

/// A spawned task stopped when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Streams the input at `url` into `input` (go-livepeer serves it from the orchestrator's own
/// HTTPS port).
async fn fetch_input(url: String, transport: Transport, input: Arc<InputBuf>) {
    let feed = input.writer();
    let fail = |why: String| Err(Abort::new(crate::fault::code::UPLOAD_FAILED, why));
    let Ok(uri) = url.parse::<http::Uri>() else {
        return feed.end(fail(format!("the input URL {url:?} is not a URL")));
    };
    let (Some(authority), path) = (uri.authority(), uri.path_and_query().map_or("/", |p| p.as_str())) else {
        return feed.end(fail(format!("the input URL {url:?} names no host")));
    };
    let client = match Client::connect(authority.as_str(), &transport, None).await {
        Ok(c) => c,
        Err(e) => return feed.end(fail(format!("fetching the input from {authority}: {e}"))),
    };
    let req = match client.request(Method::GET, path).body(ChannelBody::empty()) {
        Ok(r) => r,
        Err(e) => return feed.end(fail(e.to_string())),
    };
    let mut body = match client.send(req).await {
        Ok(r) if r.status() == StatusCode::OK => r.into_body(),
        Ok(r) => return feed.end(fail(format!("the input URL answered {}", r.status()))),
        Err(e) => return feed.end(fail(format!("fetching the input: {e}"))),
    };
    let mut total = 0u64;
    loop {
        match body.frame().await {
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    total += d.len() as u64;
                    if total > crate::relay::DEFAULT_MAX_SEGMENT {
                        let why = format!("the input is over {} bytes", crate::relay::DEFAULT_MAX_SEGMENT);
                        return feed.end(Err(Abort::new(crate::fault::code::TOO_LARGE, why)));
                    }
                    feed.push(d);
                }
            }
            Some(Err(e)) => return feed.end(fail(format!("the input broke off: {e}"))),
            None => return feed.end(Ok(())),
        }
    }
}

/// Why a result was not taken.
#[derive(Debug)]
enum Post {
    /// The connection failed (worth one more try on a new one).
    Connection(String),
    /// The orchestrator answered, not with 2xx.
    Refused(String),
}

impl std::fmt::Display for Post {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Post::Connection(e) | Post::Refused(e) => f.write_str(e),
        }
    }
}

/// Posts a task's results (or its error) to `/transcodeResults`.
async fn post(
    config: &LivepeerTranscoderConfig,
    client: &Client,
    task_id: i64,
    outcome: Result<&Done, &String>,
) -> Result<(), Post> {
    let boundary = crate::multipart::MultipartWriter::fresh_boundary(&task_id.to_string());
    let (content_type, body, pixels) = match outcome {
        Ok(done) => (
            format!("multipart/mixed; boundary={boundary}"),
            results::encode(&boundary, &done.renditions),
            done.decoded_pixels,
        ),
        Err(e) => (results::ERROR_CONTENT_TYPE.to_string(), Bytes::from(e.clone()), 0),
    };
    let req = client
        .request(Method::POST, "/transcodeResults")
        .header(http::header::AUTHORIZATION, AUTH_SCHEME)
        .header("Credentials", &config.secret)
        .header(http::header::CONTENT_TYPE, content_type)
        .header("TaskId", task_id)
        .header("Pixels", pixels)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(ChannelBody::full(body))
        .map_err(|e| Post::Refused(e.to_string()))?;
    let resp = client.send(req).await.map_err(|e| Post::Connection(e.to_string()))?;
    let status = resp.status();
    let text = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if status.is_success() {
        Ok(())
    } else {
        Err(Post::Refused(format!("the orchestrator answered {status}: {}", String::from_utf8_lossy(&text).trim())))
    }
}
