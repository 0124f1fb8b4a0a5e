//! Secrets: compared in constant time, read from files or the environment, never from argv.

use subtle::ConstantTimeEq;

/// Constant-time equality (lengths may leak; contents do not).
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// 128 random bits from the OS as 32 hex digits (session ids, URL tokens); `what` names it in
/// the error logged if the OS gives none (then the bits are zero, and guessable).
pub fn random_hex(what: &str) -> String {
    let mut b = [0u8; 16];
    if let Err(e) = getrandom::fill(&mut b) {
        tracing::error!(error = %e, "no random bytes for {what}");
    }
    hex::encode(b)
}

/// Reads a secret from a file (first line, trimmed) or, when `file` is `None`, from `env_var`.
pub fn load(file: Option<&std::path::Path>, env_var: &str) -> std::io::Result<Option<String>> {
    let raw = match file {
        Some(f) => Some(std::fs::read_to_string(f)?),
        None => std::env::var(env_var).ok(),
    };
    Ok(raw.map(|s| s.lines().next().unwrap_or("").trim().to_string()).filter(|s| !s.is_empty()))
}

/// The lines of a credentials file that say something, as (line number from 1, fields split at
/// whitespace): blank lines and `#` comments are left out.
pub fn file_lines(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines().enumerate().filter_map(|(i, raw)| {
        let fields: Vec<&str> = raw.split('#').next().unwrap_or("").split_whitespace().collect();
        (!fields.is_empty()).then_some((i + 1, fields))
    })
}

/// Failed-authentication rate limiting per peer address, sans-IO (callers pass `now`): after
/// `max_failures` failures inside `window`, the peer is refused without a secret check until the
/// window since its first counted failure has passed. Bounded: at most `max_peers` tracked; the
/// oldest entries are dropped first.
#[derive(Debug)]
pub struct AuthLimiter {
    max_failures: u32,
    window: std::time::Duration,
    max_peers: usize,
    peers: std::collections::HashMap<std::net::IpAddr, (std::time::Instant, u32)>,
}

impl AuthLimiter {
    pub fn new(max_failures: u32, window: std::time::Duration) -> AuthLimiter {
        AuthLimiter { max_failures, window, max_peers: 4096, peers: std::collections::HashMap::new() }
    }

    /// `Some(wait)` when `peer` must be refused now.
    pub fn check(&mut self, peer: std::net::IpAddr, now: std::time::Instant) -> Option<std::time::Duration> {
        let &(since, n) = self.peers.get(&peer)?;
        let elapsed = now.saturating_duration_since(since);
        if elapsed >= self.window {
            self.peers.remove(&peer);
            return None;
        }
        (n >= self.max_failures).then(|| self.window - elapsed)
    }

    pub fn failed(&mut self, peer: std::net::IpAddr, now: std::time::Instant) {
        if self.peers.len() >= self.max_peers && !self.peers.contains_key(&peer) {
            self.peers.retain(|_, (since, _)| now.saturating_duration_since(*since) < self.window);
            if self.peers.len() >= self.max_peers
                && let Some(oldest) = self.peers.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| *k)
            {
                self.peers.remove(&oldest);
            }
        }
        let e = self.peers.entry(peer).or_insert((now, 0));
        if now.saturating_duration_since(e.0) >= self.window {
            *e = (now, 0);
        }
        e.1 += 1;
    }

    /// A success clears the peer's record.
    pub fn succeeded(&mut self, peer: std::net::IpAddr) {
        self.peers.remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::AuthLimiter;

    #[test]
    fn failures_lock_a_peer_out_for_the_rest_of_the_window_only() {
        let t0 = Instant::now();
        let (a, b) = ("10.0.0.1".parse().expect("ip"), "10.0.0.2".parse().expect("ip"));
        let mut l = AuthLimiter::new(3, Duration::from_secs(60));
        for i in 0..3 {
            assert_eq!(l.check(a, t0), None, "attempt {i} is checked");
            l.failed(a, t0 + Duration::from_secs(i));
        }
        assert_eq!(l.check(a, t0 + Duration::from_secs(10)), Some(Duration::from_secs(50)));
        assert_eq!(l.check(b, t0 + Duration::from_secs(10)), None, "other peers are not affected");
        assert_eq!(l.check(a, t0 + Duration::from_secs(60)), None, "the window passed");
        l.failed(a, t0 + Duration::from_secs(61));
        l.succeeded(a);
        assert_eq!(l.check(a, t0 + Duration::from_secs(62)), None);
    }

    #[test]
    fn the_table_is_bounded() {
        let t0 = Instant::now();
        let mut l = AuthLimiter::new(1, Duration::from_secs(60));
        l.max_peers = 8;
        for i in 0..100u8 {
            l.failed(std::net::IpAddr::from([10, 0, 1, i]), t0 + Duration::from_millis(u64::from(i)));
        }
        assert!(l.peers.len() <= 8);
        assert!(l.check(std::net::IpAddr::from([10, 0, 1, 99]), t0 + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn file_lines_skip_blanks_and_comments() {
        let lines: Vec<_> = super::file_lines("# head\n\n a  b # c\n\t\nd\n").collect();
        assert_eq!(lines, vec![(3, vec!["a", "b"]), (5, vec!["d"])]);
    }

    #[test]
    fn equality() {
        assert!(super::equal(b"abc", b"abc"));
        assert!(!super::equal(b"abc", b"abd"));
        assert!(!super::equal(b"abc", b"abcd"));
    }
}
