//! A zerohop orchestrator to go-livepeer gateways, offchain (`--livepeer-gateways`), on the
//! node's own TLS port as go-livepeer serves it: gRPC when a request is HTTP/2 with a
//! `application/grpc` content type, HTTP otherwise.
//!
//! * `GetOrchestrator` (gRPC): where to send segments (this node, as the gateway dialled it),
//!   zerohop's capabilities, no price (offchain), and an auth token naming a new session.
//! * `POST /segment`: `Livepeer-Segment` (base64 `SegData`: the ladder, the token, the Keccak-256
//!   of the body). The whole upload is read and checked, then `200` is sent at once (a gateway
//!   gives up when headers take longer than max(2 s, duration / 2)); the segment then runs
//!   through the scheduler like any other, and the body ends with a `TranscodeResult`: a URL
//!   and pixel count per rendition, or an error.
//! * `GET /livepeer/{session}/{rendition}/{seq}.ts`: those renditions.
//! * `EndTranscodingSession` (gRPC): the session and its renditions go.
//!
//! `RegisterTranscoder`, go-livepeer transcoders joining, is in `livepeer_transcoders`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use prost::Message as _;
use sha3::Digest as _;
use tokio::sync::mpsc;

use super::dispatch::dispatch;
use super::reply::{self, Resp, grpc_answer, grpc_status, refuse};
use super::segment::place;
use super::state::{Job, Peer, State};
use crate::body::ChannelBody;
use crate::livepeer::grpc::{self, Status};
use crate::livepeer::messages::{
    EndTranscodingSessionRequest, EndTranscodingSessionResponse, OrchestratorInfo, OrchestratorRequest, SegData,
    TranscodeData, TranscodeOutcome, TranscodeResult, TranscodedSegmentData,
};
use crate::livepeer::{capabilities, errors, ladder};
use crate::metrics as m;
use crate::relay::{InputBuf, Out};

/// The segment's metadata header.
pub(super) const SEGMENT_HEADER: &str = "livepeer-segment";
/// Largest gRPC request read.
const MAX_RPC: usize = 64 << 10;

/// Whether a request is gRPC (go-livepeer's test for the shared port).
pub(super) fn is_grpc(req: &Request<Incoming>) -> bool {
    req.version() == http::Version::HTTP_2
        && req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(grpc::CONTENT_TYPE))
}

/// A gRPC call.
pub(super) async fn rpc(state: Arc<State>, req: Request<Incoming>, peer: &Peer) -> Resp {
    let path = req.uri().path().to_string();
    if !state.config.livepeer_gateways && path != grpc::REGISTER_TRANSCODER {
        return grpc_status(Status::new(
            grpc::status::UNIMPLEMENTED,
            "this zerohop node does not serve Livepeer gateways (start it with --livepeer-gateways)",
        ));
    }
    let authority = req.uri().authority().map(|a| a.to_string());
    let body = match Limited::new(req.into_body(), MAX_RPC).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return grpc_status(Status::new(grpc::status::INVALID_ARGUMENT, format!("request body: {e}"))),
    };
    let mut reader = grpc::MessageReader::default();
    reader.push(&body);
    let message = match reader.poll() {
        Some(Ok(m)) => {
            let what = path.rsplit('/').next().unwrap_or("rpc");
            crate::livepeer::trace::received(&format!("{what}-request"), &m);
            m
        }
        Some(Err(e)) => return grpc_status(Status::new(grpc::status::INVALID_ARGUMENT, e.to_string())),
        None => return grpc_status(Status::new(grpc::status::INVALID_ARGUMENT, "no request message")),
    };
    match path.as_str() {
        grpc::GET_ORCHESTRATOR => {
            // The request's address and signature (empty offchain) are not checked; its job's
            // capabilities are the gateway's to compare with ours, and are logged when they
            // are ones zerohop lacks (the gateway will then not use this node).
            let Some(authority) = authority else {
                return grpc_status(Status::new(grpc::status::INVALID_ARGUMENT, "no :authority"));
            };
            if let Ok(r) = grpc::decode::<OrchestratorRequest>(message, "OrchestratorRequest") {
                let needed = r.capabilities.map(|c| c.bitstring).unwrap_or_default();
                let have = capabilities::bitstring(&capabilities::zerohop(&state.config.livepeer_profiles));
                if !capabilities::compatible(&needed, &have) {
                    let lack = capabilities::missing(&needed, &have).join(", ");
                    tracing::warn!(%lack, "a Livepeer gateway's job needs capabilities zerohop lacks; it will not use this node");
                }
            }
            grpc_answer(&orchestrator_info(&state, &authority))
        }
        grpc::END_TRANSCODING_SESSION => {
            let r: EndTranscodingSessionRequest = match grpc::decode(message, "EndTranscodingSessionRequest") {
                Ok(r) => r,
                Err(e) => return grpc_status(Status::new(grpc::status::INVALID_ARGUMENT, e.to_string())),
            };
            let mut sessions = state.livepeer.lock();
            // Only the token's holder may end its session.
            if let Ok(id) = sessions.check(r.auth_token.as_ref(), unix_now()) {
                sessions.end(&id);
                tracing::info!(session = %id, "a Livepeer gateway ended its session");
            }
            grpc_answer(&EndTranscodingSessionResponse {})
        }
        grpc::REGISTER_TRANSCODER => match authority {
            Some(authority) => super::livepeer_transcoders::register(state, message, authority, peer),
            None => grpc_status(Status::new(grpc::status::INVALID_ARGUMENT, "no :authority")),
        },
        other => grpc_status(Status::new(grpc::status::UNIMPLEMENTED, format!("no gRPC method {other}"))),
    }
}

