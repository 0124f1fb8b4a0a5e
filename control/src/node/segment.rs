//! `POST /v1/streams/{stream}/segments/{seq}`: the upload goes into a replayable buffer as it
//! arrives, the segment is placed with the scheduler and dispatched, and the broadcaster's
//! answer starts with the first encoded chunk. Errors before that are an HTTP status with a
//! JSON `{code, message}` body; errors after it an in-band record and `zerohop-status` /
//! `zerohop-error-code` trailers.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use tokio::sync::mpsc;
use zerohop_engine::Ladder;

use super::dispatch::dispatch;
use super::reply::{self, Resp};
use super::state::{Job, State};
use crate::body::ChannelBody;
use crate::fault::{NodeError, code};
use crate::framing::{self, Kind, RecordReader, SEGMENT};
use crate::headers;
use crate::hls::{SegmentRecorder, Variant};
use crate::metrics as m;
use crate::multipart::{MultipartWriter, PartError};
use crate::relay::{Abort, InputBuf, InputWriter, Out};
use crate::scheduler::{Need, PlaceError, TaskId, TranscoderId};

/// A segment refused before its first result: counted by reason and answered with its status.
fn refused(e: &NodeError) -> Resp {
    metrics::counter!(m::SEGMENTS_FAILED, "reason" => e.reason()).increment(1);
    reply::error(e)
}

/// How the broadcaster wants the renditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// The result stream (`application/vnd.zerohop.results`, see [`crate::framing`]).
    Records,
    /// `multipart/mixed`, one part per rendition (`Accept: multipart/mixed`).
    Multipart,
    /// 200 and no body once the segment is transcoded (Livepeer's push API without `Accept`).
    Empty,
}

/// A segment, for a broadcaster already admitted: `POST /v1/streams/{stream}/segments/{seq}` or
/// Livepeer's `PUT|POST /live/{stream}/{seq}.ts`.
pub(super) async fn segment(
    state: Arc<State>,
    req: Request<Incoming>,
    stream: String,
    seq: String,
    answer: Answer,
) -> Resp {
    let received = Instant::now();
    metrics::counter!(m::SEGMENTS_RECEIVED).increment(1);
    let (parts, body) = req.into_parts();
    let ladder = match ladder(&state, &parts.headers) {
        Ok(l) => l,
        Err(e) => return reply::after_draining(&parts, body, refused(&e)).await,
    };
    if let Err(e) = check_length(&parts.headers, state.config.max_segment_bytes) {
        return reply::after_draining(&parts, body, refused(&e)).await;
    }
    let (task, transcoder) = match place(&state, &stream, &ladder, received) {
        Ok(p) => p,
        Err(e) => return reply::after_draining(&parts, body, refused(&e)).await,
    };
    state.update_capacity_metrics();
    tracing::debug!(%stream, %seq, task, transcoder, "segment placed");

    // Upload -> replayable buffer, read by whoever runs the segment.
    let input = InputBuf::new();
    let (idle, max) = (state.config.upload_idle, state.config.max_segment_bytes);
    let span = crate::hop_log::Span::new(&stream, &seq, "upload");
    let uploading = tokio::spawn(upload(body, input.writer(), idle, max, received, span));

    let (out_tx, mut out_rx) = mpsc::channel::<Out>(64);
    let names: Vec<String> = ladder.profiles().iter().map(|p| p.name.clone()).collect();
    let ladder_seen = ladder.clone();
    let job = Job {
        stream: stream.clone(),
        seq: seq.clone(),
        ladder,
        options: Default::default(),
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
            tracing::info!(%stream, %seq, %code, %message, "segment refused");
            // The upload is still being read (up to the segment limit): answer once it has
            // ended, so that clients still sending see the status (see `reply::after_draining`).
            let _ = tokio::time::timeout(reply::DRAIN_MAX_TIME, uploading).await;
            return refused(&NodeError::from_code(&code, message));
        }
        Some(Out::End { .. }) | None => {
            return reply::error(&NodeError::new(code::NO_OUTPUT, "the engine produced nothing"));
        }
    };
    metrics::histogram!(m::TTFB).record(received.elapsed().as_secs_f64());

    let (tx, body) = ChannelBody::channel(32);
    let start = json!({"stream": stream, "seq": seq, "renditions": names});
    let mut head = BytesMut::new();
    framing::encode(Kind::Start, SEGMENT, start.to_string().as_bytes(), &mut head);
    head.extend_from_slice(&first);
    let hls = seq.parse::<u64>().ok().map(|n| {
        let variants = variants(&ladder_seen);
        (SegmentRecorder::new(n, variants.len()), variants, state.clone())
    });
    let to = Relay { tx, stream: stream.clone(), seq: seq.clone(), received, hls };
    tokio::spawn(relay(head.freeze(), out_rx, to));
    match answer {
        Answer::Records => reply::streamed(body, "application/vnd.zerohop.results"),
        Answer::Multipart => {
            let writer = MultipartWriter::new(MultipartWriter::fresh_boundary(&stream), &seq, names);
            let content_type = writer.content_type();
            let (tx, parts) = ChannelBody::channel(32);
            tokio::spawn(multipart(body, writer, tx));
            reply::streamed_as(parts, &content_type)
        }
        Answer::Empty => match records_end(body).await {
            Ok(()) => reply::empty_bytes(),
            Err(e) => reply::error(&NodeError::from_code(&e.code, e.message)),
        },
    }
}

