//! Which handler serves a request, after whose authentication.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request};
use hyper::body::Incoming;
use tracing::Instrument;

use super::reply::{self, Resp};
use super::state::{Peer, State};
use super::{auth, links, livepeer, livepeer_transcoders, playback, segment, status, tasks};
use crate::fault::{NodeError, code};
use crate::link::ToTranscoder;
use crate::metrics as m;
use crate::multipart::accepts_multipart;
use segment::Answer;

pub(super) async fn handle(state: Arc<State>, peer: Peer, req: Request<Incoming>) -> Result<Resp, Infallible> {
    if livepeer::is_grpc(&req) {
        return Ok(livepeer::rpc(state, req, &peer).await);
    }
    let path: Vec<String> = req.uri().path().trim_matches('/').split('/').map(str::to_string).collect();
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    Ok(match (req.method(), &path[..]) {
        (&Method::GET, ["healthz"]) => reply::ok("zerohop node is serving"),
        (&Method::GET, ["readyz"]) => match state.readiness() {
            Ok(()) => reply::ok("ready to take work"),
            Err(why) => reply::error(&NodeError::new(code::NOT_READY, why)),
        },
        (&Method::GET, ["metrics"]) => reply::full(m::render(), "text/plain; version=0.0.4"),
        (&Method::POST, ["v1", "streams", stream, "segments", seq]) => {
            if let Err(r) = admit(&state, &req, &peer, stream, seq) {
                return Ok(refuse_upload(req, r).await);
            }
            let span = tracing::info_span!("segment", stream = %stream, seq = %seq);
            let answer = if accepts_multipart(req.headers().get(http::header::ACCEPT)) {
                Answer::Multipart
            } else {
                Answer::Records
            };
            let (stream, seq) = (stream.to_string(), seq.to_string());
            segment::segment(state, req, stream, seq, answer).instrument(span).await
        }
        // Livepeer's push API: a segment, or a playlist from an HLS muxer (read and ignored).
        (&Method::PUT | &Method::POST, ["live", stream, file]) => {
            if let Err(r) = auth::broadcaster(&state, req.headers(), peer.ip) {
                return Ok(refuse_upload(req, r).await);
            }
            let Some(seq) = file.strip_suffix(".ts") else {
                let ignored = reply::empty_bytes();
                return Ok(if file.ends_with(".m3u8") {
                    reply::after_draining_all(req, ignored).await
                } else {
                    let e = NodeError::new(code::NOT_FOUND, "push segments as /live/{stream}/{seq}.ts");
                    refuse_upload(req, reply::error(&e)).await
                });
            };
            if let Err(r) = admit(&state, &req, &peer, stream, seq) {
                return Ok(refuse_upload(req, r).await);
            }
            let span = tracing::info_span!("segment", stream = %stream, seq = %seq);
            let (stream, seq) = (stream.to_string(), seq.to_string());
            if accepts_multipart(req.headers().get(http::header::ACCEPT)) {
                return Ok(segment::segment(state, req, stream, seq, Answer::Multipart).instrument(span).await);
            }
            // On its own task: an encoder that hangs up without reading the answer (ffmpeg's
            // HLS muxer does) does not cancel the segment, which still goes to HLS playback.
            let segment = tokio::spawn(segment::segment(state, req, stream, seq, Answer::Empty).instrument(span));
            segment.await.unwrap_or_else(|e| {
                reply::error(&NodeError::new(code::NO_OUTPUT, format!("the segment's task failed: {e}")))
            })
        }
        // A go-livepeer gateway's segment, and its renditions (`--livepeer-gateways`).
        (&Method::POST, ["segment"]) => livepeer::segment(state, req).await,
        (&Method::GET, ["livepeer", session, rendition, file]) => livepeer::rendition(&state, session, rendition, file),
        // go-livepeer transcoders: their input, their results.
        (&Method::GET, ["livepeer", "tasks", token, task, "input"]) => livepeer_transcoders::input(&state, token, task),
        (&Method::POST, ["transcodeResults"]) => livepeer_transcoders::results(state, req).await,
        (&Method::DELETE, ["v1", "streams", stream]) => {
            let who = match auth::broadcaster(&state, req.headers(), peer.ip) {
                Ok(who) => who,
                Err(r) => return Ok(r),
            };
            if let Some(who) = who
                && let Err(e) = state.owners.lock().release(stream, &who)
            {
                return Ok(auth::refused_claim(&e));
            }
            end_stream(&state, stream)
        }
        (&Method::GET | &Method::HEAD, ["stream", ..]) => playback::get(&state, &req, peer.ip, &path[1..]),
        (&Method::OPTIONS, ["stream", ..]) => playback::preflight(),
        (&Method::GET, ["v1", "transcoders"]) => match auth::broadcaster(&state, req.headers(), peer.ip) {
            Ok(_) => status::transcoders(&state),
            Err(r) => r,
        },
        // A method the endpoint serves, over HTTP/1.1 (another method gets 405 below).
        (method, ["v1", "transcoders", "link"] | ["v1", "tasks", ..])
            if req.version() != http::Version::HTTP_2
                && allowed(&path).is_some_and(|a| a.split(", ").any(|m| m == method.as_str())) =>
        {
            reply::error(&NodeError::new(
                code::HTTP2_REQUIRED,
                "the transcoder link and its task endpoints are HTTP/2 only (h2 over TLS, or h2c prior knowledge)",
            ))
        }
        (&Method::POST, ["v1", "transcoders", "link"]) => match auth::transcoder(&state, req.headers(), &peer) {
            Ok((name, credential)) => links::link(state, req, name, credential, &peer),
            Err(r) => r,
        },
        (&Method::GET, ["v1", "tasks", id, "input"]) => match auth::transcoder(&state, req.headers(), &peer) {
            Ok(_) => tasks::input(&state, id),
            Err(r) => r,
        },
        (&Method::POST, ["v1", "tasks", id, "results"]) => match auth::transcoder(&state, req.headers(), &peer) {
            Ok(_) => tasks::results(state, id.parse().unwrap_or(0), req).await,
            Err(r) => r,
        },
        (method, path) => match allowed(path) {
            Some(allow) if !allow.split(", ").any(|m| m == method.as_str()) => {
                let e = NodeError::new(code::METHOD_NOT_ALLOWED, format!("{method} is not served here; use {allow}"));
                let mut r = reply::error(&e);
                r.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
                refuse_upload(req, r).await
            }
            _ => {
                let e = NodeError::new(code::NOT_FOUND, "no such endpoint; see doc/openapi.yaml");
                refuse_upload(req, reply::error(&e)).await
            }
        },
    })
}

