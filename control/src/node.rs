//! The node's HTTP/2 server: the orchestrator's broadcaster API, the transcoder link, and (in
//! combined mode) an in-process transcoder.
//!
//! `POST /v1/streams/{stream}/segments/{seq}` stores the upload in a replayable buffer as it
//! arrives and places the segment with the [`Scheduler`]: on the in-process engine, or on a
//! remote transcoder that reads the same buffer (`GET /v1/tasks/{id}/input`) while it is still
//! arriving and streams its records back (`POST /v1/tasks/{id}/results`). The broadcaster's
//! answer starts with the first encoded chunk; errors before that are an HTTP status with a JSON
//! `{code, message}` body, errors after it an in-band record and `zerohop-status` /
//! `zerohop-error-code` trailers. A remote task that fails before any result byte reached the
//! broadcaster is retried on another transcoder.
//!
//! Transcoders dial in with `POST /v1/transcoders/link` (id and secret, capacity in the first
//! report): the request body carries their live load reports, the response body their tasks,
//! both as JSON lines, for as long as the connection lives.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use rustls::ServerConfig;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;
use zerohop_engine::Ladder;

use crate::body::ChannelBody;
use crate::broadcasters::{Broadcaster, BroadcasterTokens, ClaimError, StreamOwners};
use crate::framing::{self, Kind, RecordReader, SEGMENT};
use crate::link::{self, LineReader, Report, ToTranscoder};
use crate::metrics as m;
use crate::relay::{Abort, InputBuf, InputItem, Out, SessionSlot, run_local};
use crate::scheduler::{Failover, Need, PlaceError, Scheduler, TaskId, TranscoderId, default_deadline};

/// Header carrying the ladder: preset names or JSON (the engine's forms).
pub const PROFILES_HEADER: &str = "zerohop-profiles";
/// Header naming a transcoder on its link and task requests.
pub const TRANSCODER_ID_HEADER: &str = "zerohop-transcoder-id";
/// Link header: what a transcoder can make, JSON
/// `{"backend": "cpu", "encode": ["h264"], "max_width": 4096, "max_height": 2304, "gpus": []}`.
pub const CAPABILITIES_HEADER: &str = "zerohop-capabilities";
/// The in-process transcoder's id in the scheduler.
const LOCAL: TranscoderId = 0;

/// Who may connect as a transcoder.
#[derive(Clone, Default)]
pub struct TranscoderSecrets {
    /// One secret any transcoder id may use (`--orch-secret-file`).
    pub shared: Option<String>,
    /// Per-transcoder secrets, id -> secret (revoke one by removing its line).
    pub per_id: HashMap<String, String>,
    /// Per-transcoder client certificates for mutual TLS, id -> SHA-256 (`--transcoder-certs`).
    pub certs: HashMap<String, String>,
}

/// How a transcoder proved who it is; re-checked on every reload so a removed or changed
/// secret or certificate closes the live link.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Secret(String),
    Certificate(String),
}

impl std::fmt::Debug for TranscoderSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Ids and certificate fingerprints are not secret; the secrets are never shown.
        let mut ids: Vec<&String> = self.per_id.keys().collect();
        ids.sort();
        f.debug_struct("TranscoderSecrets")
            .field("shared", &self.shared.as_ref().map(|_| ".."))
            .field("per_id", &ids)
            .field("certs", &self.certs)
            .finish()
    }
}

impl TranscoderSecrets {
    /// Parses a secrets file: one `id secret` pair per line; `#` starts a comment.
    pub fn parse_file(text: &str) -> TranscoderSecrets {
        let per_id = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter_map(|l| l.split_once(char::is_whitespace))
            .map(|(id, s)| (id.trim().to_string(), s.trim().to_string()))
            .collect();
        TranscoderSecrets { shared: None, per_id, certs: HashMap::new() }
    }

    /// Parses a client-certificates file: one `id sha256` pair per line (colons allowed in the
    /// fingerprint); `#` starts a comment. A malformed fingerprint is an error naming its line.
    pub fn parse_certs_file(text: &str) -> Result<HashMap<String, String>, String> {
        let mut certs = HashMap::new();
        for (i, l) in text.lines().enumerate() {
            let l = l.split('#').next().unwrap_or("").trim();
            if l.is_empty() {
                continue;
            }
            let Some((id, fp)) = l.split_once(char::is_whitespace) else {
                return Err(format!("line {}: expected `id sha256`", i + 1));
            };
            let fp = crate::tls::parse_fingerprint(fp).map_err(|e| format!("line {}: {e}", i + 1))?;
            certs.insert(id.trim().to_string(), fp);
        }
        Ok(certs)
    }

    /// Whether `secret` is right for transcoder `id`.
    pub fn admits(&self, id: &str, secret: &str) -> bool {
        let per = self.per_id.get(id).is_some_and(|s| crate::secret::equal(s.as_bytes(), secret.as_bytes()));
        let shared = self.shared.as_ref().is_some_and(|s| crate::secret::equal(s.as_bytes(), secret.as_bytes()));
        per | shared
    }

    /// Whether transcoder `id` presenting the client certificate `fingerprint` is admitted.
    pub fn admits_certificate(&self, id: &str, fingerprint: &str) -> bool {
        self.certs.get(id).is_some_and(|f| f == fingerprint)
    }

    /// Whether a credential accepted earlier still admits `id`.
    pub fn still_admits(&self, id: &str, credential: &Credential) -> bool {
        match credential {
            Credential::Secret(s) => self.admits(id, s),
            Credential::Certificate(f) => self.admits_certificate(id, f),
        }
    }

