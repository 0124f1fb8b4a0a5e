//! The HTTP contract of `doc/openapi.yaml`, request by request: 405 with `Allow` for a method a
//! path does not serve, 404 `no_such_stream` for a stream the node does not hold, 400
//! `bad_sequence` for a sequence number that is not a non-negative integer, one link per
//! transcoder id (a new link replaces the old, whose segment fails over and whose box stops it),
//! and every error code the node can send listed in the spec.
//! (`contract/schemathesis.sh` fuzzes the same spec against a live node.)

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{LADDER, connect, fixture, spawn_transcoder, start_node, transcoder_config, transport};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use zerohop_control::body::ChannelBody;
use zerohop_control::link::{LineReader, ToTranscoder};
use zerohop_control::relay::SessionFactory;
use zerohop_control::transcoder::TranscoderConfig;
use zerohop_control::{Client, Upload, headers};

/// `method path` with `body`: the status, the `Allow` header and the JSON body (`Null` if none).
async fn ask(
    c: &Client,
    method: Method,
    path: &str,
    body: &'static [u8],
) -> (StatusCode, Option<String>, serde_json::Value) {
    let req = c.request(method, path).body(ChannelBody::full(Bytes::from_static(body))).expect("request");
    let resp = c.send(req).await.expect("answer");
    let status = resp.status();
    let allow = resp.headers().get(http::header::ALLOW).map(|v| v.to_str().expect("ascii").to_string());
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, allow, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_a_path_does_not_serve_gets_405_with_allow() {
    let (node, fp) = start_node(|_| {}).await;
    let c = connect(&node, &fp, None).await.expect("connect");
    for (method, path, allow) in [
        (Method::PUT, "/v1/streams/s/segments/0", "POST"),
        (Method::GET, "/v1/streams/s/segments/0", "POST"),
        (Method::DELETE, "/v1/streams/s/segments/0", "POST"),
        (Method::GET, "/v1/streams/s", "DELETE"),
        (Method::POST, "/v1/streams/s", "DELETE"),
        (Method::POST, "/healthz", "GET"),
        (Method::DELETE, "/metrics", "GET"),
        (Method::POST, "/v1/transcoders", "GET"),
        (Method::GET, "/live/s/0.ts", "PUT, POST"),
        (Method::DELETE, "/stream/s.m3u8", "GET, HEAD, OPTIONS"),
        (Method::GET, "/v1/transcoders/link", "POST"),
        (Method::POST, "/v1/tasks/1/input", "GET"),
        (Method::GET, "/v1/tasks/1/results", "POST"),
    ] {
        let (status, got, body) = ask(&c, method.clone(), path, b"").await;
        assert_eq!((status, got.as_deref()), (StatusCode::METHOD_NOT_ALLOWED, Some(allow)), "{method} {path}");
        assert_eq!(body["code"], "method_not_allowed", "{method} {path}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| m.contains(allow)), "{body}");
    }
    // A path that is no endpoint is 404 whatever the method, without `Allow`.
    for method in [Method::GET, Method::PUT] {
        let (status, allow, body) = ask(&c, method, "/v1/nothing/here", b"x").await;
        assert_eq!((status, allow, body["code"].as_str()), (StatusCode::NOT_FOUND, None, Some("not_found")));
    }
    // The node still serves.
    assert_eq!(ask(&c, Method::GET, "/healthz", b"").await.0, StatusCode::OK);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_number_that_is_not_a_non_negative_integer_is_400_bad_sequence() {
    let (node, fp) = start_node(|_| {}).await;
    let c = connect(&node, &fp, None).await.expect("connect");
    for seq in ["abc", "-1", "1.5", "+1", "0x10", "18446744073709551616", "%20"] {
        for path in [format!("/v1/streams/s/segments/{seq}"), format!("/live/s/{seq}.ts")] {
            let method = if path.starts_with("/live") { Method::PUT } else { Method::POST };
            let (status, _, body) = ask(&c, method, &path, b"not a segment").await;
            assert_eq!(
                (status, body["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("bad_sequence")),
                "{path}: {body}"
            );
            let message = body["message"].as_str().expect("message");
            assert!(message.contains(&format!("{seq:?}")), "the message names the sequence number: {message}");
        }
    }
    // The largest sequence number is still one.
    let mut c2 = connect(&node, &fp, None).await.expect("connect");
    let input = fixture("h264_360p25_baseline_noaudio.ts");
    let o = c2.push("big", u64::MAX, Some(LADDER), Upload::Full(input), |_| {}).await.expect("push");
    assert!(o.ok(), "{o:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_stream_the_node_does_not_hold_is_404_no_such_stream() {
    let (node, fp) = start_node(|_| {}).await;
    let mut c = connect(&node, &fp, None).await.expect("connect");
    let (status, _, body) = ask(&c, Method::DELETE, "/v1/streams/never-pushed", b"").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("no_such_stream")), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("never-pushed")), "{body}");

    let input = fixture("h264_360p25_baseline_noaudio.ts");
    let o = c.push("live", 0, Some(LADDER), Upload::Full(input), |_| {}).await.expect("push");
    assert!(o.ok(), "{o:?}");
    let (status, _, body) = ask(&c, Method::DELETE, "/v1/streams/live", b"").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::OK, Some("ok")), "{body}");
    // Already ended.
    assert_eq!(c.end_stream("live").await.expect("delete"), StatusCode::NOT_FOUND);
    node.shutdown().await;

    // Expired while idle: its sessions were closed by the node.
    let (node, fp) = start_node(|cfg| cfg.idle_timeout = Duration::from_millis(200)).await;
    let mut c = connect(&node, &fp, None).await.expect("connect");
    let input = fixture("h264_360p25_baseline_noaudio.ts");
    let o = c.push("idle", 0, Some(LADDER), Upload::Full(input), |_| {}).await.expect("push");
    assert!(o.ok(), "{o:?}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(c.end_stream("idle").await.expect("delete"), StatusCode::NOT_FOUND, "expired while idle");
    node.shutdown().await;
}

const LINK_SECRET: &str = "correct-horse-battery-staple";

/// A node without sessions of its own that admits transcoder `t-a`.
async fn orchestrator() -> (zerohop_control::Node, String) {
    common::orchestrator_admitting(&format!("t-a {LINK_SECRET}\n")).await
}

/// An orchestrator with a real transcoder `t-a` linked: the node, its certificate's fingerprint,
/// its address, the transcoder's runtime and a client.
async fn orchestrator_with_transcoder() -> (zerohop_control::Node, String, String, tokio::runtime::Runtime, Client) {
    let (node, fp) = orchestrator().await;
    let addr = node.local_addr().to_string();
    let (rt, _link) = spawn_transcoder(transcoder_config(&addr, &fp, "t-a", LINK_SECRET));
    let mut c = connect(&node, &fp, None).await.expect("connect");
    common::wait_for_transcoders(&mut c, 1).await;
    (node, fp, addr, rt, c)
}

/// A bare link as transcoder `t-a` with capacity 1 (a transcoder that takes tasks and runs
/// none): its task lines, and the sender of its report body (kept, or the link ends).
struct RawLink {
    _client: Client,
    _reports: tokio::sync::mpsc::Sender<Result<http_body::Frame<Bytes>, std::io::Error>>,
    tasks: hyper::body::Incoming,
    lines: LineReader,
}

impl RawLink {
    async fn open(addr: &str, fp: &str) -> RawLink {
        let client = Client::connect(addr, &transport(fp), None).await.expect("dial");
        let (reports, body) = ChannelBody::channel(1);
        let req = client
            .request(Method::POST, "/v1/transcoders/link")
            .header(headers::TRANSCODER_ID, "t-a")
            .header(http::header::AUTHORIZATION, format!("Bearer {LINK_SECRET}"))
            .header(headers::CAPACITY, 1)
            .body(body)
            .expect("request");
        let resp = client.send(req).await.expect("answer");
        assert_eq!(resp.status(), StatusCode::OK, "a link with a valid secret is taken");
        RawLink { _client: client, _reports: reports, tasks: resp.into_body(), lines: LineReader::default() }
    }

    /// The next message on the link; `None` once the orchestrator ended it.
    async fn next(&mut self) -> Option<ToTranscoder> {
        loop {
            if let Some(line) = self.lines.poll() {
                return Some(ToTranscoder::parse(&line.expect("a line")).expect("a known message"));
            }
            match self.tasks.frame().await {
                Some(Ok(f)) => self.lines.push(&f.into_data().unwrap_or_default()),
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// `GET /v1/transcoders`: each linked transcoder's name and address.
async fn listed(c: &mut Client) -> Vec<(String, String)> {
    let name = |t: &serde_json::Value, k: &str| t[k].as_str().unwrap_or_default().to_string();
    common::transcoder_list(c).await.iter().map(|t| (name(t, "name"), name(t, "peer"))).collect()
}

/// Links replaced by a new link with their id, in this process (every node of this test binary
/// counts there: see [`common::measuring_series`]).
fn takeovers() -> f64 {
    common::series("zerohop_link_takeovers_total")
}

/// Tasks a replaced transcoder stopped, in this process (every transcoder of this test binary
/// counts there).
fn abandoned() -> f64 {
    common::series("zerohop_transcoder_tasks_abandoned_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_link_with_a_linked_id_replaces_the_old_one_and_its_segment_fails_over_to_it() {
    // Counts takeovers: alone, as the other tests here that replace links move the same counter.
    let _measuring = common::measuring_series().await;
    let (node, fp) = orchestrator().await;
    let addr = node.local_addr().to_string();
    let mut old = RawLink::open(&addr, &fp).await;
    let mut c = connect(&node, &fp, None).await.expect("connect");
    common::wait_for_transcoders(&mut c, 1).await;
    assert_eq!(listed(&mut c).await.len(), 1);
    let before = takeovers();

    // A segment placed on the old link, which never starts it.
    let mut pusher = connect(&node, &fp, None).await.expect("connect");
    let input = fixture("h264_360p25_baseline_noaudio.ts");
    let push = tokio::spawn(async move { common::push_collect(&mut pusher, "s", 0, Upload::Full(input), || {}).await });
    let Some(ToTranscoder::Task { .. }) = old.next().await else { panic!("the segment went to the only link") };

    // The same id links again (a real transcoder, from another connection): it replaces the old
    // link, whose last line says so and whose body then ends.
    let (rt, _h) = spawn_transcoder(transcoder_config(&addr, &fp, "t-a", LINK_SECRET));
    let Some(ToTranscoder::Replaced { old: was, new }) = old.next().await else {
        panic!("the replaced link is told why")
    };
    assert_ne!(was, new, "two connections");
    assert_eq!(old.next().await, None, "the replaced link ends");

    // Its segment failed over to the new link and completed there, as a local session makes it.
    let (o, outs) = push.await.expect("push task").expect("push");
    assert!(o.ok(), "{o:?}");
    let expected = common::local(fixture("h264_360p25_baseline_noaudio.ts"));
    assert_eq!(outs.values().cloned().collect::<Vec<_>>(), expected, "the renditions");

    // One link for the id: the new one.
    assert_eq!(listed(&mut c).await, [("t-a".to_string(), new)]);
    assert_eq!(takeovers(), before + 1.0, "the takeover is counted, once");
    rt.shutdown_background();
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcoder_whose_link_was_replaced_links_again_and_replaces_the_other() {
    // Replaces links: moves the takeover counter the two tests around it measure.
    let _moving = common::moving_series().await;
    let (node, fp, addr, rt, mut c) = orchestrator_with_transcoder().await;
    let [(_, first)] = &listed(&mut c).await[..] else { panic!("one link") };
    let first = first.clone();

    // A second box with the same id takes the id over...
    let mut other = RawLink::open(&addr, &fp).await;
    let now = listed(&mut c).await;
    assert!(now.len() == 1 && now[0].1 != first, "never two links for one id: {now:?}");
    // ...and the transcoder it replaced links again (after its backoff) and takes it back: the
    // two replace each other, one link at a time (the logs say to give each its own id).
    let Some(ToTranscoder::Replaced { old, new }) = other.next().await else { panic!("replaced in turn") };
    assert_ne!(old, new, "two connections");
    assert_ne!(new, first, "the transcoder linked again, on a new connection");
    assert_eq!(other.next().await, None, "the replaced link ends");
    assert_eq!(listed(&mut c).await, [("t-a".to_string(), new)]);

    // The transcoder still does the work.
    let input = fixture("h264_360p25_baseline_noaudio.ts");
    let o = c.push("s", 0, Some(LADDER), Upload::Full(input), |_| {}).await.expect("push");
    assert!(o.ok(), "{o:?}");
    rt.shutdown_background();
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_transcoder_stops_the_tasks_that_were_failed_over_at_once() {
    // Counts abandoned tasks (and replaces a link): alone, see `common::measuring_series`.
    let _measuring = common::measuring_series().await;
    let (node, fp) = orchestrator().await;
    let addr = node.local_addr().to_string();
    // The transcoder's engine opens the stream's session only once the orchestrator has answered
    // the task's input request: from then on, a replaced link stops the task.
    let reading = Arc::new(AtomicBool::new(false));
    let sessions = {
        let (reading, cpu) = (reading.clone(), SessionFactory::cpu());
        SessionFactory::new("cpu", move |ladder: &zerohop_engine::Ladder| {
            reading.store(true, Ordering::SeqCst);
            cpu.open(ladder)
        })
    };
    let cfg = TranscoderConfig { sessions, ..transcoder_config(&addr, &fp, "t-a", LINK_SECRET) };
    let (rt, _link) = spawn_transcoder(cfg);
    let mut c = connect(&node, &fp, None).await.expect("connect");
    common::wait_for_transcoders(&mut c, 1).await;
    let before = abandoned();

    // A live-paced upload, running on the transcoder: 77 KB in 2 KB pieces, one every 200 ms.
    let mut pusher = connect(&node, &fp, None).await.expect("connect");
    let data = fixture("h264_360p25_baseline_noaudio.ts");
    let (piece, interval) = (2048, Duration::from_millis(200));
    let upload_takes = interval * (data.len().div_ceil(piece) - 1) as u32;
    let upload = Upload::Paced { data, piece, interval };
    let pushed = std::time::Instant::now();
    let push = tokio::spawn(async move { common::push_collect(&mut pusher, "s", 0, upload, || {}).await });
    common::wait_until("the transcoder reads the segment's input", common::EVENT, async || {
        reading.load(Ordering::SeqCst)
    })
    .await;

    // Another link with its id replaces its link and fails the task over: the transcoder stops
    // it while the broadcaster is still uploading, instead of transcoding on for nobody until
    // the upload ends (holding a session all the while).
    let _other = RawLink::open(&addr, &fp).await;
    common::wait_until("the replaced transcoder stops its failed-over task", common::EVENT, async || {
        abandoned() > before
    })
    .await;
    let at = pushed.elapsed();
    // The stop comes about 50 ms after the push began here, under a parallel `cargo test`; the
    // upload takes 7.4 s.
    assert!(at < upload_takes, "stopped at {at:?}, after the upload's end ({upload_takes:?})");
    assert_eq!(abandoned(), before + 1.0, "the one task was stopped, once");
    push.abort();
    rt.shutdown_background();
    node.shutdown().await;
}

/// One HTTP/1.1 request over cleartext (`head`: the request line and any headers, each ending
/// in CRLF; then `body`): the status and the answer's head, lower-cased.
async fn http1(addr: std::net::SocketAddr, head: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    tcp.write_all(format!("{head}Host: localhost\r\nConnection: close\r\n\r\n{body}").as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await.expect("in time").expect("read");
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let headers = answer.split("\r\n\r\n").next().unwrap_or("").to_string();
    (status, headers)
}

/// What schemathesis found (control/tests/contract/schemathesis.sh), kept fixed: over HTTP/1.1 a
/// method the HTTP/2-only endpoints do not serve is 405 with `Allow` (it was 505 for any method),
/// and Livepeer's empty 200s say their content type (they had none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn found_by_schemathesis_405_before_505_and_typed_empty_answers() {
    let node =
        zerohop_control::Node::start(zerohop_control::NodeConfig::new("127.0.0.1:0".parse().expect("addr"), None))
            .await
            .expect("node");
    let addr = node.local_addr();
    for (head, allow) in [
        ("TRACE /v1/transcoders/link HTTP/1.1\r\n", "post"),
        ("GET /v1/transcoders/link HTTP/1.1\r\n", "post"),
        ("PUT /v1/tasks/0/input HTTP/1.1\r\n", "get"),
        ("GET /v1/tasks/0/results HTTP/1.1\r\n", "post"),
    ] {
        let (status, headers) = http1(addr, head, "").await;
        assert_eq!(status, 405, "{head}{headers}");
        assert!(headers.contains(&format!("\r\nallow: {allow}")), "{head}{headers}");
    }
    // The method it serves, over HTTP/1.1: 505, as documented.
    let (status, _) = http1(addr, "POST /v1/transcoders/link HTTP/1.1\r\nContent-Length: 0\r\n", "").await;
    assert_eq!(status, 505);
    // A playlist pushed to Livepeer's API is read and ignored: 200, empty, typed.
    let (status, headers) = http1(addr, "PUT /live/cam/index.m3u8 HTTP/1.1\r\nContent-Length: 7\r\n", "#EXTM3U").await;
    assert_eq!(status, 200, "{headers}");
    assert!(headers.contains("\r\ncontent-type: application/octet-stream"), "{headers}");
    node.shutdown().await;
}

/// Every error code the node can answer with is listed in `doc/openapi.yaml`'s `ErrorCode`, and
/// the spec lists no code the node does not have.
#[test]
fn the_spec_lists_every_error_code() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../doc/openapi.yaml")).expect("spec");
    let start = spec.find("    ErrorCode:").expect("an ErrorCode schema");
    let block = &spec[start..];
    let list = &block[block.find("enum:").expect("its enum")..];
    let listed: BTreeSet<&str> = list
        .lines()
        .skip(1)
        .map_while(|l| l.trim().strip_prefix("- "))
        .map(|c| c.split('#').next().unwrap_or("").trim())
        .collect();
    let known: BTreeSet<&str> = zerohop_control::fault::codes().collect();
    assert_eq!(listed, known, "doc/openapi.yaml's ErrorCode vs the node's codes");
}

/// Each error response of the spec names its codes (in its description); every one of them has
/// that status in the node, and every code a client can get with a 4xx or 503 status is named by
/// the response of its status (500s are the node's own faults, listed in `ErrorCode` only).
#[test]
fn the_spec_gives_every_code_its_status() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../doc/openapi.yaml")).expect("spec");
    let responses = &spec[spec.find("\n  responses:\n").expect("components' responses")..];
    let responses = &responses[..responses.find("\n  schemas:\n").expect("then schemas")];
    let known: BTreeSet<&str> = zerohop_control::fault::codes().collect();
    let mut named = BTreeSet::new();
    for (response, status) in [
        ("BadRequest", 400),
        ("Unauthorized", 401),
        ("Forbidden", 403),
        ("NotFound", 404),
        ("MethodNotAllowed", 405),
        ("UploadStalled", 408),
        ("Conflict", 409),
        ("TooLarge", 413),
        ("UnsupportedInput", 415),
        ("Untranscodable", 422),
        ("TooMany", 429),
        ("Unavailable", 503),
        ("Http2Required", 505),
    ] {
        let at = responses.find(&format!("\n    {response}:\n")).unwrap_or_else(|| panic!("{response}"));
        let description = responses[at..].lines().find(|l| l.trim_start().starts_with("description:")).expect("desc");
        let codes: Vec<&str> = description.split('`').skip(1).step_by(2).filter(|c| known.contains(c)).collect();
        assert!(!codes.is_empty(), "{response} names no code");
        for c in codes {
            let got = zerohop_control::fault::NodeError::from_code(c, "").status().as_u16();
            assert_eq!(got, status, "{c}: the spec's {response} says {status}, the node sends {got}");
            named.insert(c);
        }
    }
    let unnamed: Vec<&str> = known
        .iter()
        .copied()
        .filter(|c| zerohop_control::fault::NodeError::from_code(c, "").status().as_u16() != 500 && !named.contains(c))
        .collect();
    assert!(unnamed.is_empty(), "codes whose status the spec's responses do not name: {unnamed:?}");
}
