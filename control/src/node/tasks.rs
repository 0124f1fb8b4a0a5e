//! A remote transcoder's side of a task: `GET /v1/tasks/{id}/input` reads the broadcaster's
//! upload from its start as it arrives, `POST /v1/tasks/{id}/results` streams the records back,
//! relayed to the broadcaster.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::dispatch;
use super::reply::{self, Resp};
use super::state::State;
use crate::body::ChannelBody;
use crate::fault::{NodeError, code};
use crate::framing::{Kind, RecordReader};
use crate::metrics as m;
use crate::relay::{InputItem, Out};
use crate::scheduler::TaskId;

fn no_task() -> Resp {
    reply::error(&NodeError::new(code::NO_TASK, "no such task (finished, failed over or never assigned)"))
}

/// `GET /v1/tasks/{id}/input`: the broadcaster's upload, from its start, as it arrives.
pub(super) fn input(state: &State, id: &str) -> Resp {
    let found = id.parse::<TaskId>().ok().and_then(|id| {
        state.jobs.lock().get(&id).map(|j| (j.input.clone(), j.received, j.stream.clone(), j.seq.clone()))
    });
    let Some((input, received, stream, seq)) = found else {
        return no_task();
    };
    metrics::histogram!(m::QUEUE).record(received.elapsed().as_secs_f64());
    let (tx, body) = ChannelBody::channel(16);
    tokio::spawn(async move {
        let mut i = 0;
        loop {
            let frame = match input.next(i).await {
                InputItem::Data(d) => Ok(Frame::data(d)),
                InputItem::End => {
                    crate::hop_log::event(&stream, &seq, "task_input_last");
                    break;
                }
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

/// How reading a transcoder's results ended.
enum Relayed {
    /// The end record went to the broadcaster.
    Ended,
    /// The broadcaster went away (not the transcoder's fault).
    BroadcasterGone,
    /// The task was failed over meanwhile (deadline or disconnect).
    FailedOver,
    /// The stream broke off before its end record.
    Broken,
}

/// `POST /v1/tasks/{id}/results`: a transcoder's records, relayed to the broadcaster.
pub(super) async fn results(state: Arc<State>, task: TaskId, req: Request<Incoming>) -> Resp {
    let Some(how) = relay(&state, task, req).await else { return no_task() };
    match finish(&state, task, how) {
        Relayed::FailedOver => reply::error(&NodeError::new(
            code::TASK_FAILED_OVER,
            "the task was failed over (deadline or disconnect); its results are no longer wanted",
        )),
        Relayed::Ended | Relayed::BroadcasterGone => reply::ok("results relayed"),
        Relayed::Broken => {
            reply::error(&NodeError::new(code::BROKEN_RESULTS, "result stream ended without its end record"))
        }
    }
}

/// The scheduler's side of a relay's end.
fn finish(state: &Arc<State>, task: TaskId, how: Relayed) -> Relayed {
    match how {
        Relayed::Ended | Relayed::BroadcasterGone => {
            state.jobs.lock().remove(&task);
            if matches!(how, Relayed::Ended) {
                state.scheduler.lock().succeeded(task);
            } else {
                state.scheduler.lock().finish(task);
            }
            state.update_capacity_metrics();
        }
        Relayed::Broken => {
            tracing::warn!(task, "result stream from transcoder broke off");
            dispatch::fail(state, task);
        }
        Relayed::FailedOver => {}
    }
    how
}

/// Relays the records of `req` to the task's broadcaster; `None` for a task that is not in
/// flight.
async fn relay(state: &State, task: TaskId, req: Request<Incoming>) -> Option<Relayed> {
    let (out, started, mut span) = state
        .jobs
        .lock()
        .get(&task)
        .map(|j| (j.out.clone(), j.started.clone(), crate::hop_log::Span::new(&j.stream, &j.seq, "result")))?;
    let mut body = req.into_body();
    let mut reader = RecordReader::new();
    loop {
        // A transcoder that goes silent is failed over by the deadline; then stop reading it
        // too, so its request does not hold the handler forever.
        let frame = match tokio::time::timeout(Duration::from_secs(1), body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Some(Relayed::Broken),
            Err(_) if !state.jobs.lock().contains_key(&task) => return Some(Relayed::FailedOver),
            Err(_) => continue,
        };
        let Ok(frame) = frame else { return Some(Relayed::Broken) };
        let Ok(data) = frame.into_data() else { continue };
        reader.push(&data);
        while let Some(rec) = reader.poll() {
            let Ok(rec) = rec else { return Some(Relayed::Broken) };
            let Some(item) = Out::from_record(&rec) else { continue };
            match &item {
                Out::Record(r) if r.first() == Some(&Kind::Chunk.byte()) => span.saw(),
                Out::End { .. } => span.last(),
                _ => {}
            }
            if let Some(how) = forward(state, task, &out, &started, item).await {
                return Some(how);
            }
        }
    }
}

/// One result item of a remote task to its broadcaster; `Some` when the relay is over.
async fn forward(
    state: &State,
    task: TaskId,
    out: &tokio::sync::mpsc::Sender<Out>,
    started: &std::sync::atomic::AtomicBool,
    item: Out,
) -> Option<Relayed> {
    // A task that was failed over meanwhile must not write to the broadcaster.
    if !state.jobs.lock().contains_key(&task) {
        return Some(Relayed::FailedOver);
    }
    if matches!(&item, Out::Record(r) if r.first() == Some(&Kind::Chunk.byte()))
        && !started.swap(true, Ordering::AcqRel)
    {
        state.scheduler.lock().result_started(task);
    }
    let ended = matches!(item, Out::End { .. });
    let sent = out.send(item).await.is_ok();
    if ended {
        return Some(Relayed::Ended); // the transcoder did its part either way
    }
    (!sent).then_some(Relayed::BroadcasterGone)
}

/// A remote task's whole result at once (a go-livepeer transcoder's), relayed as a zerohop
/// transcoder's records are, with the same bookkeeping.
pub(super) async fn deliver(state: &Arc<State>, task: TaskId, items: Vec<Out>) {
    let Some((out, started)) = state.jobs.lock().get(&task).map(|j| (j.out.clone(), j.started.clone())) else {
        return;
    };
    let mut how = Relayed::Broken;
    for item in items {
        if let Some(h) = forward(state, task, &out, &started, item).await {
            how = h;
            break;
        }
    }
    finish(state, task, how);
}
