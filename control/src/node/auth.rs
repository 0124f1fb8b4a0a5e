//! Who is asking: broadcasters by bearer token, transcoders by id and secret or pinned client
//! certificate; failed attempts count against the peer address (429 beyond the limit).

use std::net::IpAddr;
use std::time::Instant;

use http::HeaderMap;

use super::reply::{self, Resp};
use super::secrets::Credential;
use super::state::{Peer, State};
use crate::broadcasters::{Broadcaster, ClaimError};
use crate::fault::{NodeError, code};
use crate::headers;
use crate::metrics as m;

fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// The broadcaster behind a request: `Ok(None)` when the node asks for no token. Failed
/// attempts count against the peer address like transcoders' (429 beyond the limit).
pub(super) fn broadcaster(state: &State, headers: &HeaderMap, peer: IpAddr) -> Result<Option<Broadcaster>, Resp> {
    let tokens = state.broadcasters.read();
    if tokens.is_empty() {
        return Ok(None);
    }
    let now = Instant::now();
    rate_limited(state, peer, now, Who::Broadcaster)?;
    match tokens.identify(bearer(headers)) {
        Some(b) => {
            state.auth_limiter.lock().succeeded(peer);
            Ok(Some(b.clone()))
        }
        None => {
            state.auth_limiter.lock().failed(peer, now);
            let e = NodeError::new(code::UNAUTHORIZED, "missing or wrong bearer token");
            metrics::counter!(m::SEGMENTS_FAILED, "reason" => e.reason()).increment(1);
            Err(reply::error(&e))
        }
    }
}

/// A claim on a stream refused: 403 for another broadcaster's stream, 429 over the limit.
pub(super) fn refused_claim(e: &ClaimError) -> Resp {
    let c = match e {
        ClaimError::Owned { .. } => code::STREAM_OWNED,
        ClaimError::Limit { .. } => code::STREAM_LIMIT,
    };
    let e = NodeError::new(c, e.to_string());
    metrics::counter!(m::SEGMENTS_FAILED, "reason" => e.reason()).increment(1);
    reply::error(&e)
}

#[derive(Clone, Copy)]
enum Who {
    Broadcaster,
    Transcoder,
}

/// 429 with `Retry-After` while `peer` is locked out after failed authentications.
fn rate_limited(state: &State, peer: IpAddr, now: Instant, who: Who) -> Result<(), Resp> {
    let Some(wait) = state.auth_limiter.lock().check(peer, now) else { return Ok(()) };
    let who = match who {
        Who::Transcoder => {
            metrics::counter!(m::AUTH_FAILURES).increment(1);
            "transcoder"
        }
        Who::Broadcaster => {
            metrics::counter!(m::SEGMENTS_FAILED, "reason" => code::AUTH_RATE_LIMITED).increment(1);
            "broadcaster"
        }
    };
    let message = format!("too many failed {who} authentications from this address");
    Err(reply::error(&NodeError::new(code::AUTH_RATE_LIMITED, message).passing_after(wait.as_secs())))
}

/// A transcoder's id and how it proved it: its client certificate (mutual TLS) when one pinned
/// for the id was presented, else its secret.
pub(super) fn transcoder(state: &State, headers: &HeaderMap, who: &Peer) -> Result<(String, Credential), Resp> {
    let peer = who.ip;
    let name = headers.get(headers::TRANSCODER_ID).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let secrets = state.transcoders.read();
    if !secrets.any() {
        return Err(reply::error(&NodeError::new(code::NO_TRANSCODERS, "this node accepts no remote transcoders")));
    }
    let now = Instant::now();
    rate_limited(state, peer, now, Who::Transcoder)?;
    let credential = match &who.client_cert {
        Some(fp) if secrets.admits_certificate(&name, fp) => Some(Credential::Certificate(fp.to_string())),
        _ => {
            let secret = bearer(headers);
            secrets.admits(&name, secret).then(|| Credential::Secret(secret.to_string()))
        }
    };
    match credential {
        Some(c) => {
            state.auth_limiter.lock().succeeded(peer);
            Ok((name, c))
        }
        None => {
            state.auth_limiter.lock().failed(peer, now);
            let cert = who.client_cert.is_some();
            tracing::warn!(transcoder = %name, %peer, client_cert = cert, "transcoder refused: bad id, secret or certificate");
            metrics::counter!(m::AUTH_FAILURES).increment(1);
            Err(reply::error(&NodeError::new(
                code::BAD_SECRET,
                "unknown transcoder id, wrong secret, or a client certificate not pinned for this id",
            )))
        }
    }
}
