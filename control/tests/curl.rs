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
    /// `{status} {http version}`.
    meta: String,
    content_type: String,
    stderr: String,
}

fn have_curl() -> bool {
    zerohop_testkit::require(&["curl"], "curl")
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
            .args(["-w", "%{stderr}\n@@%{http_code} %{http_version}@@%{content_type}"])
            .args(&args)
            .output()
            .expect("curl runs");
        let body = std::fs::read(&out).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let mut fields = err.rsplitn(3, "@@");
        let content_type = fields.next().unwrap_or("").to_string();
        let meta = fields.next().unwrap_or("").to_string();
        let stderr = fields.next().unwrap_or("").trim().to_string();
        Curl { rc: o.status.code().unwrap_or(-1), body, meta, content_type, stderr }
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

/// Python's `email` parser on a multipart answer: each part's headers, and its bytes.
#[derive(Debug)]
struct Part {
    name: String,
    filename: String,
    content_type: String,
    length: Option<usize>,
    bytes: Vec<u8>,
}

const PARSE_MULTIPART: &str = r#"
import email, email.policy, json, os, sys
content_type, path, out = sys.argv[1:4]
raw = open(path, 'rb').read()
msg = email.message_from_bytes(b'Content-Type: ' + content_type.encode() + b'\r\n\r\n' + raw, policy=email.policy.HTTP)
assert msg.is_multipart(), 'not multipart'
assert not msg.defects, msg.defects
parts = []
for i, p in enumerate(msg.iter_parts()):
    data = p.get_payload(decode=True)
    open(os.path.join(out, str(i)), 'wb').write(data)
    parts.append({'name': p['Rendition-Name'], 'filename': p.get_filename(), 'type': p['Content-Type'],
                  'length': p['Content-Length'], 'defects': [str(d) for d in p.defects]})
print(json.dumps(parts))
"#;

/// The multipart answers are parsed by Python's email package.
fn have_python() -> bool {
    zerohop_testkit::require(&["python3"], "python3")
}

/// Splits a multipart answer with Python's `email` package.
fn parse_multipart(content_type: &str, body: &[u8]) -> Vec<Part> {
    let dir = tempdir();
    std::fs::write(dir.join("body"), body).expect("write");
    let o = Command::new("python3")
        .args(["-c", PARSE_MULTIPART, content_type])
        .arg(dir.join("body"))
        .arg(&dir)
        .output()
        .expect("python3 runs");
    assert!(o.status.success(), "python: {}", String::from_utf8_lossy(&o.stderr));
    let v: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).expect("json");
    let parts = v
        .iter()
        .enumerate()
        .map(|(i, p)| {
            assert_eq!(p["defects"], serde_json::json!([]), "part {i}");
            Part {
                name: p["name"].as_str().unwrap_or_default().to_string(),
                filename: p["filename"].as_str().unwrap_or_default().to_string(),
                content_type: p["type"].as_str().unwrap_or_default().to_string(),
                length: p["length"].as_str().and_then(|s| s.parse().ok()),
                bytes: std::fs::read(dir.join(i.to_string())).expect("part"),
            }
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    parts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_answers_match_what_zerohop_push_gets_on_both_apis_and_both_https() {
    if !have_curl() || !have_python() {
        return;
    }
    let ladder = |c: &mut NodeConfig| c.default_ladder = LADDER.parse().expect("ladder");
    let (tls_cfg, fp) = tls_config();
    let mut cfg = tls_cfg;
    ladder(&mut cfg);
    let tls = Node::start(cfg).await.expect("node");
    let clear = node(false, ladder).await;
    let data = fixture("stream_seq0.ts");
    // What `zerohop push` gets for the same segment: the renditions of a fresh stream.
    let mut c = connect(&tls, &fp, None).await.expect("connect");
    let (o, want) = push_collect(&mut c, "pushed", 0, zerohop_control::Upload::Full(data), || {}).await.expect("push");
    assert_eq!(error_code(&o), None);
    let names: Vec<&str> = LADDER.split(',').collect();
    let mut n = 0;
    for via in [Via::H2, Via::H1, Via::ClearH1, Via::ClearH2] {
        for api in ["live", "v1"] {
            n += 1;
            let node = if via.tls() { &tls } else { &clear };
            let path = match api {
                "live" => format!("/live/mp{n}/3.ts"),
                _ => format!("/v1/streams/mp{n}/segments/3"),
            };
            let mut a = via.args(node, &path);
            a.extend(["-X", "PUT", "-H", "Accept: multipart/mixed", "-H", "Content-Duration: 2000"].map(String::from));
            a.extend(["-H".into(), format!("zerohop-profiles: {LADDER}")]);
            a.extend(["--data-binary".into(), format!("@{}", fixture_path("stream_seq0.ts"))]);
            if api == "v1" {
                let put = a.iter().position(|s| s == "PUT").expect("PUT");
                a[put] = "POST".into();
            }
            let got = curl(a).await;
            let what = format!("{api} via {via:?}: rc {} {} {}", got.rc, got.meta, got.stderr);
            assert_eq!((got.rc, got.meta.as_str()), (0, format!("200 {}", via.version()).as_str()), "{what}");
            assert!(got.content_type.starts_with("multipart/mixed; boundary="), "{what}: {}", got.content_type);
            let parts = parse_multipart(&got.content_type, &got.body);
            assert_eq!(parts.len(), 2, "{what}");
            for (i, p) in parts.iter().enumerate() {
                let file = format!("{}_3.ts", names[i]);
                assert_eq!(p.name, names[i], "{what}");
                assert_eq!(p.filename, file, "{what}");
                assert_eq!(p.content_type, format!("video/MP2T; name=\"{file}\""), "{what}");
                if let Some(len) = p.length {
                    assert_eq!(len, p.bytes.len(), "{what}");
                }
                assert!(p.bytes == want[&(i as u8)], "{what}: rendition {i} differs from zerohop push's");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livepeer_push_without_accept_is_200_and_no_body_and_playlists_are_ignored() {
    if !have_curl() {
        return;
    }
    let token = |c: &mut NodeConfig| c.broadcasters = BroadcasterTokens::single("s3cret".into());
    let n = node(false, token).await;
    let seg = ["-X", "PUT", "--data-binary"].map(String::from);
    let profiles = r#"Livepeer-Transcode-Configuration: {"manifestID":"m","profiles":[{"name":"low","width":320,"height":180,"bitrate":250000,"fps":0,"gop":"1"}]}"#;
    for via in [Via::ClearH1, Via::ClearH2] {
        let mut a = via.args(&n, "/live/lp/0.ts");
        a.extend(seg.clone());
        a.push(format!("@{}", fixture_path("stream_seq0.ts")));
        a.extend(["-H", "Authorization: Bearer s3cret", "-H", profiles].map(String::from));
        let c = curl(a).await;
        assert_eq!((c.rc, c.meta.as_str(), c.body.len()), (0, format!("200 {}", via.version()).as_str(), 0), "{c:?}");
        // With Accept the Livepeer ladder names the part.
        let mut a = via.args(&n, "/live/lp/1.ts");
        a.extend(seg.clone());
        a.push(format!("@{}", fixture_path("stream_seq1.ts")));
        a.extend(
            ["-H", "Authorization: Bearer s3cret", "-H", profiles, "-H", "Accept: multipart/mixed"].map(String::from),
        );
        let c = curl(a).await;
        assert_eq!((c.rc, c.meta.as_str()), (0, format!("200 {}", via.version()).as_str()), "{}", c.stderr);
        let body = String::from_utf8_lossy(&c.body);
        assert!(body.contains("Rendition-Name: low\r\n") && body.contains("filename=\"low_1.ts\""), "{via:?}");
        // A playlist from an HLS muxer: read, ignored.
        let mut a = via.args(&n, "/live/lp/index.m3u8");
        a.extend(["-X", "PUT", "-H", "Authorization: Bearer s3cret", "--data-binary", "#EXTM3U\n"].map(String::from));
        let c = curl(a).await;
        assert_eq!((c.rc, c.meta.as_str()), (0, format!("200 {}", via.version()).as_str()), "{c:?}");
        // No token: 401 and its JSON, as on /v1.
        let mut a = via.args(&n, "/live/lp/2.ts");
        a.extend(seg.clone());
        a.push(format!("@{}", fixture_path("stream_seq0.ts")));
        let c = curl(a).await;
        assert_eq!((c.rc, c.meta.as_str()), (0, format!("401 {}", via.version()).as_str()), "{c:?}");
        assert!(String::from_utf8_lossy(&c.body).contains("\"unauthorized\""));
    }
}

/// curl's `-D` header dump, lower-cased names: the value of `name`.
fn header(dump: &str, name: &str) -> Option<String> {
    dump.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playback_has_cors_and_cache_headers_and_private_playback_needs_the_token() {
    if !have_curl() {
        return;
    }
    let setup = |c: &mut NodeConfig| {
        c.default_ladder = LADDER.parse().expect("ladder");
        c.broadcasters = BroadcasterTokens::single("s3cret".into());
        c.private_playback = true;
    };
    let n = node(false, setup).await;
    let mut a = Via::ClearH1.args(&n, "/live/pb/4.ts");
    a.extend(["-X", "PUT", "-H", "Authorization: Bearer s3cret", "--data-binary"].map(String::from));
    a.push(format!("@{}", fixture_path("stream_seq0.ts")));
    assert_eq!(curl(a).await.meta, "200 1.1");
    let name = LADDER.split(',').next().expect("rendition");
    let dir = tempdir();
    let dump = dir.join("headers");
    for (path, content_type, cache) in [
        ("/stream/pb.m3u8".to_string(), "application/vnd.apple.mpegurl", "private, max-age=1"),
        (format!("/stream/pb/{name}.m3u8"), "application/vnd.apple.mpegurl", "private, max-age=1"),
        (format!("/stream/pb/{name}/4.ts"), "video/mp2t", "private, max-age=1"),
    ] {
        for via in [Via::ClearH1, Via::ClearH2] {
            let c = curl(via.args(&n, &path)).await;
            assert_eq!(c.meta, format!("401 {}", via.version()), "no token: {path}");
            let mut a = via.args(&n, &path);
            a.extend(
                ["-H", "Authorization: Bearer s3cret", "-H", "Origin: http://player.example", "-D"].map(String::from),
            );
            a.push(dump.to_string_lossy().into_owned());
            let c = curl(a).await;
            assert_eq!((c.rc, c.meta.as_str()), (0, format!("200 {}", via.version()).as_str()), "{path}");
            assert_eq!(c.content_type, content_type, "{path}");
            let h = std::fs::read_to_string(&dump).expect("headers");
            assert_eq!(header(&h, "access-control-allow-origin").as_deref(), Some("*"), "{path}");
            assert_eq!(header(&h, "cache-control").as_deref(), Some(cache), "{path}");
        }
    }
    let c = curl(
        Via::ClearH1
            .args(&n, "/stream/pb.m3u8")
            .into_iter()
            .chain(["-H".into(), "Authorization: Bearer s3cret".into()])
            .collect(),
    )
    .await;
    let master = String::from_utf8_lossy(&c.body);
    assert!(master.contains("RESOLUTION=640x360") && master.contains(&format!("{name}.m3u8")), "{master}");
    // A player's preflight.
    let mut a = Via::ClearH1.args(&n, "/stream/pb.m3u8");
    a.extend(
        [
            "-X",
            "OPTIONS",
            "-H",
            "Origin: http://player.example",
            "-H",
            "Access-Control-Request-Headers: authorization",
            "-D",
        ]
        .map(String::from),
    );
    a.push(dump.to_string_lossy().into_owned());
    let c = curl(a).await;
    assert_eq!(c.meta, "204 1.1");
    let h = std::fs::read_to_string(&dump).expect("headers");
    assert!(header(&h, "access-control-allow-headers").is_some_and(|v| v.contains("Authorization")), "{h}");

    // Public playback: segments immutable, live playlists short-lived; unknown names 404.
    let n = node(false, |c| c.default_ladder = LADDER.parse().expect("ladder")).await;
    let mut a = Via::ClearH2.args(&n, "/live/pub/0.ts");
    a.extend(["-X", "PUT", "--data-binary"].map(String::from));
    a.push(format!("@{}", fixture_path("stream_seq0.ts")));
    assert_eq!(curl(a).await.meta, "200 2");
    for (path, cache) in [
        (format!("/stream/pub/{name}.m3u8"), "public, max-age=1"),
        (format!("/stream/pub/{name}/0.ts"), "public, max-age=86400, immutable"),
    ] {
        let mut a = Via::ClearH1.args(&n, &path);
        a.extend(["-D".to_string(), dump.to_string_lossy().into_owned()]);
        let c = curl(a).await;
        assert_eq!(c.meta, "200 1.1", "{path}");
        let h = std::fs::read_to_string(&dump).expect("headers");
        assert_eq!(header(&h, "cache-control").as_deref(), Some(cache), "{path}");
    }
    for path in ["/stream/nope.m3u8", "/stream/pub/nope.m3u8", "/stream/pub/P360p30fps16x9/7.ts"] {
        assert_eq!(curl(Via::ClearH1.args(&n, path)).await.meta, "404 1.1", "{path}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_split_mode_the_orchestrator_serves_playback_and_multipart() {
    if !have_curl() {
        return;
    }
    let (orch, fp) = start_node(|c| {
        c.max_sessions = 0;
        c.default_ladder = LADDER.parse().expect("ladder");
        c.transcoders =
            zerohop_control::node::TranscoderSecrets::parse_secrets("t-a s3cret-s3cret\n").expect("secrets");
    })
    .await;
    let (rt, _h) = spawn_transcoder(transcoder_config(&orch.local_addr().to_string(), &fp, "t-a", "s3cret-s3cret"));
    let mut c = connect(&orch, &fp, None).await.expect("connect");
    wait_for_transcoders(&mut c, 1).await;
    let (o, want) = push_collect(&mut c, "pushed", 0, zerohop_control::Upload::Full(fixture("stream_seq0.ts")), || {})
        .await
        .expect("push");
    assert_eq!(error_code(&o), None);
    // A Livepeer push over HTTP/1.1 through the hop, with multipart.
    let mut a = Via::H1.args(&orch, "/live/split/0.ts");
    a.extend(["-X", "PUT", "-H", "Accept: multipart/mixed", "--data-binary"].map(String::from));
    a.push(format!("@{}", fixture_path("stream_seq0.ts")));
    let got = curl(a).await;
    assert_eq!((got.rc, got.meta.as_str()), (0, "200 1.1"), "{}", got.stderr);
    if have_python() {
        let parts = parse_multipart(&got.content_type, &got.body);
        assert_eq!(parts.len(), 2);
        for (i, p) in parts.iter().enumerate() {
            assert!(p.bytes == want[&(i as u8)], "rendition {i} through the hop differs from zerohop push's");
        }
    }
    // The orchestrator serves the segment it relayed.
    let name = LADDER.split(',').next().expect("rendition");
    let c2 = curl(Via::H2.args(&orch, &format!("/stream/split/{name}/0.ts"))).await;
    assert_eq!(c2.meta, "200 2");
    assert!(c2.body == want[&0], "the HLS segment is the rendition the broadcaster got");
    let m = curl(Via::H1.args(&orch, "/stream/split.m3u8")).await;
    assert!(String::from_utf8_lossy(&m.body).contains(&format!("split/{name}.m3u8")), "{:?}", m.meta);
    orch.shutdown().await;
    rt.shutdown_background();
}
