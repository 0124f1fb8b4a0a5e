//! `zerohop sign-url` and `--playback-key-file` as a user runs them: the URL printed is signed
//! for its stream until the time asked; a short key and a key without `--private-playback` are
//! refused at start-up, saying what to write instead.

#[path = "../src/scratch.rs"]
#[allow(dead_code)] // shared with the binary and tests/config.rs; here only new() and file()
mod scratch;

use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

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