/// `GetOrchestrator`'s answer: segments go to this node as the gateway reached it.
fn orchestrator_info(state: &State, authority: &str) -> OrchestratorInfo {
    let id = crate::secret::random_hex("a Livepeer session id");
    let auth = state.livepeer.lock().issue(id, unix_now());
    refreshed_info(state, authority, Some(auth))
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// What the node says of itself, with `auth` (a new session's token, or the segment's own in
/// the `TranscodeResult`, which a gateway takes as its session's new info).
fn refreshed_info(
    state: &State,
    authority: &str,
    auth: Option<crate::livepeer::messages::AuthToken>,
) -> OrchestratorInfo {
    let (capacity, _) = state.scheduler.lock().totals();
    let caps = capabilities::zerohop(&state.config.livepeer_profiles);
    OrchestratorInfo {
        transcoder: format!("https://{authority}"),
        // As go-livepeer offchain: the zero address and no price (with a price stated, a
        // go-livepeer 0.9.1 gateway did not use this node).
        address: vec![0; 20],
        capabilities: Some(capabilities::message(&caps, capacity)),
        auth_token: auth,
        ..OrchestratorInfo::default()
    }
}

/// `POST /segment`.
pub(super) async fn segment(state: Arc<State>, req: Request<Incoming>) -> Resp {
    let received = Instant::now();
    if !state.config.livepeer_gateways {
        return reply::after_draining_all(
            req,
            refuse(StatusCode::NOT_FOUND, "start the node with --livepeer-gateways"),
        )
        .await;
    }
    let Some(authority) = authority(&req) else {
        return reply::after_draining_all(req, refuse(StatusCode::BAD_REQUEST, "no Host")).await;
    };
    if let Some(v) = req.headers().get(SEGMENT_HEADER) {
        crate::livepeer::trace::received("segment-Livepeer-Segment", v.as_bytes());
    }
    let seg = match segment_data(req.headers()) {
        Ok(s) => s,
        Err(e) => return reply::after_draining_all(req, refuse(StatusCode::FORBIDDEN, e)).await,
    };
    let checked = state.livepeer.lock().check(seg.auth_token.as_ref(), unix_now());
    let session = match checked {
        Ok(s) => s,
        Err(e) => return reply::after_draining_all(req, refuse(StatusCode::FORBIDDEN, e.to_string())).await,
    };
    let ladder = match ladder::from_livepeer(seg.ladder()) {
        Ok(l) => l,
        Err(e) => return reply::after_draining_all(req, refuse(StatusCode::FORBIDDEN, errors::for_ladder(&e))).await,
    };
    let needed = seg.capabilities.as_ref().map(|c| c.bitstring.clone()).unwrap_or_default();
    let have = capabilities::bitstring(&capabilities::zerohop(&state.config.livepeer_profiles));
    if !capabilities::compatible(&needed, &have) {
        let lack = capabilities::missing(&needed, &have).join(", ");
        tracing::info!(%lack, "a Livepeer segment needs capabilities zerohop lacks");
        return reply::after_draining_all(req, refuse(StatusCode::FORBIDDEN, "incompatible capabilities")).await;
    }
    metrics::counter!(m::SEGMENTS_RECEIVED).increment(1);
    // The whole upload, bounded, then its hash.
    let max = state.config.max_segment_bytes as usize;
    let data = match Limited::new(req.into_body(), max).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            tracing::info!(error = %e, "reading a Livepeer segment");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
    };
    metrics::counter!(m::BYTES_IN).increment(data.len() as u64);
    if !seg.hash.is_empty() && sha3::Keccak256::digest(&data)[..] != seg.hash[..] {
        return refuse(StatusCode::FORBIDDEN, "Forbidden");
    }
    // The gateway's session is the stream (its engine session, its affinity): a name of
    // zerohop's making, apart from broadcasters' stream names (a manifest id is any bytes, and
    // two gateways may use the same one).
    let stream = format!("livepeer-{session}");
    let (task, transcoder) = match place(&state, &stream, &ladder, received) {
        Ok(p) => p,
        // After the checks, as go-livepeer does: 200 and its text for a full orchestrator in
        // the result, which a gateway takes as "try another".
        Err(e) => {
            tracing::info!(reason = %e.message(), "a Livepeer segment found no free session");
            let info = refreshed_info(&state, &authority, seg.auth_token.clone());
            return result_body(TranscodeResult {
                seq: seg.seq,
                result: Some(TranscodeOutcome::Error(errors::ORCHESTRATOR_BUSY.into())),
                info: Some(info),
            });
        }
    };
    // go-livepeer's gateway waits max(8 s, 4 x duration) for it.
    state.scheduler.lock().at_least(task, received, crate::scheduler::default_deadline(seg.duration()));
    state.update_capacity_metrics();
    let input = InputBuf::new();
    let writer = input.writer();
    writer.push(data);
    writer.end(Ok(()));
    let (out_tx, out_rx) = mpsc::channel::<Out>(64);
    let names: Vec<String> = ladder.profiles().iter().map(|p| p.name.clone()).collect();
    let job = Job {
        stream: stream.clone(),
        seq: seg.seq.to_string(),
        options: ladder::options(&seg),
        ladder,
        input,
        out: out_tx,
        started: Arc::new(AtomicBool::new(false)),
        received,
    };
    dispatch(&state, task, transcoder, job);
    // 200 now; the result follows in the body.
    let (tx, body) = ChannelBody::channel(1);
    tokio::spawn(async move {
        let mut out_rx = out_rx;
        let result = crate::relay::gather(&mut out_rx, names.len()).await;
        let answer = match result {
            Ok(renditions) => {
                let mut segments = Vec::new();
                {
                    let mut sessions = state.livepeer.lock();
                    for (name, (data, pixels)) in names.iter().zip(renditions) {
                        sessions.keep(&session, name, seg.seq, data, Instant::now());
                        segments.push(TranscodedSegmentData {
                            url: format!("https://{authority}/livepeer/{session}/{name}/{}.ts", seg.seq),
                            pixels: pixels as i64,
                        });
                    }
                }
                metrics::counter!(m::SEGMENTS_TRANSCODED).increment(1);
                TranscodeOutcome::Data(TranscodeData { segments, sig: Vec::new() })
            }
            Err((code, message)) => {
                metrics::counter!(m::SEGMENTS_FAILED, "reason" => "livepeer").increment(1);
                TranscodeOutcome::Error(errors::text(&code, &message))
            }
        };
        metrics::histogram!(m::TTLB).record(received.elapsed().as_secs_f64());
        let info = refreshed_info(&state, &authority, seg.auth_token.clone());
        let result = TranscodeResult { seq: seg.seq, result: Some(answer), info: Some(info) };
        let _ = tx.send(Ok(Frame::data(Bytes::from(result.encode_to_vec())))).await;
    });
    reply::streamed(body, "application/octet-stream")
}

