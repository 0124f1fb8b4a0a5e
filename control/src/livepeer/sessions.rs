//! Sans-IO: a zerohop orchestrator's Livepeer gateway sessions. `GetOrchestrator` hands out an
//! auth token naming a new session; each `POST /segment` must carry a valid one. As go-livepeer's,
//! a token is stateless: an HMAC of its session id and expiry under a key of this process, good
//! until it expires (30 minutes) however long the gateway pauses, and handing tokens out stores
//! nothing. What is stored is each session's renditions for the gateway to fetch by URL (the last
//! few per rendition, as go-livepeer keeps the last 12 files of a folder), made by its first
//! segment and dropped after 70 s without one or by `EndTranscodingSession`.
#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::messages::AuthToken;

/// How long a token is valid (go-livepeer `authTokenValidPeriod`: 30 minutes).
pub const TOKEN_VALID: Duration = Duration::from_secs(30 * 60);
/// A session's renditions are dropped this long after its last segment (go-livepeer: 70 s).
pub const SESSION_IDLE: Duration = Duration::from_secs(70);
/// Segments kept per rendition of a session.
pub const KEEP_PER_RENDITION: usize = 12;
/// Sessions with renditions kept, at most (the least recently used go first).
pub const MAX_SESSIONS: usize = 4096;

#[derive(Debug)]
struct Store {
    last_used: Instant,
    /// rendition name -> (seq, bytes), oldest first.
    renditions: HashMap<String, VecDeque<(i64, Bytes)>>,
}

/// Why a segment's token is refused (go-livepeer's texts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing auth token")]
    Missing,
    #[error("invalid auth token")]
    Invalid,
    #[error("expired auth token")]
    Expired,
}

#[derive(Debug)]
pub struct GatewaySessions {
    key: [u8; 32],
    stores: HashMap<String, Store>,
}

impl GatewaySessions {
    /// Tokens signed with `key` (random bytes, one per process).
    pub fn new(key: [u8; 32]) -> GatewaySessions {
        GatewaySessions { key, stores: HashMap::new() }
    }

    fn mac(&self, session: &str, expiration: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(session.as_bytes());
        mac.update(&[0]);
        mac.update(&expiration.to_be_bytes());
        mac
    }

    /// A token for session `id` (random, unique), valid from `unix_now` (seconds).
    pub fn issue(&self, id: String, unix_now: i64) -> AuthToken {
        let expiration = unix_now + TOKEN_VALID.as_secs() as i64;
        let token = self.mac(&id, expiration).finalize().into_bytes().to_vec();
        AuthToken { token, session_id: id, expiration }
    }

    /// The session a segment's token names, when the token is this process's and unexpired.
    pub fn check(&self, token: Option<&AuthToken>, unix_now: i64) -> Result<String, TokenError> {
        let t = token.ok_or(TokenError::Missing)?;
        // verify_slice compares in constant time.
        self.mac(&t.session_id, t.expiration).verify_slice(&t.token).map_err(|_| TokenError::Invalid)?;
        if unix_now >= t.expiration {
            return Err(TokenError::Expired);
        }
        Ok(t.session_id.clone())
    }

    /// Keeps one rendition of segment `seq` for `session` (a checked one).
    pub fn keep(&mut self, session: &str, rendition: &str, seq: i64, data: Bytes, now: Instant) {
        self.expire(now);
        if !self.stores.contains_key(session)
            && self.stores.len() >= MAX_SESSIONS
            && let Some(oldest) = self.stores.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| k.clone())
        {
            self.stores.remove(&oldest);
        }
        let store = self
            .stores
            .entry(session.to_string())
            .or_insert_with(|| Store { last_used: now, renditions: HashMap::new() });
        store.last_used = now;
        let q = store.renditions.entry(rendition.to_string()).or_default();
        q.retain(|(n, _)| *n != seq);
        q.push_back((seq, data));
        while q.len() > KEEP_PER_RENDITION {
            q.pop_front();
        }
    }

    /// A kept rendition.
    pub fn get(&self, session: &str, rendition: &str, seq: i64) -> Option<Bytes> {
        let q = self.stores.get(session)?.renditions.get(rendition)?;
        q.iter().find(|(n, _)| *n == seq).map(|(_, b)| b.clone())
    }

    /// `EndTranscodingSession`: the session's renditions go. Whether it had any.
    pub fn end(&mut self, session: &str) -> bool {
        self.stores.remove(session).is_some()
    }

    /// Sessions with renditions kept.
    pub fn len(&self) -> usize {
        self.stores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        self.stores.retain(|_, s| now.duration_since(s.last_used) < SESSION_IDLE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_good_for_its_session_until_it_expires_however_long_it_idles() {
        let g = GatewaySessions::new([7; 32]);
        let tok = g.issue("s1".into(), 1000);
        assert_eq!(tok.expiration, 1000 + 1800);
        assert_eq!(g.check(Some(&tok), 1010), Ok("s1".into()));
        assert_eq!(g.check(Some(&tok), 1000 + 1799), Ok("s1".into()), "idle 30 minutes less a second");
        assert_eq!(g.check(Some(&tok), 1000 + 1800), Err(TokenError::Expired));
        assert_eq!(g.check(None, 1000), Err(TokenError::Missing));
        for forged in [
            AuthToken { token: vec![9], ..tok.clone() },
            AuthToken { session_id: "s2".into(), ..tok.clone() },
            AuthToken { expiration: tok.expiration + 3600, ..tok.clone() },
        ] {
            assert_eq!(g.check(Some(&forged), 1000), Err(TokenError::Invalid), "{forged:?}");
        }
        // Another process's key (a restarted orchestrator) does not take it.
        assert_eq!(GatewaySessions::new([8; 32]).check(Some(&tok), 1000), Err(TokenError::Invalid));
        assert!(g.is_empty(), "handing out and checking tokens stores nothing");
    }

    #[test]
    fn renditions_are_kept_per_rendition_up_to_the_limit_and_idle_out() {
        let t0 = Instant::now();
        let mut g = GatewaySessions::new([1; 32]);
        for seq in 0..20 {
            g.keep("s", "P240p30fps16x9", seq, Bytes::from(vec![seq as u8]), t0);
        }
        g.keep("s", "P240p30fps16x9", 19, Bytes::from_static(b"again"), t0);
        assert_eq!(g.get("s", "P240p30fps16x9", 19).as_deref(), Some(&b"again"[..]));
        assert!(g.get("s", "P240p30fps16x9", 7).is_none(), "older than the last 12");
        assert_eq!(g.get("s", "P240p30fps16x9", 8).as_deref(), Some(&[8u8][..]));
        assert!(g.end("s"));
        assert!(g.get("s", "P240p30fps16x9", 19).is_none());
        assert!(!g.end("s"));
        g.keep("a", "r", 0, Bytes::new(), t0);
        g.keep("b", "r", 0, Bytes::new(), t0 + SESSION_IDLE);
        assert!(g.get("a", "r", 0).is_none(), "70 s without a segment");
        assert!(g.get("b", "r", 0).is_some());
    }

    #[test]
    fn the_stores_are_capped() {
        let t0 = Instant::now();
        let mut g = GatewaySessions::new([1; 32]);
        for i in 0..MAX_SESSIONS + 5 {
            g.keep(&format!("s{i}"), "r", 0, Bytes::new(), t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(g.len(), MAX_SESSIONS);
        assert!(g.get("s0", "r", 0).is_none() && g.get(&format!("s{MAX_SESSIONS}"), "r", 0).is_some());
    }
}
