//! go-livepeer transcoders (`livepeer -transcoder -orchAddr`) in a zerohop orchestrator's pool,
//! beside zerohop's own: a transcoder kind of their own behind the same scheduler, links and
//! failover.
//!
//! * `RegisterTranscoder` (gRPC, server-streaming): the shared secret (`--orch-secret-file`)
//!   and a capacity in sessions; refused with go-livepeer's texts (`invalid secret`,
//!   `zero capacity`). The link's tasks become `NotifySegment`s: the input's URL on this node,
//!   the ladder as `fullProfiles`, the stream as the session; a stream's end, an empty URL.
//! * `GET /livepeer/tasks/{link token}/{task}/input`: the upload, as it arrives (go-livepeer
//!   reads it whole before it starts).
//! * `POST /transcodeResults`: go-livepeer's checks (`Livepeer-Transcoder-1.0`, the secret,
//!   `TaskId`), then the parts with `Pixels` in ladder order become the task's records, each
//!   rendition's size and frames read by the engine's probe; an error becomes a typed error.
//!   A broadcaster gets the same answer as from a zerohop transcoder, only later (no streaming).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::dispatch::apply_failover;
use super::reply::{Resp, grpc_response, grpc_status, plain, refuse};
use super::secrets::Credential;
use super::state::{Link, Peer, State};
use crate::body::ChannelBody;
use crate::framing::{self, Kind, SEGMENT};
use crate::link::ToTranscoder;
use crate::livepeer::capabilities::{self, Capability};
use crate::livepeer::grpc::{self, Status};
use crate::livepeer::messages::{AuthToken, NotifySegment, RegisterRequest, SegData};
use crate::livepeer::results::{self, Part, PartsReader};
use crate::livepeer::{errors, ladder};
use crate::relay::Out;
use crate::scheduler::Capabilities;
use crate::scheduler::TaskId;

/// The duration a notify states for a segment (zerohop does not know it before transcoding;
/// go-livepeer's own default, which sets nothing on the transcoder but its log).
const STATED_DURATION_MS: i32 = 2000;

/// `RegisterTranscoder`, its request already read.
pub(super) fn register(state: Arc<State>, message: Bytes, authority: String, peer: &Peer) -> Resp {
    let req: RegisterRequest = match grpc::decode(message, "RegisterRequest") {
        Ok(r) => r,
        Err(e) => return grpc_status(Status::new(grpc::status::INVALID_ARGUMENT, e.to_string())),
    };
    let shared = state.transcoders.read().shared.clone();
    let Some(secret) = shared.filter(|s| crate::secret::equal(s.as_bytes(), req.secret.as_bytes())) else {
        metrics::counter!(crate::metrics::AUTH_FAILURES).increment(1);
        tracing::warn!(peer = %peer.addr(), "a go-livepeer transcoder gave a wrong secret");
        return grpc_status(Status::new(grpc::status::UNKNOWN, errors::INVALID_SECRET));
    };
    if req.capacity <= 0 {
        return grpc_status(Status::new(grpc::status::UNKNOWN, errors::ZERO_CAPACITY));
    }
    let capacity = req.capacity.min(i64::from(u32::MAX)) as u32;
    // It must decode H.264 and write MPEG-TS H.264, what zerohop's ladders ask.
    let theirs = req.capabilities.as_ref().map(|c| c.bitstring.clone()).unwrap_or_else(|| vec![u64::MAX]);
    let needed = capabilities::bitstring(&[Capability::H264, Capability::MpegTs]);
    let caps = Capabilities { no_h264: !capabilities::compatible(&needed, &theirs), ..Capabilities::default() };
    let id = state.next_link.fetch_add(1, Ordering::Relaxed);
    let token = crate::secret::random_hex("a go-livepeer link's token");
    let name = format!("livepeer@{}", peer.addr());
    let (task_tx, mut task_rx) = mpsc::channel::<Bytes>(64);
    let (close, mut closed) = watch::channel(false);
    {
        let mut links = state.links.lock();
        links.insert(
            id,
            Link {
                name: name.clone(),
                peer: peer.addr(),
                since: Instant::now(),
                takeovers: 0,
                backend: "go-livepeer".into(),
                gpus: Vec::new(),
                credential: Credential::Secret(secret),
                tasks: task_tx,
                close,
            },
        );
        let mut sch = state.scheduler.lock();
        sch.add_transcoder(id, capacity);
        sch.set_capabilities(id, caps);
    }
    state.livepeer_links.lock().insert(token.clone(), id);
    state.update_capacity_metrics();
    let version = req.capabilities.as_ref().map(|c| c.version.clone()).unwrap_or_default();
    tracing::info!(transcoder = %name, id, capacity, %version, "go-livepeer transcoder registered");
    let (tx, body) = ChannelBody::channel(16);
    // Notifies whose input is whole, in the order their uploads end.
    let (ready_tx, mut ready_rx) = mpsc::channel::<NotifySegment>(64);
    tokio::spawn(async move {
        loop {
            let notify = tokio::select! {
                l = task_rx.recv() => {
                    let Some(line) = l else { break };
                    if let Some(n) = notify(&line, &authority, &token) {
                        when_uploaded(&state, n, &ready_tx);
                    }
                    continue;
                }
                n = ready_rx.recv() => n,
                _ = closed.changed() => None,
                _ = tx.closed() => None,
            };
            let Some(notify) = notify else { break };
            if tx.send(Ok(Frame::data(grpc::frame(&notify)))).await.is_err() {
                break;
            }
        }
        let _ = tx.try_send(Ok(Frame::trailers(Status::ok().to_headers())));
        state.livepeer_links.lock().remove(&token);
        let failovers = {
            let mut links = state.links.lock();
            links.remove(&id);
            state.scheduler.lock().remove_transcoder(id, Instant::now())
        };
        tracing::warn!(transcoder = %name, id, "go-livepeer transcoder gone");
        for (task, f) in failovers {
            apply_failover(&state, task, f);
        }
        state.update_capacity_metrics();
    });
    grpc_response(body, http::HeaderMap::new())
}

