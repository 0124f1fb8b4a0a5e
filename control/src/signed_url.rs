//! Signed playback URLs, for players that cannot send `Authorization` (Safari's and Android's
//! native HLS, ffplay, VLC, a `<video src>`): `?exp=UNIX_SECONDS&sig=HEX` on any
//! `/stream/{stream}...` URL. `sig` is HMAC-SHA256 under the node's playback key of
//! `zerohop-playback-v1\n{stream}\n{exp}`, so one signature admits every playlist and segment of
//! that one stream until `exp`. The playlists a signed request gets carry the same query on
//! every URI in them, since a player resolving a relative URI drops the query. Sans-IO: the
//! caller gives the time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What the signature covers, before the stream name and the expiry.
const CONTEXT: &str = "zerohop-playback-v1";
/// The shortest key taken: HMAC-SHA256's own output length.
pub const MIN_KEY_BYTES: usize = 32;

/// The node's secret for signing playback URLs.
#[derive(Clone)]
pub struct PlaybackKey(Vec<u8>);

impl std::fmt::Debug for PlaybackKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlaybackKey(..)")
    }
}

/// Why a playback key file cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the playback key is {0} bytes; it needs at least {MIN_KEY_BYTES} random bytes \
     (write one with: head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > FILE)"
)]
pub struct ShortKey(usize);

impl PlaybackKey {
    /// The key from a key file's contents: its bytes, less one line end (`\n` or `\r\n`) at the
    /// end. Raw random bytes are taken as they are; so is a hex line from `od` or `openssl rand
    /// -hex 32`, as the text it is.
    pub fn from_file_contents(contents: &[u8]) -> Result<PlaybackKey, ShortKey> {
        let key = contents.strip_suffix(b"\n").map_or(contents, |k| k.strip_suffix(b"\r").unwrap_or(k));
        if key.len() < MIN_KEY_BYTES {
            return Err(ShortKey(key.len()));
        }
        Ok(PlaybackKey(key.to_vec()))
    }

    fn mac(&self, stream: &str, exp: u64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(format!("{CONTEXT}\n{stream}\n{exp}").as_bytes());
        mac
    }

    /// The query (`exp=..&sig=..`) that admits `stream`'s playback until `exp` (Unix seconds).
    pub fn query(&self, stream: &str, exp: u64) -> String {
        query_text(exp, &self.mac(stream, exp).finalize().into_bytes())
    }

    /// Whether `query` (the URL's query, without `?`) admits `stream`'s playback at `now` (Unix
    /// seconds). Only `exp` and `sig` are read; the comparison takes the same time however much
    /// of a wrong signature matches.
    pub fn verify(&self, stream: &str, query: Option<&str>, now: u64) -> Result<Signed, Refusal> {
        let (mut exp, mut sig) = (None, None);
        for pair in query.unwrap_or_default().split('&') {
            match pair.split_once('=') {
                Some(("exp", v)) => exp = Some(v),
                Some(("sig", v)) => sig = Some(v),
                _ => {}
            }
        }
        let (exp, sig) = match (exp, sig) {
            (None, None) => return Err(Refusal::Unsigned),
            (Some(e), Some(s)) => (e, s),
            _ => return Err(Refusal::Malformed),
        };
        let exp: u64 = exp.parse().map_err(|_| Refusal::Malformed)?;
        let sig = hex::decode(sig).map_err(|_| Refusal::Malformed)?;
        self.mac(stream, exp).verify_slice(&sig).map_err(|_| Refusal::BadSignature)?;
        if now >= exp {
            return Err(Refusal::Expired);
        }
        // The signature just checked, not made again.
        Ok(Signed { query: query_text(exp, &sig) })
    }
}

/// `exp=..&sig=..` (lower-case hex).
fn query_text(exp: u64, sig: &[u8]) -> String {
    format!("exp={exp}&sig={}", hex::encode(sig))
}

/// The stream a playback path names, from its segments after `/stream/` (percent-decoded): the
/// master `{stream}.m3u8`, or `{stream}/...`. Signatures are made and checked for this name.
pub fn stream_of_path(segments: &[String]) -> Option<&str> {
    let stream = match segments {
        [master] => master.strip_suffix(".m3u8")?,
        [stream, _, ..] => stream.as_str(),
        [] => return None,
    };
    (!stream.is_empty()).then_some(stream)
}

/// The stream a node's playback URL (`http(s)://HOST/stream/...`) names, as the node reads it.
pub fn stream_of_url(url: &str) -> Option<String> {
    let url = url.split(['?', '#']).next()?;
    let path = match url.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/')?..],
        None => url,
    };
    let segments: Vec<String> = path.strip_prefix("/stream/")?.split('/').map(percent_decode).collect();
    stream_of_path(&segments).map(str::to_string)
}

/// `%XX` sequences of a path segment decoded (invalid ones kept as they are).
pub fn percent_decode(s: &str) -> String {
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

/// Why a URL's signature does not admit a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the URL is not signed")]
    Unsigned,
    #[error("the URL's exp or sig is malformed (exp: Unix seconds, sig: hex)")]
    Malformed,
    #[error("the URL's signature is not the node's for this stream")]
    BadSignature,
    #[error("the signed URL has expired")]
    Expired,
}

/// A request admitted by its signature: the query its playlists' URIs carry on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    query: String,
}