/// A `TranscodeResult` answered at once.
fn result_body(r: TranscodeResult) -> Resp {
    reply::full(Bytes::from(r.encode_to_vec()), "application/octet-stream")
}

/// The authority the request came to (HTTP/2's `:authority`, else `Host`).
fn authority<B>(req: &Request<B>) -> Option<String> {
    req.uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| req.headers().get(http::header::HOST)?.to_str().ok().map(str::to_string))
}

/// The segment's `SegData`, from base64 in its header.
fn segment_data(headers: &HeaderMap) -> Result<SegData, String> {
    let v = headers.get(SEGMENT_HEADER).ok_or("no Livepeer-Segment header")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.as_bytes())
        .map_err(|e| format!("Livepeer-Segment is not base64: {e}"))?;
    SegData::decode(&raw[..]).map_err(|e| format!("Livepeer-Segment is not a SegData: {e}"))
}

/// `GET /livepeer/{session}/{rendition}/{seq}.ts`.
pub(super) fn rendition(state: &State, session: &str, name: &str, file: &str) -> Resp {
    let found = file
        .strip_suffix(".ts")
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|seq| state.livepeer.lock().get(session, name, seq));
    match found {
        Some(data) => reply::full(data, "video/mp2t"),
        None => refuse(StatusCode::NOT_FOUND, "no such rendition (it may have expired)"),
    }
}