    fn any(&self) -> bool {
        self.shared.is_some() || !self.per_id.is_empty() || !self.certs.is_empty()
    }
}

/// Node settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub listen: SocketAddr,
    /// `None`: cleartext HTTP/2 with prior knowledge (only with `--insecure-h2c`).
    pub tls: Option<Arc<ServerConfig>>,
    /// Segments the in-process engine transcodes at once; 0 for an orchestrator that only uses
    /// remote transcoders.
    pub max_sessions: usize,
    pub default_ladder: Ladder,
    /// Broadcasters must send `Authorization: Bearer <token>` with one of these tokens, and hold
    /// at most their limit of live streams; empty: anyone may push.
    pub broadcasters: BroadcasterTokens,
    /// Transcoders that may dial in; none: the link endpoint is closed.
    pub transcoders: TranscoderSecrets,
    /// Largest accepted segment upload.
    pub max_segment_bytes: u64,
    /// HTTP/2 PING interval; a peer silent for twice this is dropped.
    pub keepalive: Duration,
    /// A stream's session is closed after this long without segments.
    pub idle_timeout: Duration,
    /// How long a remote task may run before it is failed over.
    pub task_deadline: Duration,
    /// An upload that sends nothing for this long is cut off (slow-body clients).
    pub upload_idle: Duration,
    /// Failed transcoder authentications per peer address per minute before it gets 429s.
    pub auth_max_failures: u32,
    /// Opens the in-process engine's sessions (CPU by default; GPUs when the binary says so).
    pub sessions: crate::relay::SessionFactory,
    /// A connection that has not sent one complete request this long after it was accepted
    /// (TLS handshake included) is closed: slowloris on the preface or the first headers.
    pub header_timeout: Duration,
    /// Open connections per peer address; more are closed at accept.
    pub max_connections_per_ip: usize,
    /// Open connections in all.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams (requests) per connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_streams_per_connection: u32,
}

impl NodeConfig {
    pub fn new(listen: SocketAddr, tls: Option<Arc<ServerConfig>>) -> NodeConfig {
        NodeConfig {
            listen,
            tls,
            max_sessions: 2,
            default_ladder: Ladder::default_ladder(),
            broadcasters: BroadcasterTokens::default(),
            transcoders: TranscoderSecrets::default(),
            max_segment_bytes: crate::relay::DEFAULT_MAX_SEGMENT,
            keepalive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            task_deadline: default_deadline(Duration::from_secs(2)),
            upload_idle: Duration::from_secs(10),
            auth_max_failures: 5,
            sessions: crate::relay::SessionFactory::cpu(),
            header_timeout: Duration::from_secs(10),
            max_connections_per_ip: 256,
            max_connections: 16384,
            max_streams_per_connection: 256,
        }
    }
}

/// A running node. Dropping it does not stop it; call [`Node::shutdown`].
pub struct Node {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    state: Arc<State>,
}

struct StreamSlot {
    session: SessionSlot,
    last_used: Instant,
}

/// A segment on its way, whatever runs it.
struct Job {
    stream: String,
    seq: String,
    ladder: Ladder,
    input: Arc<InputBuf>,
    out: mpsc::Sender<Out>,
    /// A result byte reached the broadcaster: no more retries.
    started: Arc<AtomicBool>,
    /// When the request arrived (queue time = until a transcoder starts reading the input).
    received: Instant,
}

struct Link {
    name: String,
    /// What it says it runs on (capabilities header).
    backend: String,
    gpus: Vec<crate::relay::DeviceCaps>,
    credential: Credential,
    tasks: mpsc::Sender<Bytes>,
    /// Ends the link (the transcoder was revoked).
    close: watch::Sender<bool>,
}

struct State {
    config: NodeConfig,
    scheduler: Mutex<Scheduler>,
    streams: Mutex<HashMap<String, StreamSlot>>,
    /// Remote tasks in flight.
    jobs: Mutex<HashMap<TaskId, Job>>,
    links: Mutex<HashMap<TranscoderId, Link>>,
    next_link: AtomicU64,
    /// Who may dial in; replaced by [`Node::reload_transcoders`] (SIGHUP) without a restart.
    transcoders: parking_lot::RwLock<TranscoderSecrets>,
    auth_limiter: Mutex<crate::secret::AuthLimiter>,
    /// Who may push; replaced by [`Node::reload_broadcasters`] (SIGHUP).
    broadcasters: parking_lot::RwLock<BroadcasterTokens>,
    /// Which broadcaster holds which live stream.
    owners: Mutex<StreamOwners>,
    /// Open connections per peer address.
    connections: Mutex<HashMap<IpAddr, usize>>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Secret(_) => f.write_str("Secret(..)"), // never the secret itself
            Credential::Certificate(fp) => f.debug_tuple("Certificate").field(fp).finish(),
        }
    }
}

/// Who is on the other end of a connection, as far as the transport says.
#[derive(Debug, Clone)]
struct Peer {
    ip: IpAddr,
    /// SHA-256 of the client certificate it proved it holds (mutual TLS), if any.
    client_cert: Option<Arc<str>>,
}

/// One admitted connection; counted until dropped.
struct ConnectionSlot {
    state: Arc<State>,
    ip: IpAddr,
}

impl ConnectionSlot {
    /// `None` when the peer (or the node) already has its limit of connections.
    fn admit(state: &Arc<State>, ip: IpAddr) -> Option<ConnectionSlot> {
        let mut c = state.connections.lock();
        let total: usize = c.values().sum();
        let mine = c.get(&ip).copied().unwrap_or(0);
        if mine >= state.config.max_connections_per_ip || total >= state.config.max_connections {
            return None;
        }
        *c.entry(ip).or_insert(0) += 1;
        metrics::gauge!(m::CONNECTIONS).set((total + 1) as f64);
        Some(ConnectionSlot { state: state.clone(), ip })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut c = self.state.connections.lock();
        if let Some(n) = c.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.ip);
            }
        }
        metrics::gauge!(m::CONNECTIONS).set(c.values().sum::<usize>() as f64);
    }
}

