//! Secrets: compared in constant time, read from files or the environment, never from argv.

use subtle::ConstantTimeEq;

/// Constant-time equality (lengths may leak; contents do not).
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Reads a secret from a file (first line, trimmed) or, when `file` is `None`, from `env_var`.
pub fn load(file: Option<&std::path::Path>, env_var: &str) -> std::io::Result<Option<String>> {
    let raw = match file {
        Some(f) => Some(std::fs::read_to_string(f)?),
        None => std::env::var(env_var).ok(),
    };
    Ok(raw.map(|s| s.lines().next().unwrap_or("").trim().to_string()).filter(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn equality() {
        assert!(super::equal(b"abc", b"abc"));
        assert!(!super::equal(b"abc", b"abd"));
        assert!(!super::equal(b"abc", b"abcd"));
    }
}
