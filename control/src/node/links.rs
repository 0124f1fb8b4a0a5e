//! `POST /v1/transcoders/link`: a transcoder's live link. The request body carries its load
//! reports, the response body its tasks, both as JSON lines, for as long as the connection
//! lives; when it ends, the transcoder's tasks fail over.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::Request;
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{mpsc, watch};

use super::dispatch::apply_failover;
use super::reply::{self, Resp};
use super::secrets::Credential;
use super::state::{Link, State};
use crate::body::ChannelBody;
use crate::fault::{NodeError, code};
use crate::headers;
use crate::link::{self, LineReader, Report};

/// `POST /v1/transcoders/link`, for a transcoder already authenticated as `name`. An orchestrator
/// holds one link per id: a second link with the id of a live one is refused (409
/// `transcoder_id_in_use`) and the first keeps its tasks. A transcoder whose old link died
/// silently links again once the old one is dropped (its PING timeout, 10 s).
pub(super) fn link(state: Arc<State>, req: Request<Incoming>, name: String, credential: Credential) -> Resp {
    let version = match link::accept_version(req.headers().get(headers::LINK_VERSION).map(|v| v.as_bytes())) {
        Ok(v) => v,
        Err(why) => {
            tracing::warn!(transcoder = %name, %why, "transcoder refused: link protocol version");
            return reply::error(&NodeError::new(code::LINK_VERSION, why));
        }
    };
    let id = state.next_link.fetch_add(1, Ordering::Relaxed);
    let capacity = req.headers().get(headers::CAPACITY).and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1u32);
    let (task_tx, mut task_rx) = mpsc::channel::<Bytes>(64);
    let header = req.headers().get(headers::CAPABILITIES).map(|v| v.as_bytes()).unwrap_or_default();
    let caps = link::parse_capabilities(header);
    let (backend, gpus) = link::parse_backend(header);
    let (close, closed) = watch::channel(false);
    {
        // Checked and inserted under one lock: of two links racing with one id, one wins.
        let mut links = state.links.lock();
        if links.values().any(|l| l.name == name) {
            tracing::warn!(transcoder = %name, "transcoder refused: a live link already has this id");
            return reply::error(&NodeError::new(
                code::TRANSCODER_ID_IN_USE,
                format!(
                    "a transcoder with id {name:?} is already linked; give each transcoder its own \
                     --transcoder-id (this one links once the other's link ends)"
                ),
            ));
        }
        links.insert(id, Link { name: name.clone(), backend, gpus, credential, tasks: task_tx, close });
    }
    {
        let mut sch = state.scheduler.lock();
        sch.add_transcoder(id, capacity);
        sch.set_capabilities(id, caps);
    }
    state.update_capacity_metrics();
    tracing::info!(transcoder = %name, id, capacity, version, ?caps, "transcoder connected");
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
                    state.update_capacity_metrics();
                }
            }
        }
        state.links.lock().remove(&id);
        tracing::warn!(transcoder = %name, id, "transcoder disconnected");
        let failovers = state.scheduler.lock().remove_transcoder(id, Instant::now());
        for (task, f) in failovers {
            apply_failover(&state, task, f);
        }
        state.update_capacity_metrics();
    });
    reply::streamed(body, "application/x-ndjson")
}