/// Serves one connection; closes it when no complete request arrived by `first_by`.
async fn serve_connection<IO>(
    h2: &hyper::server::conn::http2::Builder<TokioExecutor>,
    io: IO,
    state: Arc<State>,
    peer: SocketAddr,
    client_cert: Option<Arc<str>>,
    first_by: tokio::time::Instant,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let seen = Arc::new(AtomicBool::new(false));
    let seen_in_service = seen.clone();
    let who = Peer { ip: peer.ip(), client_cert };
    let service = service_fn(move |req| {
        seen_in_service.store(true, Ordering::Release);
        handle(state.clone(), who.clone(), req)
    });
    let mut conn = std::pin::pin!(h2.serve_connection(TokioIo::new(io), service));
    let silent = async {
        tokio::time::sleep_until(first_by).await;
        if seen.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            return;
        }
        _ = silent => {}
    }
    metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "header_timeout").increment(1);
    tracing::debug!(%peer, "no complete request in time; closing the connection");
    // GOAWAY for a client that is merely early; a peer that ignores it is cut off.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("addr", &self.addr).finish()
    }
}

impl Node {
    /// Binds and starts serving.
    pub async fn start(config: NodeConfig) -> std::io::Result<Node> {
        m::init();
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let mut scheduler = Scheduler::new(config.task_deadline);
        if config.max_sessions > 0 {
            scheduler.add_local(LOCAL, config.max_sessions as u32);
        }
        let state = Arc::new(State {
            scheduler: Mutex::new(scheduler),
            streams: Mutex::new(HashMap::new()),
            jobs: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            next_link: AtomicU64::new(1),
            transcoders: parking_lot::RwLock::new(config.transcoders.clone()),
            broadcasters: parking_lot::RwLock::new(config.broadcasters.clone()),
            owners: Mutex::new(StreamOwners::new(config.idle_timeout)),
            connections: Mutex::new(HashMap::new()),
            auth_limiter: Mutex::new(crate::secret::AuthLimiter::new(
                config.auth_max_failures,
                Duration::from_secs(60),
            )),
            config,
        });
        update_capacity_metrics(&state);
        let (stop, mut stopped) = watch::channel(false);
        let acceptor = state.config.tls.clone().map(TlsAcceptor::from);
        let node_state = state.clone();
        let task = tokio::spawn(async move {
            let housekeeping = tokio::spawn(housekeeping(state.clone()));
            loop {
                let (tcp, peer) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(c) => c,
                        Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
                    },
                    _ = stopped.changed() => break,
                };
                let Some(slot) = ConnectionSlot::admit(&state, peer.ip()) else {
                    metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "too_many_connections").increment(1);
                    tracing::debug!(%peer, "connection limit reached; closed at accept");
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let state = state.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let first_by = tokio::time::Instant::now() + state.config.header_timeout;
                    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    h2.timer(TokioTimer::new())
                        .keep_alive_interval(state.config.keepalive)
                        .keep_alive_timeout(state.config.keepalive * 2)
                        .max_concurrent_streams(state.config.max_streams_per_connection)
                        .max_header_list_size(16 * 1024)
                        .initial_stream_window_size(4 << 20)
                        .initial_connection_window_size(16 << 20)
                        .max_frame_size(crate::MAX_FRAME);
                    match acceptor {
                        Some(acceptor) => match tokio::time::timeout_at(first_by, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => {
                                let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
                                let cert = cert.map(|c| Arc::from(crate::tls::fingerprint(c)));
                                serve_connection(&h2, tls, state, peer, cert, first_by).await
                            }
                            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                            Err(_) => {
                                metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "header_timeout").increment(1);
                                tracing::debug!(%peer, "TLS handshake timed out");
                            }
                        },
                        None => serve_connection(&h2, tcp, state, peer, None, first_by).await,
                    }
                });
            }
            housekeeping.abort();
        });
        Ok(Node { addr, stop, task, state: node_state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces who may dial in (the secrets file was edited; SIGHUP). Links of transcoders
    /// whose id is no longer admitted are closed at once: their tasks fail over and a redial
    /// gets 401. Returns how many links were closed.
    pub fn reload_transcoders(&self, secrets: TranscoderSecrets) -> usize {
        let state = &self.state;
        let revoked: Vec<TranscoderId> = state
            .links
            .lock()
            .iter()
            .filter(|(_, l)| !secrets.still_admits(&l.name, &l.credential))
            .map(|(id, _)| *id)
            .collect();
        *state.transcoders.write() = secrets;
        let mut links = state.links.lock();
        for id in &revoked {
            if let Some(l) = links.remove(id) {
                tracing::warn!(transcoder = %l.name, "transcoder revoked; link closed");
                let _ = l.close.send(true);
            }
        }
        revoked.len()
    }

    /// Replaces who may push (the tokens file was edited; SIGHUP). A removed token is refused
    /// from its next request on; streams keep their owner names, so a renamed token does not
    /// take over another broadcaster's streams.
    pub fn reload_broadcasters(&self, tokens: BroadcasterTokens) {
        *self.state.broadcasters.write() = tokens;
    }

    /// Stops accepting connections (connections in progress finish on their own).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn update_capacity_metrics(state: &State) {
    let (capacity, load) = state.scheduler.lock().totals();
    metrics::gauge!(m::CAPACITY).set(f64::from(capacity));
    metrics::gauge!(m::LOAD).set(f64::from(load));
    metrics::gauge!(m::TRANSCODERS).set(state.links.lock().len() as f64);
}

/// Closes idle stream sessions and fails over remote tasks past their deadline.
async fn housekeeping(state: Arc<State>) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let expired = state.scheduler.lock().expire(Instant::now());
        for (task, failover) in expired {
            tracing::warn!(task, "task missed its deadline");
            apply_failover(&state, task, failover);
        }
        let idle = state.config.idle_timeout;
        state.owners.lock().expire(Instant::now());
        let mut streams = state.streams.lock();
        streams.retain(|name, slot| {
            let keep = slot.last_used.elapsed() < idle || Arc::strong_count(&slot.session) > 1;
            if !keep {
                tracing::info!(stream = %name, "closing idle stream session");
            }
            keep
        });
        metrics::gauge!(m::STREAMS).set(streams.len() as f64);
    }
}

