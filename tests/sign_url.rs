//! `zerohop sign-url` and `--playback-key-file` as a user runs them: the URL printed is signed
//! for its stream until the time asked; a short key and a key without `--private-playback` are
//! refused at start-up, saying what to write instead; a running node plays a URL signed by an
//! independent implementation of the "signed URL" rules of doc/operations.md (a known answer),
//! and refuses one signed the way the old docs described.

mod common;

#[path = "../src/scratch.rs"]
#[allow(dead_code)] // shared with the binary and tests/config.rs; here only new(), path() and file()
mod scratch;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scratch::ScratchDir;
use zerohop_control::signed_url::{PlaybackKey, Refusal};

const KEY: &str = "3b1f0c9e8d7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c\n";

fn zerohop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zerohop")).args(args).output().expect("run")
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

#[test]
fn the_printed_url_is_signed_for_its_stream_until_the_time_asked() {
    let s = ScratchDir::new("sign-url");
    let key_file = s.file("playback.key", KEY);
    let key_file = key_file.to_str().expect("utf-8");
    let url = "https://node.example:8935/stream/cam%201.m3u8";
    let o = zerohop(&["sign-url", "--playback-key-file", key_file, "--valid-for", "60", url]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let signed = String::from_utf8(o.stdout).expect("utf-8");
    let (base, query) = signed.trim().split_once('?').expect("a query");
    assert_eq!(base, url);
    let key = PlaybackKey::from_file_contents(KEY.as_bytes()).expect("key");
    assert!(key.verify("cam 1", Some(query), now()).is_ok(), "{query}");
    assert_eq!(key.verify("cam 1", Some(query), now() + 62), Err(Refusal::Expired));
    assert_eq!(key.verify("cam1", Some(query), now()), Err(Refusal::BadSignature), "another stream");

    // A query and a fragment: the signature joins the query, before the fragment.
    let o = zerohop(&["sign-url", "--playback-key-file", key_file, "http://h/stream/cam1.m3u8?x=1#t=10"]);
    let printed = String::from_utf8(o.stdout).expect("utf-8");
    let (query, fragment) =
        printed.trim().strip_prefix("http://h/stream/cam1.m3u8?x=1&").expect(&printed).split_once('#').expect("#");
    assert_eq!(fragment, "t=10");
    assert!(key.verify("cam1", Some(query), now()).is_ok(), "{printed}");
    // An already expired URL is not printed.
    let o = zerohop(&["sign-url", "--playback-key-file", key_file, "--valid-for", "0", url]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));

    // Not a playback URL: said, nothing printed.
    let o = zerohop(&["sign-url", "--playback-key-file", key_file, "https://node.example/v1/streams/cam1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty() && String::from_utf8_lossy(&o.stderr).contains("/stream/STREAM.m3u8"));
}

#[test]
fn a_short_key_or_a_key_without_private_playback_is_refused_saying_what_to_write() {
    let s = ScratchDir::new("sign-url-refusals");
    let short = s.file("short.key", "hunter2\n");
    let short = short.to_str().expect("utf-8");
    let o = zerohop(&["sign-url", "--playback-key-file", short, "http://h/stream/cam1.m3u8"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("short.key") && err.contains("/dev/urandom"), "{err}");

    let good = s.file("playback.key", KEY);
    let o = zerohop(&["combined", "--playback-key-file", good.to_str().expect("utf-8"), "--insecure-h2c"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "a usage error: {err}");
    assert!(err.contains("--private-playback"), "{err}");
}

/// The known answer: `tests/fixtures/sign_url_known_answer.py` (Python's `hmac` and `hashlib`
/// only, written from the "signed URL" section, then README's, now doc/operations.md's; run
/// once, its output pasted here) signed stream `cam1` until [`KA_EXP`] under the key file
/// [`KEY`]. Regenerate with `python3 tests/fixtures/sign_url_known_answer.py`. A third signer agrees:
/// `printf 'zerohop-playback-v1\ncam1\n4102444800' | openssl dgst -sha256 -hmac KEYTEXT`, KEYTEXT
/// being [`KEY`] without its line end.
const KA_EXP: u64 = 4_102_444_800; // 2100-01-01T00:00:00Z
const KA_SIG: &str = "d3e04edae50345e569eb9e95ef7483d920bd4a38304854aa504d38d455f6098a";
/// The same script's signature over `cam1\n4102444800` without the `zerohop-playback-v1` line:
/// what a signer written from the old docs ("the stream name and exp") sends.
const KA_OLD_DOCS_SIG: &str = "09af9b99225e1edb661eef109bc1a111cfe2268347e9eee85864afdf405ea084";
/// The node's answer to a signature that is not its own, exactly.
const NOT_THE_NODES: &str = "playback is private: the URL's signature is not the node's for this stream";

/// `GET path` as HTTP/1.0 (the body ends with the connection): status and body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    write!(c, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut answer = String::new();
    c.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect(head);
    (status, body.to_string())
}

#[test]
fn a_running_node_plays_a_url_signed_by_an_independent_signer_and_refuses_the_old_docs_signature() {
    // Zerohop's own signer agrees with the independent one.
    let key = PlaybackKey::from_file_contents(KEY.as_bytes()).expect("key");
    assert_eq!(key.query("cam1", KA_EXP), format!("exp={KA_EXP}&sig={KA_SIG}"));

    let s = ScratchDir::new("sign-url-known-answer");
    let key_file = s.file("playback.key", KEY);
    let token_file = s.file("token", "pushing-token\n");
    let ladder = r#"[{"name":"180p","width":320,"height":180,"bitrate":300000}]"#;
    let addr = common::free_addr();
    let _node = common::start_listening(
        Command::new(env!("CARGO_BIN_EXE_zerohop"))
            .args(["combined", "--insecure-h2c", "--private-playback", "-p", ladder, "--service-addr", &addr])
            .arg("--playback-key-file")
            .arg(&key_file)
            .arg("--token-file")
            .arg(&token_file)
            .arg("--data-dir")
            .arg(s.path().join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        &addr,
    );
    let segment = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/h264_360p25_baseline_noaudio.ts");
    let o = zerohop(&[
        "push",
        "--insecure-h2c",
        "--orch",
        &addr,
        "--stream",
        "cam1",
        "--token-file",
        token_file.to_str().expect("utf-8"),
        "-o",
        s.path().join("pushed").to_str().expect("utf-8"),
        segment,
    ]);
    assert!(o.status.success(), "push: {}", String::from_utf8_lossy(&o.stderr));

    // The independent signer's URL: the master playlist, its URIs carrying the signature on.
    let (status, body) = get(&addr, &format!("/stream/cam1.m3u8?exp={KA_EXP}&sig={KA_SIG}"));
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("#EXTM3U\n"), "{body}");
    assert!(body.contains(&format!("\ncam1/180p.m3u8?exp={KA_EXP}&sig={KA_SIG}\n")), "{body}");

    // Refused, saying why: the old docs' signature, and the right signature for another stream.
    for path in [
        format!("/stream/cam1.m3u8?exp={KA_EXP}&sig={KA_OLD_DOCS_SIG}"),
        format!("/stream/cam2.m3u8?exp={KA_EXP}&sig={KA_SIG}"),
    ] {
        let (status, body) = get(&addr, &path);
        assert_eq!(status, 401, "{path}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect(&body);
        assert_eq!(
            (json["code"].as_str(), json["message"].as_str()),
            (Some("unauthorized"), Some(NOT_THE_NODES)),
            "{path}"
        );
    }
}
