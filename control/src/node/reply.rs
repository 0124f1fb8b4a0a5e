//! The node's responses: JSON `{code, message}` bodies, and errors as their typed status.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::body::ChannelBody;
use crate::fault::NodeError;

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