type Resp = Response<ChannelBody>;

fn json_response(status: StatusCode, code: &str, message: &str) -> Resp {
    let body = json!({"code": code, "message": message}).to_string();
    let mut r = Response::new(ChannelBody::full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The HTTP status for an engine error code: whose fault it is.
pub fn status_for_code(code: &str) -> StatusCode {
    match code {
        c if c.starts_with("unsupported_") => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "bad_profile" => StatusCode::BAD_REQUEST,
        "not_transport_stream"
        | "no_program"
        | "no_video"
        | "bad_sps"
        | "no_pictures"
        | "frames_lost"
        | "decode_error" => StatusCode::UNPROCESSABLE_ENTITY,
        "segment_in_progress" => StatusCode::CONFLICT,
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "upload_stalled" => StatusCode::REQUEST_TIMEOUT,
        "upload_failed" | "upload_dropped" | "input_broken" => StatusCode::BAD_REQUEST,
        "transcoder_lost" | "at_capacity" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn handle(state: Arc<State>, peer: Peer, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let path: Vec<String> = req.uri().path().trim_matches('/').split('/').map(str::to_string).collect();
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    Ok(match (req.method(), &path[..]) {
        (&Method::GET, ["healthz"]) => json_response(StatusCode::OK, "ok", "zerohop node is serving"),
        (&Method::GET, ["metrics"]) => {
            let mut r = Response::new(ChannelBody::full(Bytes::from(m::render())));
            r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            r
        }
        (&Method::POST, ["v1", "streams", stream, "segments", seq]) => {
            let who = match broadcaster(&state, req.headers(), peer.ip) {
                Ok(who) => who,
                Err(r) => return Ok(r),
            };
            if let Some(who) = who
                && let Err(e) = state.owners.lock().claim(stream, &who, Instant::now())
            {
                return Ok(refused_claim(&e));
            }
            let span = tracing::info_span!("segment", stream = %stream, seq = %seq);
            let (stream, seq) = (stream.to_string(), seq.to_string());
            segment(state, req, stream, seq).instrument(span).await
        }
        (&Method::DELETE, ["v1", "streams", stream]) => {
            let who = match broadcaster(&state, req.headers(), peer.ip) {
                Ok(who) => who,
                Err(r) => return Ok(r),
            };
            if let Some(who) = who
                && let Err(e) = state.owners.lock().release(stream, &who)
            {
                return Ok(refused_claim(&e));
            }
            let local = state.streams.lock().remove(*stream).is_some();
            let holder = state.scheduler.lock().end_stream(stream);
            // A remote transcoder holding the stream's sessions is told to free them now rather
            // than at its idle timeout.
            let remote = holder.and_then(|t| state.links.lock().get(&t).map(|l| l.tasks.clone()));
            let told = remote
                .is_some_and(|tx| tx.try_send(ToTranscoder::EndStream { stream: stream.to_string() }.encode()).is_ok());
            tracing::info!(%stream, local, remote = told, "stream ended by the broadcaster");
            json_response(StatusCode::OK, "ok", if local || told { "stream ended" } else { "no such stream" })
        }
        (&Method::GET, ["v1", "transcoders"]) => {
            if let Err(r) = broadcaster(&state, req.headers(), peer.ip) {
                return Ok(r);
            }
            transcoders_status(&state)
        }
        (&Method::POST, ["v1", "transcoders", "link"]) => match transcoder_auth(&state, req.headers(), &peer) {
            Ok((name, credential)) => link(state, req, name, credential),
            Err(r) => r,
        },
        (&Method::GET, ["v1", "tasks", id, "input"]) => match transcoder_auth(&state, req.headers(), &peer) {
            Ok(_) => task_input(&state, id),
            Err(r) => r,
        },
        (&Method::POST, ["v1", "tasks", id, "results"]) => match transcoder_auth(&state, req.headers(), &peer) {
            Ok(_) => {
                let id = id.parse().unwrap_or(0);
                task_results(state, id, req).await
            }
            Err(r) => r,
        },
        _ => json_response(StatusCode::NOT_FOUND, "not_found", "no such endpoint; see README's broadcaster API"),
    })
}

fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// The broadcaster behind a request: `Ok(None)` when the node asks for no token. Failed
/// attempts count against the peer address like transcoders' (429 beyond the limit).
fn broadcaster(state: &State, headers: &HeaderMap, peer: IpAddr) -> Result<Option<Broadcaster>, Resp> {
    let tokens = state.broadcasters.read();
    if tokens.is_empty() {
        return Ok(None);
    }
    let now = Instant::now();
    rate_limited(state, peer, now, "broadcaster")?;
    match tokens.identify(bearer(headers)) {
        Some(b) => {
            state.auth_limiter.lock().succeeded(peer);
            Ok(Some(b.clone()))
        }
        None => {
            state.auth_limiter.lock().failed(peer, now);
            metrics::counter!(m::SEGMENTS_FAILED, "reason" => "unauthorized").increment(1);
            Err(json_response(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong bearer token"))
        }
    }
}

/// A claim on a stream refused: 403 for another broadcaster's stream, 429 over the limit.
fn refused_claim(e: &ClaimError) -> Resp {
    let (status, code) = match e {
        ClaimError::Owned { .. } => (StatusCode::FORBIDDEN, "stream_owned"),
        ClaimError::Limit { .. } => (StatusCode::TOO_MANY_REQUESTS, "stream_limit"),
    };
    metrics::counter!(m::SEGMENTS_FAILED, "reason" => code).increment(1);
    json_response(status, code, &e.to_string())
}

/// 429 with `Retry-After` while `peer` is locked out after failed authentications.
fn rate_limited(state: &State, peer: IpAddr, now: Instant, who: &str) -> Result<(), Resp> {
    let Some(wait) = state.auth_limiter.lock().check(peer, now) else { return Ok(()) };
    if who == "transcoder" {
        metrics::counter!(m::AUTH_FAILURES).increment(1);
    } else {
        metrics::counter!(m::SEGMENTS_FAILED, "reason" => "auth_rate_limited").increment(1);
    }
    let mut r = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        "auth_rate_limited",
        &format!("too many failed {who} authentications from this address"),
    );
    if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        r.headers_mut().insert(http::header::RETRY_AFTER, v);
    }
    Err(r)
}

/// A transcoder's id and how it proved it: its client certificate (mutual TLS) when one pinned
/// for the id was presented, else its secret.
fn transcoder_auth(state: &State, headers: &HeaderMap, who: &Peer) -> Result<(String, Credential), Resp> {
    let peer = who.ip;
    let name = headers.get(TRANSCODER_ID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let secrets = state.transcoders.read();
    if !secrets.any() {
        return Err(json_response(StatusCode::FORBIDDEN, "no_transcoders", "this node accepts no remote transcoders"));
    }
    let now = Instant::now();
    rate_limited(state, peer, now, "transcoder")?;
    let credential = match &who.client_cert {
        Some(fp) if secrets.admits_certificate(&name, fp) => Some(Credential::Certificate(fp.to_string())),
        _ => {
            let secret = bearer(headers);
            secrets.admits(&name, secret).then(|| Credential::Secret(secret.to_string()))
        }
    };
    match credential {
        Some(c) => {
            state.auth_limiter.lock().succeeded(peer);
            Ok((name, c))
        }
        None => {
            state.auth_limiter.lock().failed(peer, now);
            let cert = who.client_cert.is_some();
            tracing::warn!(transcoder = %name, %peer, client_cert = cert, "transcoder refused: bad id, secret or certificate");
            metrics::counter!(m::AUTH_FAILURES).increment(1);
            Err(json_response(
                StatusCode::UNAUTHORIZED,
                "bad_secret",
                "unknown transcoder id, wrong secret, or a client certificate not pinned for this id",
            ))
        }
    }
}

/// Runs or sends a job on `transcoder` as `task`.
fn dispatch(state: &Arc<State>, task: TaskId, transcoder: TranscoderId, job: Job) {
    if transcoder == LOCAL {
        let slot = {
            let mut streams = state.streams.lock();
            let slot = streams.entry(job.stream.clone()).or_insert_with(|| StreamSlot {
                session: Arc::new(tokio::sync::Mutex::new(None)),
                last_used: Instant::now(),
            });
            slot.last_used = Instant::now();
            slot.session.clone()
        };
        let state = state.clone();
        tokio::task::spawn_blocking(move || {
            metrics::histogram!(m::QUEUE).record(job.received.elapsed().as_secs_f64());
            let release = || {
                state.scheduler.lock().finish(task);
                update_capacity_metrics(&state);
            };
            let report = run_local(&slot, &state.config.sessions, job.ladder, &job.input, &job.out, release);
            if let Ok(r) = report {
                metrics::histogram!(m::TRANSCODE).record(r.wall_time.as_secs_f64());
                metrics::histogram!(m::REALTIME_RATIO).record(r.realtime_ratio());
            }
        });
        return;
    }
    let line =
        ToTranscoder::Task { task, stream: job.stream.clone(), seq: job.seq.clone(), ladder: job.ladder.clone() }
            .encode();
    state.jobs.lock().insert(task, job);
    // The link may have dropped between placing and registering the job: then the scheduler has
    // already failed the task over without finding the job, and it is ours to answer.
    if state.scheduler.lock().transcoder_of(task) != Some(transcoder) {
        apply_failover(state, task, Failover::Fail { reason: "the transcoder left as the segment was placed" });
        return;
    }
    let sender = state.links.lock().get(&transcoder).map(|l| l.tasks.clone());
    match sender.map(|s| s.try_send(line)) {
        Some(Ok(())) => tracing::debug!(task, transcoder, "task sent"),
        _ => {
            let f = state.scheduler.lock().fail(task, Instant::now());
            apply_failover(state, task, f);
        }
    }
}

/// Moves a failed remote task to its retry, or ends it with an error record.
fn apply_failover(state: &Arc<State>, task: TaskId, failover: Failover) {
    let Some(job) = state.jobs.lock().remove(&task) else {
        // Already answered: release a retry the scheduler started for it.
        if let Failover::Retry { task: retry, .. } = failover {
            state.scheduler.lock().finish(retry);
        }
        return;
    };
    match failover {
        Failover::Retry { task: retry, transcoder } if !job.started.load(Ordering::Acquire) => {
            tracing::info!(task, retry, transcoder, stream = %job.stream, "retrying segment on another transcoder");
            metrics::counter!(m::RETRIES).increment(1);
            dispatch(state, retry, transcoder, job);
        }
        other => {
            if let Failover::Retry { task: retry, .. } = other {
                state.scheduler.lock().finish(retry);
            }
            let reason = match other {
                Failover::Fail { reason } => reason,
                Failover::Retry { .. } => "result bytes were already sent",
            };
            tracing::warn!(task, stream = %job.stream, reason, "segment failed with its transcoder");
            let message = format!("the transcoder failed and the segment cannot be retried: {reason}");
            let out = job.out;
            tokio::spawn(async move {
                let _ = out
                    .send(Out::Error { rendition: SEGMENT, code: "transcoder_lost".into(), message: message.clone() })
                    .await;
                let summary = json!({"status": "error", "code": "transcoder_lost", "message": message});
                let _ = out.send(Out::End { ok: false, summary }).await;
            });
        }
    }
    update_capacity_metrics(state);
}

/// `POST /v1/transcoders/link`.
fn link(state: Arc<State>, req: Request<Incoming>, name: String, credential: Credential) -> Resp {
    let id = state.next_link.fetch_add(1, Ordering::Relaxed);
    let capacity = req.headers().get("zerohop-capacity").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1u32);
    let (task_tx, mut task_rx) = mpsc::channel::<Bytes>(64);
    let header = req.headers().get(CAPABILITIES_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    let caps = link::parse_capabilities(header);
    let (backend, gpus) = link::parse_backend(header);
    {
        let mut sch = state.scheduler.lock();
        sch.add_transcoder(id, capacity);
        sch.set_capabilities(id, caps);
    }
    let (close, closed) = watch::channel(false);
    state.links.lock().insert(id, Link { name: name.clone(), backend, gpus, credential, tasks: task_tx, close });
    update_capacity_metrics(&state);
    tracing::info!(transcoder = %name, id, capacity, ?caps, "transcoder connected");
    let (tx, body) = ChannelBody::channel(64);
    // Tasks -> the transcoder, until the link ends or the transcoder is revoked.
    let mut closed_tasks = closed.clone();
    tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                l = task_rx.recv() => l,
                _ = closed_tasks.changed() => None,
            };
            let Some(line) = line else { break };
            if tx.send(Ok(Frame::data(line))).await.is_err() {
                break;
            }
        }
    });
    // Reports <- the transcoder, until the link ends.
    let mut reports = req.into_body();
    let mut closed_reports = closed;
    tokio::spawn(async move {
        let mut lines = LineReader::default();
        'link: loop {
            let frame = tokio::select! {
                f = reports.frame() => f,
                _ = closed_reports.changed() => break 'link,
            };
            let Some(Ok(frame)) = frame else { break };
            let Ok(data) = frame.into_data() else { continue };
            lines.push(&data);
            while let Some(line) = lines.poll() {
                let Ok(line) = line else { break 'link }; // not JSON lines
                if let Some(r) = Report::parse(&line, capacity) {
                    state.scheduler.lock().report(id, r.capacity, r.load);
                    update_capacity_metrics(&state);
                }
            }
        }
        state.links.lock().remove(&id);
        tracing::warn!(transcoder = %name, id, "transcoder disconnected");
        let failovers = state.scheduler.lock().remove_transcoder(id, Instant::now());
        for (task, f) in failovers {
            apply_failover(&state, task, f);
        }
        update_capacity_metrics(&state);
    });
    let mut r = Response::new(body);
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    r
}

/// `GET /v1/transcoders`: who does the work, for operators (and the fault tests).
fn transcoders_status(state: &State) -> Resp {
    let snapshot = state.scheduler.lock().snapshot(Instant::now());
    let links = state.links.lock();
    let local = &state.config.sessions;
    let list: Vec<serde_json::Value> = snapshot
        .iter()
        .map(|t| {
            let (name, backend, gpus) = if t.local {
                ("local", local.backend.as_str(), local.devices.as_slice())
            } else if let Some(l) = links.get(&t.id) {
                (l.name.as_str(), l.backend.as_str(), l.gpus.as_slice())
            } else {
                ("", "", &[][..])
            };
            json!({
                "id": t.id,
                "name": name,
                "backend": backend,
                "gpus": gpus,
                "local": t.local,
                "capacity": t.capacity,
                "load": t.load,
                "tasks": t.tasks,
                "max_output": [t.caps.max_width, t.caps.max_height],
                "strikes": t.strikes,
                "cooldown_s": t.cooldown.as_secs_f64(),
            })
        })
        .collect();
    let mut r = Response::new(ChannelBody::full(Bytes::from(json!({ "transcoders": list }).to_string())));
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `GET /v1/tasks/{id}/input`: the broadcaster's upload, from its start, as it arrives.
fn task_input(state: &State, id: &str) -> Resp {
    let Some((input, received)) =
        id.parse::<TaskId>().ok().and_then(|id| state.jobs.lock().get(&id).map(|j| (j.input.clone(), j.received)))
    else {
        return json_response(
            StatusCode::NOT_FOUND,
            "no_task",
            "no such task (finished, failed over or never assigned)",
        );
    };
    metrics::histogram!(m::QUEUE).record(received.elapsed().as_secs_f64());
    let (tx, body) = ChannelBody::channel(16);
    tokio::spawn(async move {
        let mut i = 0;
        loop {
            let frame = match input.next(i).await {
                InputItem::Data(d) => Ok(Frame::data(d)),
                InputItem::End => break,
                InputItem::Aborted(why) => Err(std::io::Error::other(why.message)),
            };
            let stop = frame.is_err();
            if tx.send(frame).await.is_err() || stop {
                break;
            }
            i += 1;
        }
    });
    Response::new(body)
}

/// `POST /v1/tasks/{id}/results`: a transcoder's records, relayed to the broadcaster.
async fn task_results(state: Arc<State>, task: TaskId, req: Request<Incoming>) -> Resp {
    let Some((out, started)) = state.jobs.lock().get(&task).map(|j| (j.out.clone(), j.started.clone())) else {
        return json_response(
            StatusCode::NOT_FOUND,
            "no_task",
            "no such task (finished, failed over or never assigned)",
        );
    };
    let mut body = req.into_body();
    let mut reader = RecordReader::new();
    let mut ended = false;
    let mut broadcaster_gone = false;
    let mut failed_over = false;
    'read: loop {
        // A transcoder that goes silent is failed over by the deadline; then stop reading it
        // too, so its request does not hold the handler forever.
        let frame = match tokio::time::timeout(Duration::from_secs(1), body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) if !state.jobs.lock().contains_key(&task) => {
                failed_over = true;
                break;
            }
            Err(_) => continue,
        };
        let Ok(frame) = frame else { break };
        let Ok(data) = frame.into_data() else { continue };
        reader.push(&data);
        while let Some(rec) = reader.poll() {
            let Ok(rec) = rec else { break 'read };
            let Some(item) = Out::from_record(&rec) else { continue };
            // A task that was failed over meanwhile must not write to the broadcaster.
            if !state.jobs.lock().contains_key(&task) {
                failed_over = true;
                break 'read;
            }
            if rec.kind == Kind::Chunk && !started.swap(true, Ordering::AcqRel) {
                state.scheduler.lock().result_started(task);
            }
            ended = matches!(item, Out::End { .. });
            if out.send(item).await.is_err() {
                broadcaster_gone = true; // not the transcoder's fault
                break 'read;
            }
            if ended {
                break 'read;
            }
        }
    }
    if failed_over {
        return json_response(
            StatusCode::CONFLICT,
            "task_failed_over",
            "the task was failed over (deadline or disconnect); its results are no longer wanted",
        );
    }
    if ended || broadcaster_gone {
        state.jobs.lock().remove(&task);
        if ended {
            state.scheduler.lock().succeeded(task);
        } else {
            state.scheduler.lock().finish(task);
        }
        update_capacity_metrics(&state);
        json_response(StatusCode::OK, "ok", "results relayed")
    } else {
        tracing::warn!(task, "result stream from transcoder broke off");
        let f = state.scheduler.lock().fail(task, Instant::now());
        apply_failover(&state, task, f);
        json_response(StatusCode::BAD_REQUEST, "broken_results", "result stream ended without its end record")
    }
}

async fn segment(state: Arc<State>, req: Request<Incoming>, stream: String, seq: String) -> Resp {
    let received = Instant::now();
    metrics::counter!(m::SEGMENTS_RECEIVED).increment(1);
    let ladder = match req.headers().get(PROFILES_HEADER) {
        None => state.config.default_ladder.clone(),
        Some(v) => {
            match v.to_str().map_err(|e| e.to_string()).and_then(|s| s.parse::<Ladder>().map_err(|e| e.to_string())) {
                Ok(l) => l,
                Err(e) => {
                    metrics::counter!(m::SEGMENTS_FAILED, "reason" => "bad_profile").increment(1);
                    return json_response(StatusCode::BAD_REQUEST, "bad_profile", &e);
                }
            }
        }
    };
    let max = state.config.max_segment_bytes;
    if let Some(len) =
        req.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && len > max
    {
        metrics::counter!(m::SEGMENTS_FAILED, "reason" => "too_large").increment(1);
        return json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!("segment of {len} bytes exceeds the {max}-byte limit"),
        );
    }
    let need = Need {
        width: ladder.profiles().iter().map(|p| p.width).max().unwrap_or(0),
        height: ladder.profiles().iter().map(|p| p.height).max().unwrap_or(0),
    };
    let placed = state.scheduler.lock().place_fitting(&stream, need, received);
    let (task, transcoder) = match placed {
        Ok(p) => p,
        Err(PlaceError::NoneFits(_)) => {
            metrics::counter!(m::SEGMENTS_FAILED, "reason" => "no_capable_transcoder").increment(1);
            let msg = format!(
                "no connected transcoder can make this ladder (largest rendition {}x{})",
                need.width, need.height
            );
            return json_response(StatusCode::UNPROCESSABLE_ENTITY, "no_capable_transcoder", &msg);
        }
        Err(e) => {
            metrics::counter!(m::SEGMENTS_FAILED, "reason" => "at_capacity").increment(1);
            let msg = match e {
                PlaceError::NoTranscoders => "no transcoder is connected",
                PlaceError::AtCapacity | PlaceError::NoneFits(_) => "all transcoding sessions are busy",
            };
            let mut r = json_response(StatusCode::SERVICE_UNAVAILABLE, "at_capacity", msg);
            r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
    };
    update_capacity_metrics(&state);
    tracing::debug!(%stream, %seq, task, transcoder, "segment placed");

    // Upload -> replayable buffer, read by whoever runs the segment.
    let input = InputBuf::new();
    let mut body = req.into_body();
    let upload = input.writer();
    let idle = state.config.upload_idle;
    tokio::spawn(async move {
        let mut total = 0u64;
        loop {
            let Ok(frame) = tokio::time::timeout(idle, body.frame()).await else {
                metrics::counter!(m::SEGMENTS_FAILED, "reason" => "upload_stalled").increment(1);
                return upload.end(Err(Abort::new("upload_stalled", format!("the upload sent nothing for {idle:?}"))));
            };
            match frame {
                Some(Ok(f)) => {
                    let Ok(d) = f.into_data() else { continue };
                    total += d.len() as u64;
                    metrics::counter!(m::BYTES_IN).increment(d.len() as u64);
                    if total > max {
                        let why = format!("segment upload exceeds the {max}-byte limit");
                        return upload.end(Err(Abort::new("too_large", why)));
                    }
                    upload.push(d);
                }
                Some(Err(e)) => return upload.end(Err(Abort::new("upload_failed", format!("upload failed: {e}")))),
                None => {
                    metrics::histogram!(m::UPLOAD).record(received.elapsed().as_secs_f64());
                    return upload.end(Ok(()));
                }
            }
        }
    });

    let (out_tx, mut out_rx) = mpsc::channel::<Out>(64);
    let names: Vec<String> = ladder.profiles().iter().map(|p| p.name.clone()).collect();
    let job = Job {
        stream: stream.clone(),
        seq: seq.clone(),
        ladder,
        input,
        out: out_tx,
        started: Arc::new(AtomicBool::new(false)),
        received,
    };
    dispatch(&state, task, transcoder, job);

    // Wait for the first result (or an early error) before choosing the status.
    let first = match out_rx.recv().await {
        Some(Out::Record(r)) => r,
        Some(Out::Error { code, message, .. }) => {
            tokio::spawn(async move { while out_rx.recv().await.is_some() {} });
            metrics::counter!(m::SEGMENTS_FAILED, "reason" => code.clone()).increment(1);
            tracing::info!(%stream, %seq, %code, %message, "segment refused");
            let mut r = json_response(status_for_code(&code), &code, &message);
            if code == "transcoder_lost" {
                r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            return r;
        }
        Some(Out::End { .. }) | None => {
            return json_response(StatusCode::INTERNAL_SERVER_ERROR, "no_output", "the engine produced nothing");
        }
    };
    metrics::histogram!(m::TTFB).record(received.elapsed().as_secs_f64());

    let (tx, body) = ChannelBody::channel(32);
    let start = json!({"stream": stream, "seq": seq, "renditions": names});
    tokio::spawn(async move {
        let mut head = BytesMut::new();
        framing::encode(Kind::Start, SEGMENT, start.to_string().as_bytes(), &mut head);
        head.extend_from_slice(&first);
        if tx.send(Ok(Frame::data(head.freeze()))).await.is_err() {
            return;
        }
        let mut error_code: Option<String> = None;
        while let Some(o) = out_rx.recv().await {
            if let Out::Error { code, .. } = &o {
                error_code.get_or_insert(code.clone());
            }
            let end = match &o {
                Out::End { ok, .. } => Some(*ok),
                _ => None,
            };
            if tx.send(Ok(Frame::data(o.to_record()))).await.is_err() {
                // The broadcaster went away: dropping `out_rx` makes the engine's sinks fail,
                // which ends the segment and frees the session.
                tracing::info!(%stream, %seq, "broadcaster disconnected; segment cancelled");
                return;
            }
            if let Some(ok) = end {
                if ok {
                    metrics::counter!(m::SEGMENTS_TRANSCODED).increment(1);
                    metrics::histogram!(m::TTLB).record(received.elapsed().as_secs_f64());
                } else {
                    let code = error_code.clone().unwrap_or_else(|| "error".into());
                    metrics::counter!(m::SEGMENTS_FAILED, "reason" => code).increment(1);
                }
                let mut trailers = HeaderMap::new();
                trailers.insert("zerohop-status", HeaderValue::from_static(if ok { "ok" } else { "error" }));
                if let Some(c) = error_code.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
                    trailers.insert("zerohop-error-code", c);
                }
                let _ = tx.send(Ok(Frame::trailers(trailers))).await;
                return;
            }
        }
    });
    let mut r = Response::new(body);
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.zerohop.results"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcoder_credentials_parse_recheck_and_never_print_secrets() {
        let mut s = TranscoderSecrets::parse_file("t-a hunter2 # comment\n\nt-b correct-horse\n");
        let fp = "AB:".repeat(31) + "AB";
        s.certs = TranscoderSecrets::parse_certs_file(&format!("t-m {fp}\n")).expect("certs");
        assert!(s.admits("t-a", "hunter2") && !s.admits("t-a", "correct-horse") && !s.admits("t-x", "hunter2"));
        assert!(s.admits_certificate("t-m", &"ab".repeat(32)), "colons and case are normalised");
        assert!(!s.admits_certificate("t-a", &"ab".repeat(32)), "a certificate is pinned per id");
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("correct-horse"), "{shown}");
        assert!(shown.contains("t-a"));
        assert!(!format!("{:?}", Credential::Secret("hunter2".into())).contains("hunter2"));
        // A reload re-checks how each live link got in.
        let mut rotated = s.clone();
        rotated.per_id.insert("t-a".into(), "new-secret".into());
        assert!(!rotated.still_admits("t-a", &Credential::Secret("hunter2".into())));
        assert!(rotated.still_admits("t-b", &Credential::Secret("correct-horse".into())));
        assert!(rotated.still_admits("t-m", &Credential::Certificate("ab".repeat(32))));
        assert!(TranscoderSecrets::parse_certs_file("t-m nothex\n").expect_err("bad").contains("line 1"));
        assert!(TranscoderSecrets::parse_certs_file("lonely\n").is_err());
    }
}