/// Passes `notify` on once its task's upload has ended (at once for an end of session). A
/// go-livepeer transcoder gives its input GET 4 s in all, body included, as go-livepeer's
/// orchestrator has the whole segment before it notifies; a live upload takes longer.
fn when_uploaded(state: &Arc<State>, notify: NotifySegment, ready: &mpsc::Sender<NotifySegment>) {
    let task = u64::try_from(notify.task_id).ok().filter(|_| !notify.url.is_empty());
    let input = task.and_then(|t| state.jobs.lock().get(&t).map(|j| j.input.clone()));
    let ready = ready.clone();
    tokio::spawn(async move {
        if let Some(input) = input {
            let mut i = 0;
            while let crate::relay::InputItem::Data(_) = input.next(i).await {
                i += 1;
            }
        }
        let _ = ready.send(notify).await;
    });
}

/// A link line as go-livepeer's message.
fn notify(line: &[u8], authority: &str, token: &str) -> Option<NotifySegment> {
    let session = |stream: &str| AuthToken { session_id: stream.to_string(), ..AuthToken::default() };
    match ToTranscoder::parse(line)? {
        ToTranscoder::Task { task, stream, seq, ladder, clip } => {
            let caps = capabilities::zerohop(&[]);
            Some(NotifySegment {
                url: format!("https://{authority}/livepeer/tasks/{token}/{task}/input"),
                seg_data: Some(SegData {
                    manifest_id: stream.clone().into_bytes(),
                    seq: seq.parse().unwrap_or(0),
                    duration: STATED_DURATION_MS,
                    capabilities: Some(capabilities::message(&caps, 0)),
                    auth_token: Some(session(&stream)),
                    full_profiles: ladder::to_livepeer(&ladder),
                    segment_parameters: ladder::parameters(&zerohop_engine::SegmentOptions {
                        clip,
                        ..Default::default()
                    }),
                    ..SegData::default()
                }),
                task_id: task as i64,
                // What go-livepeer sends, so that transcoders too old for SegData's profiles fail.
                profiles: b"invalid".to_vec(),
                // What go-livepeer's orchestrator sends offchain (its transcoder writes it
                // into the output's metadata).
                orch_id: "offchain".into(),
            })
        }
        ToTranscoder::EndStream { stream } => Some(NotifySegment {
            seg_data: Some(SegData { auth_token: Some(session(&stream)), ..SegData::default() }),
            ..NotifySegment::default()
        }),
        ToTranscoder::Replaced { .. } => None,
    }
}

/// `GET /livepeer/tasks/{token}/{task}/input`: only the link the task was sent on may read it.
pub(super) fn input(state: &State, token: &str, task: &str) -> Resp {
    let link = state.livepeer_links.lock().get(token).copied();
    let on_link =
        task.parse::<TaskId>().ok().zip(link).is_some_and(|(t, l)| state.scheduler.lock().transcoder_of(t) == Some(l));
    if !on_link {
        return refuse(StatusCode::NOT_FOUND, "no such task");
    }
    super::tasks::input(state, task)
}

