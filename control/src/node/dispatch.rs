//! Where a placed segment runs: the in-process engine or a remote transcoder's link; and what
//! happens when a remote task fails: a retry elsewhere while no result byte went out, else an
//! in-band `transcoder_lost` error. Housekeeping expires tasks past their deadline.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use super::state::{Job, LOCAL, State, StreamSlot};
use crate::fault::code;
use crate::framing::SEGMENT;
use crate::link::ToTranscoder;
use crate::metrics as m;
use crate::relay::{Out, run_local};
use crate::scheduler::{Failover, TaskId, TranscoderId};

/// Runs or sends a job on `transcoder` as `task`.
pub(super) fn dispatch(state: &Arc<State>, task: TaskId, transcoder: TranscoderId, job: Job) {
    if transcoder == LOCAL {
        return run_here(state, task, job);
    }
    let line = ToTranscoder::Task {
        task,
        stream: job.stream.clone(),
        seq: job.seq.clone(),
        ladder: job.ladder.clone(),
        clip: job.options.clip,
    }
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
        _ => fail(state, task),
    }
}

/// Runs a job on the in-process engine, in the stream's session.
fn run_here(state: &Arc<State>, task: TaskId, job: Job) {
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
            state.update_capacity_metrics();
        };
        let timeline = crate::hop_log::engine_timeline();
        let options = zerohop_engine::SegmentOptions { timeline: timeline.clone(), ..job.options };
        // Its figures become series in run_local, as on a remote transcoder.
        run_local(&slot, &state.config.sessions, job.ladder, options, &job.input, &job.out, release).ok();
        if let Some(t) = &timeline {
            crate::hop_log::engine_events(&job.stream, &job.seq, t);
        }
    });
}

/// A remote task failed now: its retry, or its error.
pub(super) fn fail(state: &Arc<State>, task: TaskId) {
    let f = state.scheduler.lock().fail(task, Instant::now());
    apply_failover(state, task, f);
}

/// Moves a failed remote task to its retry, or ends it with an error record.
pub(super) fn apply_failover(state: &Arc<State>, task: TaskId, failover: Failover) {
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
                let lost =
                    Out::Error { rendition: SEGMENT, code: code::TRANSCODER_LOST.into(), message: message.clone() };
                let _ = out.send(lost).await;
                let summary = json!({"status": "error", "code": code::TRANSCODER_LOST, "message": message});
                let _ = out.send(Out::End { ok: false, summary }).await;
            });
        }
    }
    state.update_capacity_metrics();
}

/// Closes idle stream sessions and fails over remote tasks past their deadline.
pub(super) async fn housekeeping(state: Arc<State>) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let expired = state.scheduler.lock().expire(Instant::now());
        for (task, failover) in expired {
            tracing::warn!(task, "task missed its deadline");
            apply_failover(&state, task, failover);
        }
        let idle = state.config.idle_timeout;
        state.scheduler.lock().expire_affinity(Instant::now(), idle);
        state.owners.lock().expire(Instant::now());
        state.hls.lock().expire(Instant::now());
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
