//! An interop aid: with `ZEROHOP_LIVEPEER_TRACE_DIR` set, every Livepeer message zerohop receives
//! from a peer (gRPC requests and notifies, a segment's `SegData`, a transcoder's results with
//! their headers) is written there as it came, one file each (`<n>-<what>.bin`), so a failed
//! pairing with a go-livepeer node can be replayed and reported. Off (no cost) when unset.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the directory.
pub const TRACE_DIR: &str = "ZEROHOP_LIVEPEER_TRACE_DIR";

fn dir() -> Option<&'static PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = PathBuf::from(std::env::var_os(TRACE_DIR)?);
        match std::fs::create_dir_all(&d) {
            Ok(()) => {
                tracing::warn!(dir = %d.display(), "writing every Livepeer message received ({TRACE_DIR})");
                Some(d)
            }
            Err(e) => {
                tracing::error!(dir = %d.display(), error = %e, "{TRACE_DIR}: cannot create the directory; not tracing");
                None
            }
        }
    })
    .as_ref()
}

/// Whether tracing is on.
pub fn dir_set() -> bool {
    dir().is_some()
}

/// Writes one received message (`what`: its type, a file-name word such as `RegisterRequest`).
pub fn received(what: &str, bytes: &[u8]) {
    static N: AtomicU64 = AtomicU64::new(0);
    let Some(d) = dir() else { return };
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = d.join(format!("{n:04}-{what}.bin"));
    if let Err(e) = std::fs::write(&path, bytes) {
        tracing::warn!(path = %path.display(), error = %e, "could not write a Livepeer trace file");
    }
}

/// A request's headers as text (for results, whose meaning is partly in them).
pub fn headers(h: &http::HeaderMap) -> String {
    let mut out = String::new();
    for (k, v) in h {
        out.push_str(k.as_str());
        out.push_str(": ");
        out.push_str(&String::from_utf8_lossy(v.as_bytes()));
        out.push('\n');
    }
    out
}
