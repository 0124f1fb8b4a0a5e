//! HLS playback: `GET /stream/{stream}.m3u8` (master), `/stream/{stream}/{rendition}.m3u8`
//! (live media playlist) and `/stream/{stream}/{rendition}/{seq}.ts` (a segment), from the
//! node's [`HlsStore`](crate::hls::HlsStore); CORS for players on other origins; bounded
//! concurrent responses so that viewers cannot slow transcoding.

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body::Frame;
use hyper::body::Incoming;

use super::auth;
use super::reply::{self, Resp};
use super::state::State;
use crate::body::ChannelBody;
use crate::fault::{NodeError, code};

/// Playlists of a live stream change with every segment.
const LIVE_PLAYLIST: &str = "public, max-age=1";
/// An ended stream's playlists change no more (until it is pushed again).
const ENDED_PLAYLIST: &str = "public, max-age=30";
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
    if state.config.private_playback {
        match auth::broadcaster(state, req.headers(), peer) {
            Ok(Some(_)) => {}
            Ok(None) => return reply::error(&NodeError::new(code::UNAUTHORIZED, "playback is private")),
            Err(r) => return r,
        }
    }
    let Ok(permit) = state.playback.clone().try_acquire_owned() else {
        return reply::error(&NodeError::new(code::AT_CAPACITY, "too many playback requests at once"));
    };
    let private = state.config.private_playback;
    let hls = state.hls.lock();
    let decoded: Vec<String> = path.iter().map(|p| percent_decode(p)).collect();
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
    let Some((body, content_type, cache)) = found else {
        return reply::error(&NodeError::new(code::NOT_FOUND, "no such stream, rendition or segment (any more)"));
    };
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

fn playlist((text, ended): (String, bool)) -> (Bytes, &'static str, &'static str) {
    (Bytes::from(text), "application/vnd.apple.mpegurl", if ended { ENDED_PLAYLIST } else { LIVE_PLAYLIST })
}

/// `%XX` sequences of a path segment decoded (invalid ones kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(super::percent_decode("a%20b%2"), "a b%2");
        assert_eq!(super::percent_decode("live%2Fx"), "live/x");
    }
}
