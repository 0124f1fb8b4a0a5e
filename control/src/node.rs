//! The node's HTTP/2 server: the broadcaster API in combined mode (orchestrator with an
//! in-process transcoder).
//!
//! `POST /v1/streams/{stream}/segments/{seq}` streams the upload into an engine session as it
//! arrives and answers with the result stream ([`crate::framing`]) as soon as the first encoded
//! chunk exists. Errors found before that are an HTTP status with a JSON `{code, message}` body;
//! after it, an in-band error record and `zerohop-status`/`zerohop-error-code` trailers.
//! `DELETE /v1/streams/{stream}` ends a stream (frees its session); `GET /metrics` is the
//! Prometheus exposition; `GET /healthz` says the node is up.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use zerohop_engine::{Ladder, RenditionSink, RenditionStats, SegmentReport, Session, SessionConfig, TranscodeError};

use crate::body::ChannelBody;
use crate::framing::{self, Kind, SEGMENT};
use crate::metrics as m;

/// Header carrying the ladder: preset names or JSON (the engine's forms).
pub const PROFILES_HEADER: &str = "zerohop-profiles";

/// Node settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub listen: SocketAddr,
    /// `None`: cleartext HTTP/2 with prior knowledge (only with `--insecure-h2c`).
    pub tls: Option<Arc<ServerConfig>>,
    /// Segments transcoded at once; beyond it requests get 503 + Retry-After.
    pub max_sessions: usize,
    pub default_ladder: Ladder,
    /// Broadcasters must send `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// Largest accepted segment upload.
    pub max_segment_bytes: u64,
    /// HTTP/2 PING interval; a peer silent for twice this is dropped.
    pub keepalive: Duration,
    /// A stream's session is closed after this long without segments.
    pub idle_timeout: Duration,
}

