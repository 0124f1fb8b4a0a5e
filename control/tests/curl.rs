//! The real curl binary against a combined node: HTTP/1.1 and HTTP/2, over TLS (ALPN and none)
//! and cleartext; early refusals seen as their status and JSON with curl exiting 0, with and
//! without `Expect: 100-continue`. Skips, saying so, where curl is not installed.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use zerohop_control::broadcasters::BroadcasterTokens;
use zerohop_control::{Node, NodeConfig};

/// What curl did: exit status, body written, and what `-w` printed on stderr.
#[derive(Debug)]
struct Curl {
    rc: i32,
    body: Vec<u8>,
    meta: String,
}

fn have_curl() -> bool {
    let ok = Command::new("curl").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: the curl binary is not installed (apt-get install curl)");
    }
    ok
}

/// Runs curl with `args` (the URL among them), off the runtime's threads; the body is written
/// to a file and `-w` prints the status and HTTP version to stderr.
async fn curl(args: Vec<String>) -> Curl {
    tokio::task::spawn_blocking(move || {
        let dir = tempdir();
        let out = dir.join("body");
        let o = Command::new("curl")
            .args(["-sS", "--max-time", "30", "-o"])
            .arg(&out)
            .args(["-w", "%{stderr}%{http_code} %{http_version}"])
            .args(&args)
            .output()
            .expect("curl runs");
        let body = std::fs::read(&out).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        Curl { rc: o.status.code().unwrap_or(-1), body, meta: String::from_utf8_lossy(&o.stderr).into_owned() }
    })
    .await
    .expect("curl task")
}

fn tempdir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d =
        std::env::temp_dir().join(format!("zerohop-curl-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}

fn fixture_path(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name);
    p.to_string_lossy().into_owned()
}

/// How curl reaches the node.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// TLS, ALPN h2.
    H2,
    /// TLS, ALPN http/1.1.
    H1,
    /// TLS with no ALPN offered (as ffmpeg's TLS may): HTTP/1.1.
    H1NoAlpn,
    /// Cleartext HTTP/1.1.
    ClearH1,
    /// Cleartext h2c with prior knowledge.
    ClearH2,
}

impl Via {
    fn args(self, node: &Node, path: &str) -> Vec<String> {
        let port = node.local_addr().port();
        let (scheme, flags): (&str, &[&str]) = match self {
            Via::H2 => ("https", &["-k", "--http2"]),
            Via::H1 => ("https", &["-k", "--http1.1"]),
            Via::H1NoAlpn => ("https", &["-k", "--http1.1", "--no-alpn"]),
            Via::ClearH1 => ("http", &["--http1.1"]),
            Via::ClearH2 => ("http", &["--http2-prior-knowledge"]),
        };
        let mut a: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        a.push(format!("{scheme}://127.0.0.1:{port}{path}"));
        a
    }

    fn version(self) -> &'static str {
        match self {
            Via::H2 | Via::ClearH2 => "2",
            _ => "1.1",
        }
    }

    fn tls(self) -> bool {
        matches!(self, Via::H2 | Via::H1 | Via::H1NoAlpn)
    }
}

async fn node(tls: bool, setup: impl FnOnce(&mut NodeConfig)) -> Node {
    let mut cfg = if tls { tls_config().0 } else { NodeConfig::new("127.0.0.1:0".parse().expect("addr"), None) };
    setup(&mut cfg);
    Node::start(cfg).await.expect("node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_serves_healthz_and_refuses_the_link_on_http1() {
    if !have_curl() {
        return;
    }
    let tls = node(true, |_| {}).await;
    let clear = node(false, |_| {}).await;
    for via in [Via::H2, Via::H1, Via::H1NoAlpn, Via::ClearH1, Via::ClearH2] {
        let n = if via.tls() { &tls } else { &clear };
        let c = curl(via.args(n, "/healthz")).await;
        assert_eq!((c.rc, c.meta.as_str()), (0, format!("200 {}", via.version()).as_str()), "{via:?}");
        assert!(String::from_utf8_lossy(&c.body).contains("serving"), "{via:?}: {c:?}");
    }
    let mut a = Via::H1.args(&tls, "/v1/transcoders/link");
    a.extend(["-X".into(), "POST".into()]);
    let c = curl(a).await;
    assert_eq!((c.rc, c.meta.as_str()), (0, "505 1.1"));
    assert!(String::from_utf8_lossy(&c.body).contains("http2_required"), "{c:?}");
}

/// One early refusal as curl sees it, on every transport, with and without Expect.
async fn refused_everywhere(tls: &Node, clear: &Node, extra: &[&str], file: &str, status: &str, code: &str) {
    for via in [Via::H2, Via::H1, Via::ClearH1, Via::ClearH2] {
        for expect in [false, true] {
            let n = if via.tls() { tls } else { clear };
            let mut a = via.args(n, "/v1/streams/refused/segments/0");
            a.extend(["--data-binary".into(), format!("@{}", fixture_path(file))]);
            a.extend(["-H".into(), "Content-Type: video/mp2t".into()]);
            a.push("-H".into());
            a.push(if expect { "Expect: 100-continue".into() } else { "Expect:".into() });
            a.extend(extra.iter().map(|s| s.to_string()));
            let c = curl(a).await;
            let what = format!("{code} via {via:?} expect={expect}: {c:?}");
            assert_eq!(c.rc, 0, "curl failed: {what}");
            assert_eq!(c.meta, format!("{status} {}", via.version()), "{what}");
            let v: serde_json::Value = serde_json::from_slice(&c.body).unwrap_or_else(|e| panic!("{e}: {what}"));
            assert_eq!(v["code"], code, "{what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_refusals_reach_curl_as_their_status_and_json() {
    if !have_curl() {
        return;
    }
    // No engine sessions and no transcoders: 503 at_capacity.
    let busy = |c: &mut NodeConfig| c.max_sessions = 0;
    let (tls, clear) = (node(true, busy).await, node(false, busy).await);
    refused_everywhere(&tls, &clear, &[], "h264_1080p30_high_bframes_aac.ts", "503", "at_capacity").await;
    // A token required and none given: 401.
    let token = |c: &mut NodeConfig| c.broadcasters = BroadcasterTokens::single("s3cret".into());
    let (tls, clear) = (node(true, token).await, node(false, token).await);
    refused_everywhere(&tls, &clear, &[], "stream_seq0.ts", "401", "unauthorized").await;
    // Refused by the engine from the first bytes: 415 and 422.
    let (tls, clear) = (node(true, |_| {}).await, node(false, |_| {}).await);
    refused_everywhere(&tls, &clear, &[], "hevc_320x240.ts", "415", "unsupported_codec").await;
    refused_everywhere(&tls, &clear, &[], "garbage.ts", "422", "not_transport_stream").await;
    // Declared too large: 413.
    let small = |c: &mut NodeConfig| c.max_segment_bytes = 100_000;
    let (tls, clear) = (node(true, small).await, node(false, small).await);
    refused_everywhere(&tls, &clear, &[], "h264_1080p30_high_bframes_aac.ts", "413", "too_large").await;
}
