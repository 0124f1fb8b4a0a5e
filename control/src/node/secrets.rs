//! Who may connect as a transcoder: per-id secrets (`--transcoder-secrets`), pinned client
//! certificates (`--transcoder-certs`) and one shared secret (`--orch-secret-file`).
//!
//! Both files hold one `id value` pair per line; blank lines and `#` comments are fine. Any
//! other line is an error naming the file and the line and saying what to write instead: a typo
//! must not silently lock a transcoder out (or let one in).

use std::collections::HashMap;
use std::path::Path;

/// Who may connect as a transcoder.
#[derive(Clone, Default)]
pub struct TranscoderSecrets {
    /// One secret any transcoder id may use (`--orch-secret-file`).
    pub shared: Option<String>,
    /// Per-transcoder secrets, id -> secret (revoke one by removing its line).
    pub per_id: HashMap<String, String>,
    /// Per-transcoder client certificates for mutual TLS, id -> SHA-256 (`--transcoder-certs`).
    pub certs: HashMap<String, String>,
}

/// How a transcoder proved who it is; re-checked on every reload so a removed or changed
/// secret or certificate closes the live link.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Secret(String),
    Certificate(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Secret(_) => f.write_str("Secret(..)"), // never the secret itself
            Credential::Certificate(fp) => f.debug_tuple("Certificate").field(fp).finish(),
        }
    }
}

impl std::fmt::Debug for TranscoderSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Ids and certificate fingerprints are not secret; the secrets are never shown.
        let mut ids: Vec<&String> = self.per_id.keys().collect();
        ids.sort();
        f.debug_struct("TranscoderSecrets")
            .field("shared", &self.shared.as_ref().map(|_| ".."))
            .field("per_id", &ids)
            .field("certs", &self.certs)
            .finish()
    }
}

/// A line of a secrets or certificates file that cannot be used. The message never contains a
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct LineError {
    pub line: usize,
    pub problem: String,
}

/// A secrets or certificates file that cannot be used, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsFileError {
    #[error("reading {file}: {message}")]
    Read { file: String, message: String },
    #[error("{file}, {error}")]
    Line { file: String, error: LineError },
}

/// Which file format is parsed (for the messages).
#[derive(Clone, Copy)]
enum Format {
    Secrets,
    Certs,
}

impl Format {
    fn pair(self) -> &'static str {
        match self {
            Format::Secrets => "`id secret`",
            Format::Certs => "`id sha256`",
        }
    }
}

/// The `id value` pairs of a file, strictly: one malformed line fails the whole file.
fn parse_pairs(text: &str, format: Format) -> Result<HashMap<String, String>, LineError> {
    let mut pairs: HashMap<String, (usize, String)> = HashMap::new();
    for (line, fields) in crate::secret::file_lines(text) {
        let pair = format.pair();
        let (id, value) = match fields[..] {
            [id, value] => (id, value),
            [one] if one.contains(':') && matches!(format, Format::Secrets) => {
                let problem = format!(
                    "one field where {pair} was expected: separate the id and the secret with a space, not `:` (e.g. `t-1 s3cret`)"
                );
                return Err(LineError { line, problem });
            }
            [_] => {
                let problem = format!("one field where {pair} was expected: write the id, a space, then the value");
                return Err(LineError { line, problem });
            }
            _ => {
                let problem = format!(
                    "{} fields where {pair} was expected: one id and one value, with no spaces inside either",
                    fields.len()
                );
                return Err(LineError { line, problem });
            }
        };
        let value = match format {
            Format::Secrets => value.to_string(),
            Format::Certs => crate::tls::parse_fingerprint(value).map_err(|_| LineError {
                line,
                problem: format!(
                    "`{value}` is not a SHA-256 certificate fingerprint: write its 64 hex digits (colons between bytes are fine)"
                ),
            })?,
        };
        if let Some((first, _)) = pairs.get(id) {
            let problem = format!("transcoder id `{id}` appears twice (first on line {first}): keep one line per id");
            return Err(LineError { line, problem });
        }
        pairs.insert(id.to_string(), (line, value));
    }
    Ok(pairs.into_iter().map(|(id, (_, v))| (id, v)).collect())
}

fn read(path: &Path, format: Format) -> Result<HashMap<String, String>, SecretsFileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| SecretsFileError::Read { file: file.clone(), message: e.to_string() })?;
    parse_pairs(&text, format).map_err(|error| SecretsFileError::Line { file, error })
}

impl TranscoderSecrets {
    /// Parses a secrets file: one `id secret` pair per line. A malformed line is an error
    /// naming it.
    pub fn parse_secrets(text: &str) -> Result<TranscoderSecrets, LineError> {
        Ok(TranscoderSecrets { per_id: parse_pairs(text, Format::Secrets)?, ..TranscoderSecrets::default() })
    }

    /// Parses a client-certificates file: one `id sha256` pair per line (colons allowed in the
    /// fingerprint). A malformed line is an error naming it.
    pub fn parse_certs_file(text: &str) -> Result<HashMap<String, String>, String> {
        parse_pairs(text, Format::Certs).map_err(|e| e.to_string())
    }

    /// Reads the per-id secrets file and the client-certificates file (either may be absent);
    /// `shared` is left unset. Errors name the file and the line.
    pub fn read_files(secrets: Option<&Path>, certs: Option<&Path>) -> Result<TranscoderSecrets, SecretsFileError> {
        let mut t = TranscoderSecrets::default();
        if let Some(p) = secrets {
            t.per_id = read(p, Format::Secrets)?;
        }
        if let Some(p) = certs {
            t.certs = read(p, Format::Certs)?;
        }
        Ok(t)
    }