impl NodeConfig {
    pub fn new(listen: SocketAddr, tls: Option<Arc<ServerConfig>>) -> NodeConfig {
        NodeConfig {
            listen,
            tls,
            max_sessions: 2,
            default_ladder: Ladder::default_ladder(),
            token: None,
            max_segment_bytes: 64 << 20,
            keepalive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A running node. Dropping it does not stop it; call [`Node::shutdown`].
#[derive(Debug)]
pub struct Node {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

struct StreamSlot {
    session: Arc<tokio::sync::Mutex<Option<Session>>>,
    last_used: Instant,
}

struct State {
    config: NodeConfig,
    capacity: Arc<Semaphore>,
    streams: Mutex<HashMap<String, StreamSlot>>,
}

impl Node {
    /// Binds and starts serving.
    pub async fn start(config: NodeConfig) -> std::io::Result<Node> {
        m::init();
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            capacity: Arc::new(Semaphore::new(config.max_sessions)),
            streams: Mutex::new(HashMap::new()),
            config,
        });
        metrics::gauge!(m::CAPACITY).set(state.config.max_sessions as f64);
        let (stop, mut stopped) = watch::channel(false);
        let acceptor = state.config.tls.clone().map(TlsAcceptor::from);
        let task = tokio::spawn(async move {
            let reaper = tokio::spawn(reap_idle(state.clone()));
            loop {
                let (tcp, peer) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(c) => c,
                        Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
                    },
                    _ = stopped.changed() => break,
                };
                let _ = tcp.set_nodelay(true);
                let state = state.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    h2.timer(TokioTimer::new())
                        .keep_alive_interval(state.config.keepalive)
                        .keep_alive_timeout(state.config.keepalive * 2)
                        .max_concurrent_streams(256)
                        .max_header_list_size(16 * 1024);
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let result = match acceptor {
                        Some(acceptor) => {
                            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                                Ok(Ok(tls)) => h2.serve_connection(TokioIo::new(tls), service).await,
                                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        }
                        None => h2.serve_connection(TokioIo::new(tcp), service).await,
                    };
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                });
            }
            reaper.abort();
        });
        Ok(Node { addr, stop, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections (connections in progress finish on their own).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn reap_idle(state: Arc<State>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = state.config.idle_timeout;
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

/// The HTTP status for an engine error: whose fault it is.
pub fn status_for(e: &TranscodeError) -> StatusCode {
    match e.code() {
        c if c.starts_with("unsupported_") => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "bad_profile" => StatusCode::BAD_REQUEST,
        _ if e.is_input_error() => StatusCode::UNPROCESSABLE_ENTITY,
        "segment_in_progress" => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, Infallible> {
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
            if let Some(r) = unauthorized(&state, req.headers()) {
                return Ok(r);
            }
            let (stream, seq) = (stream.to_string(), seq.to_string());
            segment(state, req, stream, seq).await
        }
        (&Method::DELETE, ["v1", "streams", stream]) => {
            if let Some(r) = unauthorized(&state, req.headers()) {
                return Ok(r);
            }
            let existed = state.streams.lock().remove(*stream).is_some();
            json_response(StatusCode::OK, "ok", if existed { "stream ended" } else { "no such stream" })
        }
        _ => json_response(StatusCode::NOT_FOUND, "not_found", "no such endpoint; see README's broadcaster API"),
    })
}

fn unauthorized(state: &State, headers: &HeaderMap) -> Option<Resp> {
    let token = state.config.token.as_deref()?;
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if crate::secret::equal(given.as_bytes(), token.as_bytes()) {
        None
    } else {
        metrics::counter!(m::SEGMENTS_FAILED, "reason" => "unauthorized").increment(1);
        Some(json_response(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong bearer token"))
    }
}

/// What the engine's side of a request sends to the HTTP side.
enum Out {
    Record(Bytes),
    Failed(u8, TranscodeError),
    Finished(Box<Result<SegmentReport, TranscodeError>>),
}

/// Frames each rendition's output as result-stream records.
struct FramedSink {
    index: u8,
    tx: mpsc::Sender<Out>,
}

impl RenditionSink for FramedSink {
    fn chunk(&mut self, data: Bytes) -> std::io::Result<()> {
        let rec = framing::record(Kind::Chunk, self.index, &data);
        self.tx.blocking_send(Out::Record(rec)).map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }
    fn finish(&mut self, s: &RenditionStats) -> std::io::Result<()> {
        let body = json!({"rendition": s.name, "frames": s.frames_out, "bytes": s.ts_bytes, "width": s.width,
                          "height": s.height, "keyframes": s.keyframes});
        let rec = framing::record(Kind::Done, self.index, body.to_string().as_bytes());
        self.tx.blocking_send(Out::Record(rec)).map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }
    fn fail(&mut self, e: &TranscodeError) {
        let _ = self.tx.blocking_send(Out::Failed(self.index, e.clone()));
    }
}

enum In {
    Data(Bytes),
    End,
    Abort(String),
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
    if let Some(len) =
        req.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && len > state.config.max_segment_bytes
    {
        metrics::counter!(m::SEGMENTS_FAILED, "reason" => "too_large").increment(1);
        let msg = format!("segment of {len} bytes exceeds the {}-byte limit", state.config.max_segment_bytes);
        return json_response(StatusCode::PAYLOAD_TOO_LARGE, "too_large", &msg);
    }
    let Ok(permit) = state.capacity.clone().try_acquire_owned() else {
        metrics::counter!(m::SEGMENTS_FAILED, "reason" => "at_capacity").increment(1);
        let mut r = json_response(StatusCode::SERVICE_UNAVAILABLE, "at_capacity", "all transcoding sessions are busy");
        r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    metrics::gauge!(m::LOAD).increment(1.0);
    let session = {
        let mut streams = state.streams.lock();
        let slot = streams.entry(stream.clone()).or_insert_with(|| StreamSlot {
            session: Arc::new(tokio::sync::Mutex::new(None)),
            last_used: Instant::now(),
        });
        slot.last_used = Instant::now();
        let session = slot.session.clone();
        metrics::gauge!(m::STREAMS).set(streams.len() as f64);
        session
    };

    // Upload -> engine.
    let (in_tx, in_rx) = mpsc::channel::<In>(16);
    let max = state.config.max_segment_bytes;
    let mut body = req.into_body();
    tokio::spawn(async move {
        let mut total = 0u64;
        loop {
            let msg = match body.frame().await {
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) => {
                        total += d.len() as u64;
                        metrics::counter!(m::BYTES_IN).increment(d.len() as u64);
                        if total > max {
                            In::Abort(format!("upload exceeds the {max}-byte limit"))
                        } else {
                            In::Data(d)
                        }
                    }
                    Err(_) => continue, // trailers
                },
                Some(Err(e)) => In::Abort(format!("upload failed: {e}")),
                None => In::End,
            };
            let last = !matches!(msg, In::Data(_));
            if in_tx.send(msg).await.is_err() || last {
                break;
            }
        }
    });

    // Engine (blocking threads) -> records.
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(64);
    let names: Vec<String> = ladder.profiles().iter().map(|p| p.name.clone()).collect();
    tokio::task::spawn_blocking(move || {
        let _permit: OwnedSemaphorePermit = permit;
        let result = run_segment(&session, ladder, in_rx, &out_tx);
        let _ = out_tx.blocking_send(Out::Finished(Box::new(result)));
        metrics::gauge!(m::LOAD).decrement(1.0);
    });

    // Wait for the first result (or an early error) before choosing the status.
    let first = out_rx.recv().await;
    let mut pending = Vec::new();
    match first {
        Some(Out::Record(r)) => pending.push(r),
        Some(Out::Failed(_, e)) => return refuse(out_rx, &stream, &seq, e),
        Some(Out::Finished(r)) if r.is_err() => {
            let Err(e) = *r else { unreachable!("checked is_err") };
            return refuse(out_rx, &stream, &seq, e);
        }
        Some(Out::Finished(_)) | None => {
            return json_response(StatusCode::INTERNAL_SERVER_ERROR, "no_output", "the engine produced nothing");
        }
    }
    let ttfb = received.elapsed();
    metrics::histogram!(m::TTFB).record(ttfb.as_secs_f64());

    let (tx, body) = ChannelBody::channel(32);
    let start = json!({"stream": stream, "seq": seq, "renditions": names});
    tokio::spawn(async move {
        let mut out = BytesMut::new();
        framing::encode(Kind::Start, SEGMENT, start.to_string().as_bytes(), &mut out);
        if tx.send(Ok(Frame::data(out.freeze()))).await.is_err() {
            return;
        }
        for r in pending {
            if tx.send(Ok(Frame::data(r))).await.is_err() {
                return;
            }
        }
        let mut failed: Option<TranscodeError> = None;
        while let Some(o) = out_rx.recv().await {
            let frame = match o {
                Out::Record(r) => Frame::data(r),
                Out::Failed(i, e) => {
                    let body = json!({"code": e.code(), "message": e.to_string()}).to_string();
                    failed.get_or_insert(e);
                    Frame::data(framing::record(Kind::Error, i, body.as_bytes()))
                }
                Out::Finished(r) => {
                    let (status, end) = match &*r {
                        Ok(rep) => {
                            metrics::counter!(m::SEGMENTS_TRANSCODED).increment(1);
                            metrics::histogram!(m::TTLB).record(received.elapsed().as_secs_f64());
                            metrics::histogram!(m::TRANSCODE).record(rep.wall_time.as_secs_f64());
                            metrics::histogram!(m::REALTIME_RATIO).record(rep.realtime_ratio());
                            for s in &rep.renditions {
                                metrics::counter!(m::BYTES_OUT).increment(s.ts_bytes);
                                metrics::counter!(m::FRAMES_OUT, "rendition" => s.name.clone()).increment(s.frames_out);
                            }
                            (
                                "ok",
                                json!({"status": "ok", "frames": rep.frames_decoded,
                                          "media_ms": rep.media_duration.as_millis() as u64,
                                          "transcode_ms": rep.wall_time.as_millis() as u64}),
                            )
                        }
                        Err(e) => {
                            metrics::counter!(m::SEGMENTS_FAILED, "reason" => e.code()).increment(1);
                            failed.get_or_insert(e.clone());
                            ("error", json!({"status": "error", "code": e.code(), "message": e.to_string()}))
                        }
                    };
                    let _ =
                        tx.send(Ok(Frame::data(framing::record(Kind::End, SEGMENT, end.to_string().as_bytes())))).await;
                    let mut trailers = HeaderMap::new();
                    trailers.insert("zerohop-status", HeaderValue::from_static(status));
                    if let Some(e) = &failed {
                        trailers.insert("zerohop-error-code", HeaderValue::from_static(e.code()));
                    }
                    let _ = tx.send(Ok(Frame::trailers(trailers))).await;
                    return;
                }
            };
            if tx.send(Ok(frame)).await.is_err() {
                // The broadcaster went away: dropping `out_rx` makes the sinks fail, which
                // ends the segment and frees the session.
                tracing::info!(%stream, %seq, "broadcaster disconnected; segment cancelled");
                return;
            }
        }
    });
    let mut r = Response::new(body);
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.zerohop.results"));
    r
}

/// Answers with the engine's error (nothing was streamed yet) and lets the engine side drain.
fn refuse(mut out_rx: mpsc::Receiver<Out>, stream: &str, seq: &str, e: TranscodeError) -> Resp {
    tokio::spawn(async move { while out_rx.recv().await.is_some() {} });
    metrics::counter!(m::SEGMENTS_FAILED, "reason" => e.code()).increment(1);
    tracing::info!(%stream, %seq, code = e.code(), error = %e, "segment refused");
    json_response(status_for(&e), e.code(), &e.to_string())
}

/// Runs one segment through the stream's session (segments of a stream run one at a time, in
/// arrival order; the session is reopened when the ladder changes).
fn run_segment(
    session: &tokio::sync::Mutex<Option<Session>>,
    ladder: Ladder,
    mut input: mpsc::Receiver<In>,
    out: &mpsc::Sender<Out>,
) -> Result<SegmentReport, TranscodeError> {
    let mut guard = session.blocking_lock();
    if guard.as_ref().is_none_or(|s| *s.ladder() != ladder) {
        *guard = Some(Session::open(SessionConfig::new(ladder.clone()))?);
    }
    let session = guard.as_mut().expect("opened above");
    let sinks = (0..ladder.len())
        .map(|i| Box::new(FramedSink { index: i as u8, tx: out.clone() }) as Box<dyn RenditionSink>)
        .collect();
    let mut seg = session.begin(sinks)?;
    loop {
        match input.blocking_recv() {
            Some(In::Data(d)) => {
                if seg.push(d).is_err() {
                    // The engine already knows the segment is bad; finish() says why.
                    while let Some(In::Data(_)) = input.blocking_recv() {}
                    break;
                }
            }
            Some(In::End) => break,
            Some(In::Abort(why)) => {
                tracing::info!(reason = %why, "upload aborted");
                drop(seg);
                return Err(TranscodeError::Abandoned);
            }
            None => {
                drop(seg);
                return Err(TranscodeError::Abandoned);
            }
        }
    }
    seg.finish()
}