/// The result stream `records` as multipart parts into `tx`; cut off (an error frame: the
/// connection or stream is reset) when the segment fails after its first part began.
async fn multipart(
    mut records: ChannelBody,
    mut writer: MultipartWriter,
    tx: mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
) {
    let mut reader = RecordReader::new();
    let failed = |e: &PartError| std::io::Error::other(format!("segment failed after its answer began: {e}"));
    while let Some(Ok(frame)) = records.frame().await {
        let Ok(data) = frame.into_data() else { continue };
        reader.push(&data);
        while let Some(r) = reader.poll() {
            let step = r.map_err(|e| PartError { code: code::BROKEN_RESULTS.into(), message: e.to_string() });
            match step.and_then(|r| writer.push(&r)) {
                Ok(out) => {
                    for b in out {
                        if tx.send(Ok(Frame::data(b))).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(failed(&e))).await;
                    return;
                }
            }
        }
    }
    if !writer.finished() {
        let e = PartError { code: code::ERROR.into(), message: "the result stream ended early".into() };
        let _ = tx.send(Err(failed(&e))).await;
    }
}

/// Reads the result stream `records` to its end: `Ok` when every rendition was made, else the
/// first error.
async fn records_end(mut records: ChannelBody) -> Result<(), PartError> {
    let mut reader = RecordReader::new();
    let mut first_error: Option<PartError> = None;
    while let Some(Ok(frame)) = records.frame().await {
        let Ok(data) = frame.into_data() else { continue };
        reader.push(&data);
        while let Some(r) = reader.poll() {
            let r = r.map_err(|e| PartError { code: code::BROKEN_RESULTS.into(), message: e.to_string() })?;
            let json = || serde_json::from_slice::<serde_json::Value>(&r.payload).unwrap_or_default();
            match r.kind {
                Kind::Error => {
                    let v = json();
                    let field = |k: &str| v[k].as_str().unwrap_or(code::ERROR).to_string();
                    first_error.get_or_insert(PartError { code: field("code"), message: field("message") });
                }
                Kind::End if json()["status"] == "ok" => return Ok(()),
                Kind::End => break,
                _ => {}
            }
        }
    }
    Err(first_error.unwrap_or(PartError { code: code::ERROR.into(), message: "the segment failed".into() }))
}