    /// Whether `secret` is right for transcoder `id`.
    pub fn admits(&self, id: &str, secret: &str) -> bool {
        let per = self.per_id.get(id).is_some_and(|s| crate::secret::equal(s.as_bytes(), secret.as_bytes()));
        let shared = self.shared.as_ref().is_some_and(|s| crate::secret::equal(s.as_bytes(), secret.as_bytes()));
        per | shared
    }

    /// Whether transcoder `id` presenting the client certificate `fingerprint` is admitted.
    pub fn admits_certificate(&self, id: &str, fingerprint: &str) -> bool {
        self.certs.get(id).is_some_and(|f| f == fingerprint)
    }

    /// Whether a credential accepted earlier still admits `id`.
    pub fn still_admits(&self, id: &str, credential: &Credential) -> bool {
        match credential {
            Credential::Secret(s) => self.admits(id, s),
            Credential::Certificate(f) => self.admits_certificate(id, f),
        }
    }

    /// Whether any transcoder may dial in.
    pub fn any(&self) -> bool {
        self.shared.is_some() || !self.per_id.is_empty() || !self.certs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcoder_credentials_parse_recheck_and_never_print_secrets() {
        let mut s = TranscoderSecrets::parse_secrets("t-a hunter2 # comment\n\nt-b correct-horse\n").expect("parse");
        let fp = "AB:".repeat(31) + "AB";
        s.certs = TranscoderSecrets::parse_certs_file(&format!("t-m {fp}\n")).expect("certs");
        assert!(s.admits("t-a", "hunter2") && !s.admits("t-a", "correct-horse") && !s.admits("t-x", "hunter2"));
        assert!(s.admits_certificate("t-m", &"ab".repeat(32)), "colons and case are normalised");
        assert!(!s.admits_certificate("t-a", &"ab".repeat(32)), "a certificate is pinned per id");
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("correct-horse"), "{shown}");
        assert!(shown.contains("t-a"));
        assert!(!format!("{:?}", Credential::Secret("hunter2".into())).contains("hunter2"));
        // A reload re-checks how each live link got in.
        let mut rotated = s.clone();
        rotated.per_id.insert("t-a".into(), "new-secret".into());
        assert!(!rotated.still_admits("t-a", &Credential::Secret("hunter2".into())));
        assert!(rotated.still_admits("t-b", &Credential::Secret("correct-horse".into())));
        assert!(rotated.still_admits("t-m", &Credential::Certificate("ab".repeat(32))));
        assert!(TranscoderSecrets::parse_certs_file("t-m nothex\n").expect_err("bad").contains("line 1"));
        assert!(TranscoderSecrets::parse_certs_file("lonely\n").is_err());
    }

    #[test]
    fn a_malformed_secrets_line_is_an_error_naming_its_line_and_the_fix() {
        let ok = "# transcoders\n\n  t-1 s3cret  # comment\nt-2\ts3cond\n";
        assert_eq!(TranscoderSecrets::parse_secrets(ok).expect("ok").per_id.len(), 2);
        for (text, line, hint) in [
            ("t-0 fine\nt1:secret\n", 2, "not `:`"),
            ("lonely\n", 1, "one field"),
            ("t-1 two words\n", 1, "3 fields"),
            ("t-1 a\n# gap\nt-1 b\n", 3, "appears twice (first on line 1)"),
        ] {
            let e = TranscoderSecrets::parse_secrets(text).expect_err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.problem.contains(hint), "{text:?}: {e}");
            assert!(!e.problem.contains("t1:secret") && !e.problem.contains("two words"), "no secret in {e}");
        }
    }

    #[test]
    fn a_malformed_certificate_line_is_an_error_naming_its_line() {
        let fp = "ab".repeat(32);
        for (text, hint) in [
            (format!("t-1 {fp}\nt-1 {fp}\n"), "line 2: transcoder id `t-1` appears twice"),
            (format!("t-1 {fp} extra\n"), "line 1: 3 fields"),
            ("t-1 abcd\n".to_string(), "line 1: `abcd` is not a SHA-256"),
            (format!("t-1:{fp}\n"), "line 1: one field"),
        ] {
            let e = TranscoderSecrets::parse_certs_file(&text).expect_err(&text);
            assert!(e.starts_with(hint), "{text:?}: {e}");
        }
    }

    #[test]
    fn files_are_named_in_errors() {
        let dir = std::env::temp_dir().join(format!("zerohop-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (good, bad) = (dir.join("good"), dir.join("bad"));
        std::fs::write(&good, "t-1 s3cret\n").expect("write");
        std::fs::write(&bad, "t-1 s3cret\nt1:secret\n").expect("write");
        let t = TranscoderSecrets::read_files(Some(&good), None).expect("good");
        assert!(t.admits("t-1", "s3cret") && t.certs.is_empty() && t.shared.is_none());
        let e = TranscoderSecrets::read_files(Some(&bad), None).expect_err("bad");
        let shown = e.to_string();
        assert!(shown.starts_with(&format!("{}, line 2: one field", bad.display())), "{shown}");
        let e = TranscoderSecrets::read_files(None, Some(&bad)).expect_err("bad certs");
        assert!(e.to_string().contains("line 1: `s3cret` is not a SHA-256"), "{e}");
        let missing = dir.join("missing");
        assert!(matches!(TranscoderSecrets::read_files(Some(&missing), None), Err(SecretsFileError::Read { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