/// The methods a known path serves (its `Allow`), or `None` for a path that is not an endpoint.
fn allowed(path: &[&str]) -> Option<&'static str> {
    Some(match path {
        ["healthz"] | ["readyz"] | ["metrics"] | ["v1", "transcoders"] | ["v1", "tasks", _, "input"] => "GET",
        ["livepeer", _, _, _] | ["livepeer", "tasks", _, _, "input"] => "GET",
        ["v1", "streams", _, "segments", _] | ["v1", "transcoders", "link"] | ["v1", "tasks", _, "results"] => "POST",
        ["segment"] | ["transcodeResults"] => "POST",
        ["v1", "streams", _] => "DELETE",
        ["live", _, _] => "PUT, POST",
        ["stream", ..] => "GET, HEAD, OPTIONS",
        _ => return None,
    })
}

/// A segment's sequence number: a non-negative integer (decimal digits only, at most 2^64 - 1).
fn sequence(seq: &str) -> Result<u64, NodeError> {
    seq.bytes().all(|b| b.is_ascii_digit()).then(|| seq.parse::<u64>().ok()).flatten().ok_or_else(|| {
        let shown: String = seq.chars().take(64).collect();
        NodeError::new(
            code::BAD_SEQUENCE,
            format!("sequence number {shown:?} is not a non-negative integer (0 to 18446744073709551615)"),
        )
    })
}

/// Whether a broadcaster may push segment `seq` of `stream`: its token, a sequence number, and
/// the stream being its own (claimed for it now if new). `Err` is the refusal to send.
fn admit(state: &State, req: &Request<Incoming>, peer: &Peer, stream: &str, seq: &str) -> Result<(), Resp> {
    let who = auth::broadcaster(state, req.headers(), peer.ip)?;
    sequence(seq).map_err(|e| reply::error(&e))?;
    match who.map(|who| state.owners.lock().claim(stream, &who, Instant::now())) {
        Some(Err(e)) => Err(auth::refused_claim(&e)),
        _ => Ok(()),
    }
}

/// `refusal` for a request whose upload is still coming, after reading it (bounded).
async fn refuse_upload(req: Request<Incoming>, refusal: Resp) -> Resp {
    let (parts, body) = req.into_parts();
    reply::after_draining(&parts, body, refusal).await
}

/// `DELETE /v1/streams/{stream}`: frees the stream's sessions, here and on a remote transcoder.
fn end_stream(state: &State, stream: &str) -> Resp {
    let local = state.streams.lock().remove(stream).is_some();
    state.hls.lock().end(stream);
    let holder = state.scheduler.lock().end_stream(stream);
    // A remote transcoder holding the stream's sessions is told to free them now rather than at
    // its idle timeout.
    let remote = holder.and_then(|t| state.links.lock().get(&t).map(|l| l.tasks.clone()));
    let told =
        remote.is_some_and(|tx| tx.try_send(ToTranscoder::EndStream { stream: stream.to_string() }.encode()).is_ok());
    tracing::info!(%stream, local, remote = told, "stream ended by the broadcaster");
    // Held: its sessions are here, or on a linked transcoder that was just told. A stream whose
    // sessions closed while idle, or whose transcoder's link has ended, is no longer held.
    if local || told {
        reply::ok("stream ended")
    } else {
        reply::error(&NodeError::new(
            code::NO_SUCH_STREAM,
            format!("this node holds no stream {stream:?} (never pushed, already ended, or expired while idle)"),
        ))
    }
}
