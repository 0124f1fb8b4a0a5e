//! Sans-IO: a zerohop orchestrator's Livepeer gateway sessions. `GetOrchestrator` hands out an
//! auth token naming a session; each `POST /segment` must carry a live one; the renditions of
//! a session's segments are kept for the gateway to fetch by URL (the last few per rendition,
//! as go-livepeer keeps the last 12 files of a folder), and a session idle too long or ended by
//! `EndTranscodingSession` is forgotten with its renditions.
#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::messages::AuthToken;

/// How long a token is valid (go-livepeer `authTokenValidPeriod`: 30 minutes).
pub const TOKEN_VALID: Duration = Duration::from_secs(30 * 60);
/// A session with no segment for this long is dropped (go-livepeer: 70 s after its last).
pub const SESSION_IDLE: Duration = Duration::from_secs(70);
/// Segments kept per rendition of a session.
pub const KEEP_PER_RENDITION: usize = 12;
/// Sessions at most (a gateway asking again and again cannot grow the table for ever).
pub const MAX_SESSIONS: usize = 4096;

#[derive(Debug)]
struct Session {
    token: Vec<u8>,
    expires: Instant,
    last_used: Instant,
    /// (rendition name, seq) -> bytes, oldest first per rendition.
    renditions: HashMap<String, VecDeque<(i64, Bytes)>>,
}

/// Why a segment's token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// go-livepeer's texts.
    #[error("missing auth token")]
    Missing,
    #[error("invalid auth token")]
    UnknownSession(String),
    #[error("invalid auth token")]
    Mismatch,
    #[error("expired auth token")]
    Expired,
}

#[derive(Debug, Default)]
pub struct GatewaySessions {
    sessions: HashMap<String, Session>,
}

impl GatewaySessions {
    /// A new session with `token` (random bytes) and `id` (random, unique), valid from `now`;
    /// the token to send. Drops idle sessions first, then the least recently used past the cap.
    pub fn issue(&mut self, id: String, token: Vec<u8>, now: Instant, unix_now: i64) -> AuthToken {
        self.expire(now);
        if self.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = self.sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| k.clone())
        {
            self.sessions.remove(&oldest);
        }
        self.sessions.insert(
            id.clone(),
            Session { token: token.clone(), expires: now + TOKEN_VALID, last_used: now, renditions: HashMap::new() },
        );
        AuthToken { token, session_id: id, expiration: unix_now + TOKEN_VALID.as_secs() as i64 }
    }

    /// Checks a segment's token; the session it names is then in use.
    pub fn check(&mut self, token: Option<&AuthToken>, now: Instant) -> Result<String, TokenError> {
        self.expire(now);
        let t = token.ok_or(TokenError::Missing)?;
        let s = self.sessions.get_mut(&t.session_id).ok_or_else(|| TokenError::UnknownSession(t.session_id.clone()))?;
        // Constant time: the token is the session's only credential.
        if !crate::secret::equal(&s.token, &t.token) {
            return Err(TokenError::Mismatch);
        }
        if now >= s.expires {
            return Err(TokenError::Expired);
        }
        s.last_used = now;
        Ok(t.session_id.clone())
    }

    /// Keeps one rendition of segment `seq` for `session`.
    pub fn keep(&mut self, session: &str, rendition: &str, seq: i64, data: Bytes) {
        if let Some(s) = self.sessions.get_mut(session) {
            let q = s.renditions.entry(rendition.to_string()).or_default();
            q.retain(|(n, _)| *n != seq);
            q.push_back((seq, data));
            while q.len() > KEEP_PER_RENDITION {
                q.pop_front();
            }
        }
    }

    /// A kept rendition.
    pub fn get(&self, session: &str, rendition: &str, seq: i64) -> Option<Bytes> {
        let q = self.sessions.get(session)?.renditions.get(rendition)?;
        q.iter().find(|(n, _)| *n == seq).map(|(_, b)| b.clone())
    }

    /// `EndTranscodingSession`: the session and its renditions go. Whether it existed.
    pub fn end(&mut self, session: &str) -> bool {
        self.sessions.remove(session).is_some()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        self.sessions.retain(|_, s| now.duration_since(s.last_used) < SESSION_IDLE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_good_for_its_session_until_it_expires_or_idles_out() {
        let t0 = Instant::now();
        let mut g = GatewaySessions::default();
        let tok = g.issue("s1".into(), vec![1, 2, 3], t0, 1000);
        assert_eq!(tok.expiration, 1000 + 1800);
        assert_eq!(g.check(Some(&tok), t0 + Duration::from_secs(10)), Ok("s1".into()));
        let forged = AuthToken { token: vec![9], ..tok.clone() };
        assert_eq!(g.check(Some(&forged), t0), Err(TokenError::Mismatch));
        assert_eq!(g.check(None, t0), Err(TokenError::Missing));
        // Used every minute: alive until the token expires.
        let mut t = t0;
        while t < t0 + TOKEN_VALID - Duration::from_secs(60) {
            t += Duration::from_secs(60);
            assert!(g.check(Some(&tok), t).is_ok());
        }
        assert_eq!(g.check(Some(&tok), t0 + TOKEN_VALID), Err(TokenError::Expired));
        // Idle past 70 s: gone.
        let tok2 = g.issue("s2".into(), vec![4], t0, 0);
        assert_eq!(g.check(Some(&tok2), t0 + SESSION_IDLE), Err(TokenError::UnknownSession("s2".into())));
    }

    #[test]
    fn renditions_are_kept_per_rendition_up_to_the_limit_and_go_with_their_session() {
        let t0 = Instant::now();
        let mut g = GatewaySessions::default();
        g.issue("s".into(), vec![1], t0, 0);
        for seq in 0..20 {
            g.keep("s", "P240p30fps16x9", seq, Bytes::from(vec![seq as u8]));
        }
        g.keep("s", "P240p30fps16x9", 19, Bytes::from_static(b"again"));
        assert_eq!(g.get("s", "P240p30fps16x9", 19).as_deref(), Some(&b"again"[..]));
        assert!(g.get("s", "P240p30fps16x9", 7).is_none(), "older than the last 12");
        assert_eq!(g.get("s", "P240p30fps16x9", 8).as_deref(), Some(&[8u8][..]));
        g.keep("unknown", "x", 0, Bytes::new());
        assert!(g.get("unknown", "x", 0).is_none());
        assert!(g.end("s"));
        assert!(g.get("s", "P240p30fps16x9", 19).is_none());
        assert!(!g.end("s"));
    }

    #[test]
    fn the_table_is_capped() {
        let t0 = Instant::now();
        let mut g = GatewaySessions::default();
        for i in 0..MAX_SESSIONS + 5 {
            g.issue(format!("s{i}"), vec![1], t0 + Duration::from_millis(i as u64), 0);
        }
        assert_eq!(g.len(), MAX_SESSIONS);
    }
}
