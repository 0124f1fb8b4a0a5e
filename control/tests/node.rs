//! A combined node on loopback with real TLS, driven by the real client.

mod common;

use std::time::Duration;

use common::{LADDER, Renditions, connect, error_code, fixture, local, push_collect, start_node};
use http::StatusCode;
use zerohop_control::body::ChannelBody;
use zerohop_control::broadcasters::BroadcasterTokens;
use zerohop_control::headers;
use zerohop_control::relay::SessionFactory;
use zerohop_control::tls;
use zerohop_control::{Client, ClientError, Node, Upload};
use zerohop_engine::probe::decode_video;

async fn node(max_sessions: usize, token: Option<&str>) -> (Node, String) {
    start_node(|cfg| {
        cfg.max_sessions = max_sessions;
        cfg.broadcasters = token.map(|t| BroadcasterTokens::single(t.to_string())).unwrap_or_default();
    })
    .await
}

/// Pushes to stream `s1` and returns the outcome and each rendition's bytes.
async fn push(
    c: &mut Client,
    seq: u64,
    data: Upload,
) -> Result<(zerohop_control::PushOutcome, Renditions), ClientError> {
    push_collect(c, "s1", seq, data, || {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_node_over_tls() {
    // Measures how far this node's segments move the series: alone, as every test here moves
    // them (the recorder is process-wide; see `common::measuring_series`).
    let _measuring = common::measuring_series().await;
    let (node, fp) = node(2, None).await;
    let mut c = connect(&node, &fp, None).await.expect("connect");
    let before = zerohop_control::metrics::render();

    // Renditions over the wire are byte-identical to what the engine makes locally.
    let input = fixture("h264_720p30_main_slices_aac.ts");
    let (o, outs) = push(&mut c, 0, Upload::Full(input.clone())).await.expect("push");
    assert!(o.ok(), "{o:?}");
    assert_eq!(o.renditions, vec!["P360p30fps16x9", "P240p30fps16x9"]);
    let expected = local(input);
    assert_eq!(outs.len(), 2);
    for (i, bytes) in &outs {
        assert!(bytes == &expected[usize::from(*i)], "rendition {i} differs from the local engine output");
        assert_eq!(decode_video(bytes).expect("decode").len(), 30);
    }
    assert_eq!(o.end.as_ref().and_then(|e| e["frames"].as_u64()), Some(30));

    // Streaming, proven by the order of events: a first rendition chunk comes back while the
    // second half of the upload is still held back (the node decodes and encodes while the
    // segment is still arriving). How soon is for the benchmarks to say, not a test.
    let input = fixture("h264_1080p30_high_bframes_aac.ts");
    let (end, outs) = common::push_holding_back_the_end(&c, "s1", 1, input).await;
    assert_eq!(end["status"], "ok", "{end}");
    assert_eq!(decode_video(&outs[&0]).expect("decode").len(), 60);

    // Unsupported and broken input: 4xx with the engine's code; the node keeps serving.
    let mut streamed = 0u32; // answers that had begun (a first result byte) before the error
    for (name, status, code) in [
        ("hevc_320x240.ts", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_codec"),
        ("h264_interlaced.ts", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_interlaced"),
        ("garbage.ts", StatusCode::UNPROCESSABLE_ENTITY, "not_transport_stream"),
        ("corrupt_bitflips.ts", StatusCode::UNPROCESSABLE_ENTITY, "frames_lost"),
    ] {
        match push(&mut c, 2, Upload::Full(fixture(name))).await {
            Err(ClientError::Status { status: s, code: c, message }) => {
                assert_eq!((s, c.as_str()), (status, code), "{name}: {message}");
            }
            Ok((o, _)) => {
                // Damage found after streaming began: an in-band error and an error trailer.
                assert!(!o.ok(), "{name} must not pass");
                assert_eq!(error_code(&o), Some(code), "{name}");
                streamed += 1;
            }
            Err(e) => panic!("{name}: {e}"),
        }
    }
    let (o, _) =
        push(&mut c, 3, Upload::Full(fixture("h264_360p25_baseline_noaudio.ts"))).await.expect("after bad input");
    assert!(o.ok());

    // The series moved by exactly this node's segments: 3 transcoded, 4 failed (one per
    // reason), a first byte for each answer that began.
    let (status, body) = c.get("/metrics").await.expect("metrics");
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8_lossy(&body);
    let moved = |name: &str| common::series_in(&text, name) - common::series_in(&before, name);
    assert_eq!(moved("zerohop_segments_transcoded_total"), 3.0, "{text}");
    assert_eq!(moved("zerohop_segments_failed_total"), 4.0, "{text}");
    for reason in ["unsupported_codec", "unsupported_interlaced", "not_transport_stream", "frames_lost"] {
        assert_eq!(moved(&format!("zerohop_segments_failed_total{{reason=\"{reason}\"}}")), 1.0, "{reason}: {text}");
    }
    assert_eq!(moved("zerohop_time_to_first_byte_seconds_count"), 3.0 + f64::from(streamed), "{text}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pin_token_and_capacity_are_refused() {
    let _moving = common::moving_series().await; // counts segments (see combined_node_over_tls)
    let (node, fp) = node(1, Some("s3cret")).await;
    // A different pinned certificate: the handshake fails, nothing is sent.
    let other = tls::self_signed(&["localhost".into()]).expect("cert").fingerprint();
    assert_ne!(other, fp);
    match connect(&node, &other, Some("s3cret")).await {
        Err(ClientError::CertificateMismatch) => {}
        other => panic!("expected a certificate mismatch, got {other:?}"),
    }
    // Missing or wrong token: 401.
    for token in [None, Some("nope")] {
        let mut c = connect(&node, &fp, token).await.expect("connect");
        match push(&mut c, 0, Upload::Full(fixture("h264_360p25_baseline_noaudio.ts"))).await {
            Err(ClientError::Status { status, code, .. }) => {
                assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"))
            }
            other => panic!("expected 401, got {other:?}"),
        }
    }
    // At capacity (1 session): a second concurrent segment is refused at once with Retry-After.
    let mut slow = connect(&node, &fp, Some("s3cret")).await.expect("connect");
    let mut fast = connect(&node, &fp, Some("s3cret")).await.expect("connect");
    let input = fixture("h264_720p30_main_slices_aac.ts");
    let paced = Upload::Paced { data: input.clone(), piece: 8 * 1024, interval: Duration::from_millis(50) };
    let first = tokio::spawn(async move { push(&mut slow, 0, paced).await.map(|(o, _)| o.ok()) });
    let mut watch = connect(&node, &fp, Some("s3cret")).await.expect("connect");
    common::wait_until("the first segment holds the one session", common::EVENT, async || {
        common::transcoder_list(&mut watch).await[0]["load"] == 1
    })
    .await;
    let started = std::time::Instant::now();
    match push(&mut fast, 1, Upload::Full(input)).await {
        Err(ClientError::Status { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "at_capacity"));
            eprintln!("503 answered in {:?}", started.elapsed());
        }
        other => panic!("expected 503, got {other:?}"),
    }
    assert!(first.await.expect("join").expect("slow push"), "the admitted segment completes");
    node.shutdown().await;
}

/// Named broadcaster tokens: a stream belongs to the token that created it, each token holds
/// at most its limit of live streams, and a reload revokes a token without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcaster_tokens_own_their_streams_within_their_limits() {
    let _moving = common::moving_series().await; // counts segments (see combined_node_over_tls)
    let (node, fp) = start_node(|cfg| {
        cfg.broadcasters = BroadcasterTokens::parse_file("studio st-token 1\nlab lab-token\n").expect("tokens");
    })
    .await;
    let input = fixture("h264_360p25_baseline_noaudio.ts");
    let mut studio = connect(&node, &fp, Some("st-token")).await.expect("connect");
    let mut lab = connect(&node, &fp, Some("lab-token")).await.expect("connect");
    async fn push_stream(c: &mut Client, stream: &str, data: bytes::Bytes) -> Result<bool, ClientError> {
        c.push(stream, 0, Some(LADDER), Upload::Full(data), |_| {}).await.map(|o| o.ok())
    }
    let refused = |r: Result<bool, ClientError>| match r {
        Err(ClientError::Status { status, code, .. }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(push_stream(&mut studio, "a", input.clone()).await.expect("studio's first stream"));
    assert_eq!(
        refused(push_stream(&mut studio, "b", input.clone()).await),
        (StatusCode::TOO_MANY_REQUESTS, "stream_limit".to_string()),
        "studio may hold 1 live stream"
    );
    assert_eq!(
        refused(push_stream(&mut lab, "a", input.clone()).await),
        (StatusCode::FORBIDDEN, "stream_owned".to_string()),
        "another token's stream"
    );
    assert_eq!(lab.end_stream("a").await.expect("delete"), StatusCode::FORBIDDEN, "only the owner ends a stream");
    for i in 0..3 {
        assert!(push_stream(&mut lab, &format!("lab{i}"), input.clone()).await.expect("lab has no limit"));
    }
    // Ending a stream frees its place.
    assert_eq!(studio.end_stream("a").await.expect("delete"), StatusCode::OK);
    assert!(push_stream(&mut studio, "b", input.clone()).await.expect("a place was freed"));
    // The status endpoint needs a token too.
    let mut anonymous = connect(&node, &fp, None).await.expect("connect");
    assert_eq!(anonymous.get("/v1/transcoders").await.expect("get").0, StatusCode::UNAUTHORIZED);
    let (status, body) = lab.get("/v1/transcoders").await.expect("get");
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["transcoders"][0]["name"], "local");
    // Revoked by a reload: refused from the next request on; the other token is unaffected.
    node.reload_broadcasters(BroadcasterTokens::parse_file("lab lab-token\n").expect("tokens"));
    assert_eq!(
        refused(push_stream(&mut studio, "b", input.clone()).await),
        (StatusCode::UNAUTHORIZED, "unauthorized".to_string())
    );
    assert!(push_stream(&mut lab, "lab0", input.clone()).await.expect("lab goes on"));
    node.shutdown().await;
}

/// A GPU at its encoder-session limit is capacity, not a node fault: 503 with Retry-After and
/// the engine's code, so the broadcaster retries (here or elsewhere) instead of giving up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_session_limit_is_a_503_to_retry() {
    let _moving = common::moving_series().await; // counts a failed segment (see combined_node_over_tls)
    let (node, fp) = start_node(|cfg| {
        cfg.sessions = SessionFactory::new("cuda:0", |_: &zerohop_engine::Ladder| {
            Err(zerohop_engine::TranscodeError::Device {
                code: "gpu_session_limit",
                api: "nvEncOpenEncodeSessionEx".into(),
                message: "the GPU has no free encoder session".into(),
            })
        });
    })
    .await;
    let c = connect(&node, &fp, None).await.expect("connect");
    let req = c
        .request(http::Method::POST, "/v1/streams/s1/segments/0")
        .header(headers::PROFILES, LADDER)
        .body(ChannelBody::full(fixture("h264_360p25_baseline_noaudio.ts")))
        .expect("request");
    let resp = c.send(req).await.expect("send");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("1"));
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["code"], "gpu_session_limit", "{v}");
    node.shutdown().await;
}
