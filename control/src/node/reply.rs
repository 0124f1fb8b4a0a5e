//! The node's responses: JSON `{code, message}` bodies, errors as their typed status, refusals
//! sent after the refused upload was read (bounded), and Livepeer's gRPC and plain-text answers.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Frame;
use hyper::body::Incoming;
use serde_json::json;

use crate::body::ChannelBody;
use crate::fault::NodeError;
use crate::livepeer::grpc::{self, Status};

pub(super) type Resp = Response<ChannelBody>;

/// A complete body with its content type.
pub(super) fn full(body: impl Into<Bytes>, content_type: &'static str) -> Resp {
    let mut r = Response::new(ChannelBody::full(body.into()));
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A streamed body with its content type.
pub(super) fn streamed(body: ChannelBody, content_type: &'static str) -> Resp {
    let mut r = Response::new(body);
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A streamed body whose content type is made at run time (a multipart boundary).
pub(super) fn streamed_as(body: ChannelBody, content_type: &str) -> Resp {
    let mut r = Response::new(body);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

/// 200 with no body.
pub(super) fn empty() -> Resp {
    Response::new(ChannelBody::empty())
}

/// 200 with an empty body that still says its type (Livepeer's push answer without `Accept`, an
/// ignored playlist): `application/octet-stream`, as `doc/openapi.yaml` documents.
pub(super) fn empty_bytes() -> Resp {
    full(Bytes::new(), "application/octet-stream")
}

/// A success: 200 with `{code: "ok", message}`.
pub(super) fn ok(message: &str) -> Resp {
    json_body(StatusCode::OK, crate::fault::code::OK, message)
}

/// An error: its status, `Retry-After` when it passes, and `{code, message}`.
pub(super) fn error(e: &NodeError) -> Resp {
    let mut r = json_body(e.status(), e.code(), e.message());
    if let Some(v) = e.retry_after().and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
        r.headers_mut().insert(http::header::RETRY_AFTER, v);
    }
    r
}

fn json_body(status: StatusCode, code: &str, message: &str) -> Resp {
    let mut r = full(json!({"code": code, "message": message}).to_string(), "application/json");
    *r.status_mut() = status;
    r
}

/// The most of a refused upload read and discarded before the refusal is sent.
pub const DRAIN_MAX_BYTES: u64 = 8 << 20;
/// The longest a refused upload is read before the refusal is sent anyway.
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(10);

/// `refusal`, sent after the rest of the request's upload was read and discarded (at most
/// [`DRAIN_MAX_BYTES`] and [`DRAIN_MAX_TIME`]): clients such as curl 7.88 fail with a stream
/// error (HTTP/2) or a reset (HTTP/1.1) when the answer comes while they are still sending,
/// and never show the status. An HTTP/1.1 client that waits for `100 Continue` gets the
/// refusal at once instead (the body was never sent), as does one that declared more than the
/// bound; past the bound an HTTP/1.1 connection is closed after the answer.
pub(super) async fn after_draining(parts: &http::request::Parts, body: Incoming, mut refusal: Resp) -> Resp {
    let h1 = parts.version < http::Version::HTTP_2;
    let expects =
        parts.headers.get(http::header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let declared = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let drained = if (h1 && expects) || declared.is_some_and(|n| n > DRAIN_MAX_BYTES) {
        false
    } else {
        tokio::time::timeout(DRAIN_MAX_TIME, drain(body, DRAIN_MAX_BYTES)).await.unwrap_or(false)
    };
    if h1 && !drained {
        refusal.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    refusal
}

/// `answer` once the request's body was read to its end (a playlist an HLS muxer pushes,
/// ignored), at most [`DRAIN_MAX_BYTES`] and [`DRAIN_MAX_TIME`].
pub(super) async fn after_draining_all(req: http::Request<Incoming>, mut answer: Resp) -> Resp {
    let h1 = req.version() < http::Version::HTTP_2;
    let drained = tokio::time::timeout(DRAIN_MAX_TIME, drain(req.into_body(), DRAIN_MAX_BYTES)).await.unwrap_or(false);
    if h1 && !drained {
        answer.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    answer
}

/// Reads `body` to its end and drops it; false when it is longer than `max` or broke off.
async fn drain(mut body: Incoming, max: u64) -> bool {
    use http_body_util::BodyExt;
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return false };
        if let Some(d) = frame.data_ref() {
            total += d.len() as u64;
            if total > max {
                return false;
            }
        }
    }
    true
}
// Livepeer's endpoints (`livepeer`, `livepeer_transcoders`) answer as go-livepeer does: gRPC, or
// plain text.

pub(super) fn grpc_answer(message: &impl prost::Message) -> Resp {
    let (tx, body) = ChannelBody::channel(2);
    let _ = tx.try_send(Ok(Frame::data(grpc::frame(message))));
    let _ = tx.try_send(Ok(Frame::trailers(Status::ok().to_headers())));
    grpc_response(body, HeaderMap::new())
}

/// A trailers-only answer: the status in the headers.
pub(super) fn grpc_status(s: Status) -> Resp {
    if s.code != grpc::status::OK {
        tracing::info!(code = s.code, message = %s.message, "gRPC call refused");
    }
    grpc_response(ChannelBody::empty(), s.to_headers())
}

pub(super) fn grpc_response(body: ChannelBody, extra: HeaderMap) -> Resp {
    let mut r = Response::new(body);
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(grpc::CONTENT_TYPE));
    r.headers_mut().extend(extra);
    r
}

/// A plain-text refusal, as go-livepeer answers a segment it will not take.
pub(super) fn refuse(status: StatusCode, text: impl Into<String>) -> Resp {
    let text = text.into();
    tracing::info!(%status, %text, "Livepeer request refused");
    plain(status, text)
}

/// A plain-text answer.
pub(super) fn plain(status: StatusCode, text: impl Into<String>) -> Resp {
    let mut r = full(Bytes::from(text.into()), "text/plain; charset=utf-8");
    *r.status_mut() = status;
    r
}