/// `POST /transcodeResults`.
pub(super) async fn results(state: Arc<State>, req: Request<Incoming>) -> Resp {
    let headers = req.headers().clone();
    let h = &headers;
    let text = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let shared = state.transcoders.read().shared.clone();
    let authorized = text("authorization") == crate::livepeer::transcoder::AUTH_SCHEME
        && shared.is_some_and(|s| crate::secret::equal(s.as_bytes(), text("credentials").as_bytes()));
    if !authorized {
        return refuse(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let Ok(task) = text("taskid").parse::<TaskId>() else { return refuse(StatusCode::BAD_REQUEST, "Invalid Task ID") };
    // Only a task sent to a go-livepeer link takes results here (zerohop's own transcoders
    // post theirs to /v1/tasks/{id}/results, authenticated as themselves).
    let on_livepeer_link = state
        .scheduler
        .lock()
        .transcoder_of(task)
        .is_some_and(|t| state.livepeer_links.lock().values().any(|l| *l == t));
    if !on_livepeer_link && state.jobs.lock().contains_key(&task) {
        return refuse(StatusCode::FORBIDDEN, "the task is not a go-livepeer transcoder's");
    }
    let content_type = text("content-type");
    let max = state.config.max_segment_bytes as usize * 2;
    let body = match Limited::new(req.into_body(), max).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            // The task is answered now, not at its deadline.
            super::tasks::deliver(&state, task, failed(&format!("the transcoder's results could not be read: {e}")))
                .await;
            return refuse(StatusCode::BAD_REQUEST, format!("reading the results: {e}"));
        }
    };
    if crate::livepeer::trace::dir_set() {
        let head = format!("{}\n", crate::livepeer::trace::headers(&headers));
        crate::livepeer::trace::received("transcodeResults", &[head.as_bytes(), &body].concat());
    }
    let Some(ladder) = state.jobs.lock().get(&task).map(|j| j.ladder.clone()) else {
        // Late (failed over) or unknown: go-livepeer answers 200 and drops it.
        tracing::info!(task, "results for a task no longer in flight, dropped");
        return plain(StatusCode::OK, "OK");
    };
    let items = if content_type.starts_with(results::ERROR_CONTENT_TYPE) {
        failed(&String::from_utf8_lossy(&body))
    } else {
        let boundary = results::boundary(&content_type).unwrap_or_default();
        let mut reader = PartsReader::new(&boundary);
        reader.push(&body);
        let mut renditions = Vec::new();
        let mut broken = None;
        while let Some(p) = reader.poll() {
            match p {
                Ok(Part::Rendition(r)) => renditions.push(r.data),
                Ok(Part::Other { .. }) => {}
                Err(e) => broken = Some(e.to_string()),
            }
        }
        match (broken, reader.finish()) {
            (Some(e), _) => failed(&format!("the transcoder's results are malformed: {e}")),
            (None, Err(e)) => failed(&format!("the transcoder's results are malformed: {e}")),
            (None, Ok(())) if renditions.len() != ladder.len() => {
                failed(&format!("MismatchedSegments: {} renditions for a ladder of {}", renditions.len(), ladder.len()))
            }
            (None, Ok(())) => records(&ladder, renditions),
        }
    };
    super::tasks::deliver(&state, task, items).await;
    plain(StatusCode::OK, "OK")
}

/// A failed task's items: its error (LPMS's text read back as zerohop's code where it is one)
/// and its end.
fn failed(text: &str) -> Vec<Out> {
    let code = errors::code_of(text).unwrap_or(crate::fault::code::TRANSCODER_LOST);
    let message = format!("the go-livepeer transcoder failed: {text}");
    let summary = json!({"status": "error", "code": code, "message": message});
    vec![Out::Error { rendition: SEGMENT, code: code.into(), message }, Out::End { ok: false, summary }]
}

/// The renditions as the records a zerohop transcoder sends: each one's bytes, then its done
/// record with what the engine's probe reads in it.
fn records(ladder: &zerohop_engine::Ladder, renditions: Vec<Bytes>) -> Vec<Out> {
    let mut out = Vec::new();
    let mut frames_total = 0;
    for (i, (p, data)) in ladder.profiles().iter().zip(renditions).enumerate() {
        let probe = zerohop_engine::probe::probe(&data);
        frames_total += probe.frames_decoded;
        // What the engine's probe reads in it, as the stats of a rendition made here.
        let mut stats = zerohop_engine::RenditionStats::default();
        stats.name.clone_from(&p.name);
        (stats.width, stats.height) = probe.sps.as_ref().map_or((0, 0), |s| (s.width, s.height));
        (stats.frames_out, stats.ts_bytes, stats.keyframes) =
            (probe.frames_decoded, data.len() as u64, probe.idr_frames);
        // In pieces, as zerohop's own sink sends them (a record holds at most 16 MiB).
        for piece in data.chunks(64 << 10) {
            out.push(Out::Record(framing::record(Kind::Chunk, i as u8, piece)));
        }
        out.push(Out::done(i as u8, &stats));
    }
    out.push(Out::End { ok: true, summary: json!({"status": "ok", "frames_encoded": frames_total}) });
    out
}