/// The ladder asked for in the profiles header (or Livepeer's transcode configuration: JSON
/// with `profiles`), else the node's default.
fn ladder(state: &State, headers: &HeaderMap) -> Result<Ladder, NodeError> {
    let asked = headers.get(headers::PROFILES).or_else(|| headers.get(headers::LIVEPEER_TRANSCODE_CONFIGURATION));
    let Some(v) = asked else { return Ok(state.config.default_ladder.clone()) };
    v.to_str()
        .map_err(|e| e.to_string())
        .and_then(|s| s.parse::<Ladder>().map_err(|e| e.to_string()))
        .map_err(|e| NodeError::new(code::BAD_PROFILE, e))
}

/// Refuses an upload whose declared length is over the limit before reading it.
fn check_length(headers: &HeaderMap, max: u64) -> Result<(), NodeError> {
    match headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) {
        Some(len) if len > max => {
            Err(NodeError::new(code::TOO_LARGE, format!("segment of {len} bytes exceeds the {max}-byte limit")))
        }
        _ => Ok(()),
    }
}

/// A transcoder (local or remote) for the ladder's largest rendition, with a free session.
pub(super) fn place(
    state: &State,
    stream: &str,
    ladder: &Ladder,
    now: Instant,
) -> Result<(TaskId, TranscoderId), NodeError> {
    let need = Need {
        width: ladder.profiles().iter().map(|p| p.width).max().unwrap_or(0),
        height: ladder.profiles().iter().map(|p| p.height).max().unwrap_or(0),
    };
    let placed = state.scheduler.lock().place_fitting(stream, need, now);
    placed.map_err(|e| match e {
        PlaceError::NoneFits(_) => NodeError::new(
            code::NO_CAPABLE_TRANSCODER,
            format!("no connected transcoder can make this ladder (largest rendition {}x{})", need.width, need.height),
        ),
        PlaceError::NoTranscoders => NodeError::new(code::AT_CAPACITY, "no transcoder is connected"),
        PlaceError::AtCapacity => NodeError::new(code::AT_CAPACITY, "all transcoding sessions are busy"),
    })
}

/// Moves the broadcaster's upload into the input buffer; cuts it off when it sends nothing for
/// `idle` or grows over `max` bytes.
async fn upload(
    mut body: Incoming,
    upload: InputWriter,
    idle: Duration,
    max: u64,
    received: Instant,
    mut span: crate::hop_log::Span,
) {
    let mut total = 0u64;
    loop {
        let Ok(frame) = tokio::time::timeout(idle, body.frame()).await else {
            metrics::counter!(m::SEGMENTS_FAILED, "reason" => code::UPLOAD_STALLED).increment(1);
            let why = format!("the upload sent nothing for {idle:?}");
            return upload.end(Err(Abort::new(code::UPLOAD_STALLED, why)));
        };
        match frame {
            Some(Ok(f)) => {
                let Ok(d) = f.into_data() else { continue };
                total += d.len() as u64;
                metrics::counter!(m::BYTES_IN).increment(d.len() as u64);
                if total > max {
                    let why = format!("segment upload exceeds the {max}-byte limit");
                    return upload.end(Err(Abort::new(code::TOO_LARGE, why)));
                }
                span.saw();
                upload.push(d);
            }
            Some(Err(e)) => return upload.end(Err(Abort::new(code::UPLOAD_FAILED, format!("upload failed: {e}")))),
            None => {
                span.last();
                metrics::histogram!(m::UPLOAD).record(received.elapsed().as_secs_f64());
                return upload.end(Ok(()));
            }
        }
    }
}

/// What each rendition is, for HLS playback.
fn variants(ladder: &Ladder) -> Vec<Variant> {
    let p = ladder.profiles().iter();
    p.map(|p| Variant { name: p.name.clone(), width: p.width, height: p.height, target_bitrate: p.bitrate }).collect()
}

/// Where a segment's result stream goes: to the broadcaster, and (for numbered segments) into
/// the HLS window once the segment is complete.
struct Relay {
    tx: mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
    stream: String,
    seq: String,
    received: Instant,
    hls: Option<(SegmentRecorder, Vec<Variant>, Arc<State>)>,
}

