//! HLS playback: `GET /stream/{stream}.m3u8` (master), `/stream/{stream}/{rendition}.m3u8`
//! (live media playlist) and `/stream/{stream}/{rendition}/{seq}.ts` (a segment), from the
//! node's [`HlsStore`](crate::hls::HlsStore); CORS for players on other origins; bounded
//! concurrent responses so that viewers cannot slow transcoding.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body::Frame;
use hyper::body::Incoming;

use super::auth;
use super::reply::{self, Resp};
use super::state::State;
use crate::body::ChannelBody;
use crate::fault::{NodeError, code};
use crate::signed_url::{Refusal, Signed, percent_decode, stream_of_path};

/// Playlists of a live stream change with every segment.
const LIVE_PLAYLIST: &str = "public, max-age=1";
/// An ended stream's playlists change no more (until it is pushed again).
const ENDED_PLAYLIST: &str = "public, max-age=30";
/// HLS playlists' media type.
const PLAYLIST: &str = "application/vnd.apple.mpegurl";
/// A segment's bytes never change.
const SEGMENT: &str = "public, max-age=86400, immutable";

/// `OPTIONS` under `/stream/`: the CORS preflight of a player on another origin.
pub(super) fn preflight() -> Resp {
    let mut r = reply::empty();
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert("access-control-allow-methods", HeaderValue::from_static("GET, HEAD, OPTIONS"));
    h.insert("access-control-allow-headers", HeaderValue::from_static("Authorization, Range"));
    h.insert("access-control-max-age", HeaderValue::from_static("600"));
    r
}

/// `GET /stream/...`; `path` is what follows `stream`.
pub(super) fn get(state: &State, req: &Request<Incoming>, peer: IpAddr, path: &[&str]) -> Resp {
    let mut r = serve(state, req, peer, path);
    r.headers_mut().insert("access-control-allow-origin", HeaderValue::from_static("*"));
    r
}

fn serve(state: &State, req: &Request<Incoming>, peer: IpAddr, path: &[&str]) -> Resp {
    let decoded: Vec<String> = path.iter().map(|p| percent_decode(p)).collect();
    // A request admitted by a signed URL: its playlists pass the signature on to their URIs.
    let mut signed = None;
    if state.config.private_playback {
        match admit(state, req, peer, &decoded) {
            Ok(s) => signed = s,
            Err(r) => return r,
        }
    }
    let Ok(permit) = state.playback.clone().try_acquire_owned() else {
        return reply::error(&NodeError::new(code::AT_CAPACITY, "too many playback requests at once"));
    };
    let private = state.config.private_playback;
    let hls = state.hls.lock();
    let found = match &decoded.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [master] => master.strip_suffix(".m3u8").and_then(|s| Some((hls.master(s)?, hls.ended(s)))).map(playlist),
        [stream, media] => {
            media.strip_suffix(".m3u8").and_then(|r| Some((hls.media(stream, r)?, hls.ended(stream)))).map(playlist)
        }
        [stream, rendition, seg] => seg
            .strip_suffix(".ts")
            .and_then(|s| s.parse::<u64>().ok())
            .and_then(|seq| hls.segment(stream, rendition, seq))
            .map(|b| (b, "video/mp2t", SEGMENT)),
        _ => None,
    };
    drop(hls);
    let Some((mut body, content_type, cache)) = found else {
        return reply::error(&NodeError::new(code::NOT_FOUND, "no such stream, rendition or segment (any more)"));
    };
    if let Some(signed) = &signed
        && content_type == PLAYLIST
    {
        body = Bytes::from(signed.propagate(&String::from_utf8_lossy(&body)));
    }
    // The permit is held until the body is handed over, in pieces as the viewer reads.
    let (tx, chan) = ChannelBody::channel(1);
    tokio::spawn(async move {
        let _permit = permit;
        let mut rest = body;
        while !rest.is_empty() {
            let piece = rest.split_to(rest.len().min(64 * 1024));
            if tx.send(Ok(Frame::data(piece))).await.is_err() {
                return;
            }
        }
    });
    let mut r = reply::streamed(chan, content_type);
    let cache = if private { "private, max-age=1" } else { cache };
    r.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

/// Private playback: a broadcaster token, or a URL signed for the stream. `Ok(Some)` for a
/// signed URL.
fn admit(state: &State, req: &Request<Incoming>, peer: IpAddr, path: &[String]) -> Result<Option<Signed>, Resp> {
    let refused = |why: &str| reply::error(&NodeError::new(code::UNAUTHORIZED, format!("playback is private: {why}")));
    if let Some(key) = &state.config.playback_key {
        let stream = stream_of_path(path).unwrap_or_default();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let has_token = req.headers().contains_key(http::header::AUTHORIZATION);
        match key.verify(stream, req.uri().query(), now) {
            Ok(signed) => return Ok(Some(signed)),
            Err(Refusal::Unsigned) if !has_token => {
                return Err(refused(
                    "give a broadcaster token (Authorization: Bearer) or a signed URL (zerohop sign-url)",
                ));
            }
            Err(why) if !has_token => return Err(refused(&why.to_string())),
            Err(_) => {} // the token decides
        }
    }
    match auth::broadcaster(state, req.headers(), peer) {
        Ok(Some(_)) => Ok(None),
        Ok(None) => Err(refused("give a broadcaster token (Authorization: Bearer)")),
        Err(r) => Err(r),
    }
}

fn playlist((text, ended): (String, bool)) -> (Bytes, &'static str, &'static str) {
    (Bytes::from(text), PLAYLIST, if ended { ENDED_PLAYLIST } else { LIVE_PLAYLIST })
}
