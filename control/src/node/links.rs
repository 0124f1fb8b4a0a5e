//! `POST /v1/transcoders/link`: a transcoder's live link. The request body carries its load
//! reports, the response body its tasks, both as JSON lines, for as long as the connection
//! lives; when it ends, the transcoder's tasks fail over. A new link with a linked id replaces
//! the old one.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{mpsc, watch};

use super::dispatch::apply_failover;
use super::reply::{self, Resp};
use super::secrets::Credential;
use super::state::{Link, Peer, State};
use crate::body::ChannelBody;
use crate::fault::{NodeError, code};
use crate::headers;
use crate::link::{self, LineReader, Report, ToTranscoder};
use crate::metrics as m;
use crate::scheduler::TranscoderId;

/// A link of an id that replaced a live one within this long of that one being made was itself
/// replaced soon after linking: two boxes sharing an id take over from each other like this.
const TAKEOVER_REPEAT: Duration = Duration::from_secs(120);

/// `POST /v1/transcoders/link`, for a transcoder already authenticated as `name`, dialling from
/// `peer`. An orchestrator holds one link per id: a new link with the id of a live one replaces
/// it (the old link is told why, then closed, and its tasks fail over, to the new link if it has
/// room), so a transcoder whose old link died silently is not locked out until that link's PING
/// timeout. Two transcoders configured with one id take over from each other; the log says so.
pub(super) fn link(
    state: Arc<State>,
    req: Request<Incoming>,
    name: String,
    credential: Credential,
    peer: &Peer,
) -> Resp {
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
    let peer = peer.addr();
    let now = Instant::now();
    let (replaced, takeovers, failovers) = {
        // Under one lock (links, then the scheduler): of two links racing with one id, the later
        // replaces the earlier, and the list never shows both.
        let mut links = state.links.lock();
        // At most one: each link of an id replaces the one before it.
        let old = links.iter().find(|(_, l)| l.name == name).map(|(k, _)| *k);
        let replaced: Option<(TranscoderId, Link)> = old.and_then(|k| links.remove(&k).map(|l| (k, l)));
        let takeovers = replaced
            .as_ref()
            .map_or(0, |(_, l)| if now.duration_since(l.since) < TAKEOVER_REPEAT { l.takeovers + 1 } else { 1 });
        let link =
            Link { name: name.clone(), peer, since: now, takeovers, backend, gpus, credential, tasks: task_tx, close };
        links.insert(id, link);
        let mut sch = state.scheduler.lock();
        // The new link first, so the old one's tasks can fail over to it.
        sch.add_transcoder(id, capacity);
        sch.set_capabilities(id, caps);
        let failovers: Vec<_> = replaced.iter().flat_map(|(old, _)| sch.remove_transcoder(*old, now)).collect();
        (replaced, takeovers, failovers)
    };
    if let Some((old_id, old)) = replaced {
        metrics::counter!(m::LINK_TAKEOVERS).increment(1);
        let (old_peer, new_peer) = (old.peer.to_string(), peer.to_string());
        let age_s = now.duration_since(old.since).as_secs_f64();
        let moved = failovers.len();
        if takeovers > 1 {
            tracing::error!(
                transcoder = %name, %old_peer, %new_peer, old_link = old_id, new_link = id, takeovers, age_s,
                tasks_failed_over = moved,
                "links with this transcoder id keep replacing each other ({takeovers} in a row, each within {} s of \
                 the last): two transcoders share the id {name:?}; give each its own --transcoder-id",
                TAKEOVER_REPEAT.as_secs()
            );
        } else {
            tracing::warn!(
                transcoder = %name, %old_peer, %new_peer, old_link = old_id, new_link = id, age_s,
                tasks_failed_over = moved,
                "a new link with this transcoder id replaced the live one (closed; its tasks fail over): fine once, \
                 when a transcoder re-links after its old network path went silent; if it repeats, two transcoders \
                 share the id {name:?}: give each its own --transcoder-id"
            );
        }
        // Its last line says why, then it ends (its reader sees `close` after the line).
        let _ = old.tasks.try_send(ToTranscoder::Replaced { old: old_peer, new: new_peer }.encode());
        let _ = old.close.send(true);
    }
    for (task, f) in failovers {
        apply_failover(&state, task, f);
    }
    state.update_capacity_metrics();
    tracing::info!(transcoder = %name, id, capacity, version, ?caps, "transcoder connected");
    let (tx, body) = ChannelBody::channel(64);
    // Tasks -> the transcoder, until the link ends, the transcoder is revoked or a new link
    // replaces this one; lines queued before `close` still go (a replaced link's last one says why).
    let mut closed_tasks = closed.clone();
    tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                biased;
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
        let failovers = {
            // A replaced link was taken out of both already, a revoked one out of `links`.
            let mut links = state.links.lock();
            links.remove(&id);
            state.scheduler.lock().remove_transcoder(id, Instant::now())
        };
        if *closed_reports.borrow() {
            tracing::info!(transcoder = %name, id, %peer, "transcoder link closed by this orchestrator");
        } else {
            tracing::warn!(transcoder = %name, id, %peer, "transcoder disconnected");
        }
        for (task, f) in failovers {
            apply_failover(&state, task, f);
        }
        state.update_capacity_metrics();
    });
    reply::streamed(body, "application/x-ndjson")
}