impl Relay {
    /// Hands `records` to the HLS recorder; records the segment when they complete it.
    fn record(&mut self, reader: &mut RecordReader, records: &[u8]) {
        let Some((recorder, variants, state)) = &mut self.hls else { return };
        reader.push(records);
        while let Some(Ok(r)) = reader.poll() {
            if let Some(seg) = recorder.push(&r) {
                state.hls.lock().record(&self.stream, variants.clone(), seg, Instant::now());
            }
        }
    }
}

/// The result stream to the broadcaster: the start record and first result in `head`, then
/// every record as it comes, then the trailers.
async fn relay(head: Bytes, mut out_rx: mpsc::Receiver<Out>, mut to: Relay) {
    let mut reader = RecordReader::new();
    to.record(&mut reader, &head);
    let tx = to.tx.clone();
    let (stream, seq, received) = (to.stream.clone(), to.seq.clone(), to.received);
    if tx.send(Ok(Frame::data(head))).await.is_err() {
        return;
    }
    let mut error_code: Option<String> = None;
    while let Some(o) = out_rx.recv().await {
        if let Out::Error { code, .. } = &o {
            error_code.get_or_insert(code.clone());
        }
        let end = match &o {
            Out::End { ok, summary } => {
                // One line per finished segment, for the operator's log.
                let ttlb = received.elapsed().as_secs_f64();
                let media = summary["media_ms"].as_f64().map(|ms| ms / 1000.0);
                let ratio = media.filter(|m| *m > 0.0).map(|m| ttlb / m);
                tracing::info!(
                    %stream, %seq, ok = *ok, frames = summary["frames"].as_u64(), ttlb_s = ttlb,
                    realtime_ratio = ratio, code = summary["code"].as_str(), "segment finished"
                );
                Some(*ok)
            }
            _ => None,
        };
        let record = o.to_record();
        to.record(&mut reader, &record);
        if tx.send(Ok(Frame::data(record))).await.is_err() {
            // The broadcaster went away: dropping `out_rx` makes the engine's sinks fail,
            // which ends the segment and frees the session.
            tracing::info!(%stream, %seq, "broadcaster disconnected; segment cancelled");
            return;
        }
        if let Some(ok) = end {
            crate::hop_log::event(&stream, &seq, "answer_last");
            if ok {
                metrics::counter!(m::SEGMENTS_TRANSCODED).increment(1);
                metrics::histogram!(m::TTLB).record(received.elapsed().as_secs_f64());
            } else {
                let reason = error_code.clone().unwrap_or_else(|| code::ERROR.into());
                metrics::counter!(m::SEGMENTS_FAILED, "reason" => reason).increment(1);
            }
            let _ = tx.send(Ok(Frame::trailers(trailers(ok, error_code.as_deref())))).await;
            return;
        }
    }
}

fn trailers(ok: bool, error_code: Option<&str>) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert(headers::STATUS, HeaderValue::from_static(if ok { "ok" } else { "error" }));
    if let Some(c) = error_code.and_then(|c| HeaderValue::from_str(c).ok()) {
        t.insert(headers::ERROR_CODE, c);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_say_ok_or_error_and_the_first_code() {
        let t = trailers(true, None);
        assert_eq!(
            (t.get(headers::STATUS).map(|v| v.as_bytes()), t.get(headers::ERROR_CODE)),
            (Some(&b"ok"[..]), None)
        );
        let t = trailers(false, Some("transcoder_lost"));
        assert_eq!(t.get(headers::STATUS).map(|v| v.as_bytes()), Some(&b"error"[..]));
        assert_eq!(t.get(headers::ERROR_CODE).map(|v| v.as_bytes()), Some(&b"transcoder_lost"[..]));
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let mut h = HeaderMap::new();
        assert!(check_length(&h, 10).is_ok(), "no length: checked as it arrives");
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert!(check_length(&h, 10).is_ok());
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        let e = check_length(&h, 10).expect_err("over");
        assert_eq!((e.code(), e.status()), (code::TOO_LARGE, http::StatusCode::PAYLOAD_TOO_LARGE));
        assert_eq!(e.message(), "segment of 11 bytes exceeds the 10-byte limit");
    }
}
