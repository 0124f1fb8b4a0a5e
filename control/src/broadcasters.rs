//! Who may push, and how many streams each may hold. Sans-IO: callers pass `now`.
//!
//! A tokens file (`--broadcaster-tokens`) has one broadcaster per line: `name token
//! [max-streams]`, `#` starts a comment. A stream belongs to the broadcaster whose token created
//! it: another token gets 403 for it; a broadcaster already holding its `max-streams` live
//! streams gets 429 for a new one. A stream stops counting when it is ended (`DELETE`) or has
//! been idle for the node's idle timeout, as its sessions do. A single `--token-file` token is
//! one broadcaster, named `default`, with no stream limit.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One broadcaster from the tokens file.
#[derive(Clone, PartialEq, Eq)]
pub struct Broadcaster {
    pub name: String,
    token: String,
    /// Live streams it may hold at once; `None`: no limit.
    pub max_streams: Option<u32>,
}

impl std::fmt::Debug for Broadcaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Broadcaster")
            .field("name", &self.name)
            .field("max_streams", &self.max_streams)
            .finish_non_exhaustive()
    }
}

/// The broadcasters a node admits. Empty: anyone may push (no token asked for).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcasterTokens {
    entries: Vec<Broadcaster>,
}

/// A line of a tokens file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokensError {
    #[error("line {line}: expected `name token [max-streams]`")]
    Malformed { line: usize },
    #[error("line {line}: max-streams must be a whole number, got {value:?}")]
    BadLimit { line: usize, value: String },
    #[error("line {line}: broadcaster {name:?} appears twice")]
    Duplicate { line: usize, name: String },
}

impl BroadcasterTokens {
    /// One token, no stream limit (`--token-file`, `ZEROHOP_TOKEN`).
    pub fn single(token: String) -> BroadcasterTokens {
        BroadcasterTokens { entries: vec![Broadcaster { name: "default".into(), token, max_streams: None }] }
    }