impl Signed {
    /// `playlist` with the signature appended to every URI in it: URI lines and `URI="..."`
    /// attributes.
    pub fn propagate(&self, playlist: &str) -> String {
        let mut out = String::with_capacity(playlist.len() + 64 * playlist.lines().count());
        for line in playlist.lines() {
            if line.is_empty() {
            } else if !line.starts_with('#') {
                out.push_str(&self.with_query(line));
            } else if let Some(at) = line.find(":URI=\"").or_else(|| line.find(",URI=\""))
                && let Some(len) = line[at + 6..].find('"')
            {
                let (head, rest) = line.split_at(at + 6);
                let (uri, tail) = rest.split_at(len);
                out.push_str(head);
                out.push_str(&self.with_query(uri));
                out.push_str(tail);
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        out
    }

    fn with_query(&self, uri: &str) -> String {
        let sep = if uri.contains('?') { '&' } else { '?' };
        format!("{uri}{sep}{}", self.query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PlaybackKey {
        PlaybackKey::from_file_contents(b"0123456789abcdef0123456789abcdef\n").expect("32 bytes")
    }

    #[test]
    fn a_signed_query_admits_its_stream_until_it_expires() {
        let k = key();
        let q = k.query("cam1", 1_000);
        assert!(q.starts_with("exp=1000&sig=") && q.len() == 13 + 64, "{q}");
        assert!(k.verify("cam1", Some(&q), 999).is_ok());
        assert_eq!(k.verify("cam1", Some(&q), 1_000), Err(Refusal::Expired));
        // Another stream, a later expiry, another key: refused.
        assert_eq!(k.verify("cam2", Some(&q), 10), Err(Refusal::BadSignature));
        let later = q.replace("exp=1000", "exp=9000");
        assert_eq!(k.verify("cam1", Some(&later), 10), Err(Refusal::BadSignature));
        let other = PlaybackKey::from_file_contents(&[7u8; 40]).expect("40 bytes");
        assert_eq!(other.verify("cam1", Some(&q), 10), Err(Refusal::BadSignature));
        // Other query parameters are ignored, in any order.
        let (e, s) = q.split_once('&').expect("two");
        assert!(k.verify("cam1", Some(&format!("x=1&{s}&{e}")), 10).is_ok());
    }

    #[test]
    fn a_missing_or_malformed_signature_is_refused_as_such() {
        let k = key();
        assert_eq!(k.verify("s", None, 0), Err(Refusal::Unsigned));
        assert_eq!(k.verify("s", Some("a=b"), 0), Err(Refusal::Unsigned));
        for q in ["exp=5", "sig=00", "exp=x&sig=00", "exp=5&sig=zz", "exp=-1&sig=00"] {
            assert_eq!(k.verify("s", Some(q), 0), Err(Refusal::Malformed), "{q}");
        }
        assert_eq!(k.verify("s", Some("exp=5&sig=00"), 0), Err(Refusal::BadSignature));
    }

    #[test]
    fn the_stream_is_read_from_any_playback_url_of_it() {
        for url in [
            "https://h:8935/stream/cam%201.m3u8",
            "http://h/stream/cam%201/720p.m3u8?x=1",
            "http://h/stream/cam%201/720p/7.ts",
        ] {
            assert_eq!(stream_of_url(url).as_deref(), Some("cam 1"), "{url}");
        }
        // A stream literally named `x.m3u8` is not `x`; a host named `stream` is no path.
        assert_eq!(stream_of_url("http://h/stream/x.m3u8/720p.m3u8").as_deref(), Some("x.m3u8"));
        assert_eq!(stream_of_url("http://stream/stream/cam1.m3u8#t=1").as_deref(), Some("cam1"));
        assert_eq!(stream_of_url("http://h/stream/x%2Em3u8").as_deref(), Some("x"), "decoded, then read");
        assert_eq!(percent_decode("a%20b%2"), "a b%2", "an invalid escape is kept");
        assert_eq!(percent_decode("live%2Fx"), "live/x");
        for url in [
            "http://h/stream/",
            "http://h/stream/cam1",
            "http://h/v1/streams/cam1",
            "cam1.m3u8",
            "http://stream/cam1.m3u8",
            "http://h/live/stream/cam1.m3u8",
        ] {
            assert_eq!(stream_of_url(url), None, "{url}");
        }
    }

    #[test]
    fn a_short_key_is_refused_saying_how_to_make_one() {
        let e = PlaybackKey::from_file_contents(b"  short secret \r\n").expect_err("15 bytes");
        assert_eq!(e, ShortKey(15));
        // Raw random bytes may begin or end with white space: all of them are the key.
        let raw = [b' '; 32];
        assert!(PlaybackKey::from_file_contents(&raw).is_ok());
        assert!(e.to_string().contains("/dev/urandom"), "{e}");
        assert!(!format!("{:?}", key()).contains("0123"), "the key stays out of logs");
    }

    #[test]
    fn every_uri_of_a_playlist_carries_the_signature_on() {
        let signed = key().verify("cam1", Some(&key().query("cam1", 50)), 0).expect("valid");
        let q = key().query("cam1", 50);
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\ncam1/720p.m3u8\n\
                      #EXT-X-MEDIA:TYPE=AUDIO,URI=\"cam1/a.m3u8\",NAME=\"a\"\n#EXT-X-ENDLIST\n";
        let got = signed.propagate(master);
        assert_eq!(
            got,
            format!(
                "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\ncam1/720p.m3u8?{q}\n\
                 #EXT-X-MEDIA:TYPE=AUDIO,URI=\"cam1/a.m3u8?{q}\",NAME=\"a\"\n#EXT-X-ENDLIST\n"
            )
        );
        assert_eq!(signed.propagate("x.ts?v=1\n"), format!("x.ts?v=1&{q}\n"));
        assert_eq!(signed.propagate("#EXT-X-MAP:URI=\"i.mp4\"\n"), format!("#EXT-X-MAP:URI=\"i.mp4?{q}\"\n"));
    }
}