    /// Parses a tokens file; a bad line is an error naming it (a typo must not silently admit
    /// or lock out a broadcaster).
    pub fn parse_file(text: &str) -> Result<BroadcasterTokens, TokensError> {
        let mut entries: Vec<Broadcaster> = Vec::new();
        for (line, fields) in crate::secret::file_lines(text) {
            let (name, token, limit) = match fields[..] {
                [name, token] => (name, token, None),
                [name, token, limit] => (name, token, Some(limit)),
                _ => return Err(TokensError::Malformed { line }),
            };
            let max_streams = limit
                .map(|v| v.parse::<u32>().map_err(|_| TokensError::BadLimit { line, value: v.to_string() }))
                .transpose()?;
            if entries.iter().any(|b| b.name == name) {
                return Err(TokensError::Duplicate { line, name: name.to_string() });
            }
            entries.push(Broadcaster { name: name.to_string(), token: token.to_string(), max_streams });
        }
        Ok(BroadcasterTokens { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The broadcaster whose token `presented` is. Every entry is compared, in constant time
    /// each, so the time taken does not say which one matched.
    pub fn identify(&self, presented: &str) -> Option<&Broadcaster> {
        let mut found = None;
        for b in &self.entries {
            if crate::secret::equal(b.token.as_bytes(), presented.as_bytes()) && found.is_none() {
                found = Some(b);
            }
        }
        found
    }
}

/// Why a broadcaster may not push to a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("stream {stream:?} belongs to another broadcaster")]
    Owned { stream: String },
    #[error("broadcaster {name:?} already has its {max} live streams; end one (DELETE) or wait for it to go idle")]
    Limit { name: String, max: u32 },
}

/// Which broadcaster holds which live stream.
#[derive(Debug)]
pub struct StreamOwners {
    idle: Duration,
    streams: HashMap<String, (String, Instant)>,
}

impl StreamOwners {
    /// Streams idle for `idle` stop counting.
    pub fn new(idle: Duration) -> StreamOwners {
        StreamOwners { idle, streams: HashMap::new() }
    }

    /// `who` pushes a segment of `stream` at `now`: allowed (and the stream's clock restarted),
    /// or why not.
    pub fn claim(&mut self, stream: &str, who: &Broadcaster, now: Instant) -> Result<(), ClaimError> {
        let idle = self.idle;
        if let Some((owner, last)) = self.streams.get_mut(stream)
            && now.saturating_duration_since(*last) < idle
        {
            if *owner != who.name {
                return Err(ClaimError::Owned { stream: stream.to_string() });
            }
            *last = now;
            return Ok(());
        }
        if let Some(max) = who.max_streams {
            let held = self
                .streams
                .iter()
                .filter(|(s, (o, last))| {
                    s.as_str() != stream && *o == who.name && now.saturating_duration_since(*last) < idle
                })
                .count();
            if held >= max as usize {
                return Err(ClaimError::Limit { name: who.name.clone(), max });
            }
        }
        self.streams.insert(stream.to_string(), (who.name.clone(), now));
        Ok(())
    }

    /// `who` ends `stream`. Another broadcaster's stream is refused.
    pub fn release(&mut self, stream: &str, who: &Broadcaster) -> Result<(), ClaimError> {
        match self.streams.get(stream) {
            Some((owner, _)) if *owner != who.name => Err(ClaimError::Owned { stream: stream.to_string() }),
            _ => {
                self.streams.remove(stream);
                Ok(())
            }
        }
    }

    /// Forgets idle streams (housekeeping; keeps the table bounded by the live streams).
    pub fn expire(&mut self, now: Instant) {
        let idle = self.idle;
        self.streams.retain(|_, (_, last)| now.saturating_duration_since(*last) < idle);
    }

    /// Live streams per broadcaster name.
    pub fn held(&self, name: &str) -> usize {
        self.streams.values().filter(|(o, _)| o == name).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_names_broadcasters_limits_and_bad_lines() {
        let t = BroadcasterTokens::parse_file("# who may push\nstudio s3cret 2\nlab   t0ken   # no limit\n\n")
            .expect("parse");
        assert_eq!(t.len(), 2);
        let studio = t.identify("s3cret").expect("studio");
        assert_eq!((studio.name.as_str(), studio.max_streams), ("studio", Some(2)));
        assert_eq!(t.identify("t0ken").map(|b| b.max_streams), Some(None));
        assert!(t.identify("s3cre").is_none() && t.identify("").is_none());
        assert!(!format!("{studio:?}").contains("s3cret"), "Debug never shows the token");
        assert_eq!(BroadcasterTokens::parse_file("onlyaname\n"), Err(TokensError::Malformed { line: 1 }));
        assert_eq!(
            BroadcasterTokens::parse_file("a x\nb y two\n"),
            Err(TokensError::BadLimit { line: 2, value: "two".into() })
        );
        assert_eq!(
            BroadcasterTokens::parse_file("a x\na y\n"),
            Err(TokensError::Duplicate { line: 2, name: "a".into() })
        );
        assert!(BroadcasterTokens::parse_file("a b c d\n").is_err());
    }

    #[test]
    fn streams_belong_to_their_creator_and_count_against_its_limit_until_ended_or_idle() {
        let t = BroadcasterTokens::parse_file("studio s 2\nlab l\n").expect("parse");
        let (studio, lab) = (t.identify("s").expect("s").clone(), t.identify("l").expect("l").clone());
        let t0 = Instant::now();
        let idle = Duration::from_secs(60);
        let mut o = StreamOwners::new(idle);
        o.claim("a", &studio, t0).expect("first");
        o.claim("b", &studio, t0).expect("second");
        o.claim("a", &studio, t0).expect("more segments of a held stream are fine");
        assert_eq!(o.claim("c", &studio, t0), Err(ClaimError::Limit { name: "studio".into(), max: 2 }));
        assert_eq!(o.claim("a", &lab, t0), Err(ClaimError::Owned { stream: "a".into() }));
        assert_eq!(o.release("a", &lab), Err(ClaimError::Owned { stream: "a".into() }));
        for i in 0..50 {
            o.claim(&format!("lab{i}"), &lab, t0).expect("no limit");
        }
        // Ending one frees a place.
        o.release("a", &studio).expect("release");
        o.claim("c", &studio, t0).expect("freed");
        // An idle stream stops counting, and may be taken by anyone.
        let later = t0 + idle;
        o.claim("d", &studio, later).expect("b and c went idle");
        o.claim("b", &lab, later).expect("an idle stream is free");
        o.expire(later);
        assert_eq!((o.held("studio"), o.held("lab")), (1, 1));
    }
}
