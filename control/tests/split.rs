//! Split mode on loopback with TLS: an orchestrator with no local engine and remote transcoders
//! that dial in, each on its own runtime so it can be killed like a process.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Renditions, error_code, fixture, local, push_collect, transcoder_config, transport};
use zerohop_control::headers;
use zerohop_control::node::TranscoderSecrets;
use zerohop_control::tls::{self, Trust};
use zerohop_control::transcoder::{self, LinkError, TranscoderConfig};
use zerohop_control::{Client, ClientError, Node, PushOutcome, Transport, Upload};
use zerohop_engine::probe::decode_video;

const SECRET: &str = "correct-horse-battery-staple";

async fn orchestrator() -> (Node, String) {
    common::orchestrator_admitting(&format!("t-a {SECRET}\nt-b {SECRET}\n# t-c revoked\n")).await
}

/// A transcoder on its own runtime; `shutdown_background` kills it like a process.
fn spawn_transcoder(
    node: &Node,
    fp: &str,
    id: &str,
    secret: &str,
) -> (tokio::runtime::Runtime, tokio::task::JoinHandle<Result<(), LinkError>>) {
    spawn_transcoder_max(node, fp, id, secret, transcoder::CPU_MAX_OUTPUT)
}

fn spawn_transcoder_max(
    node: &Node,
    fp: &str,
    id: &str,
    secret: &str,
    max_output: (u32, u32),
) -> (tokio::runtime::Runtime, tokio::task::JoinHandle<Result<(), LinkError>>) {
    let cfg = TranscoderConfig { max_output, ..transcoder_config(&node.local_addr().to_string(), fp, id, secret) };
    common::spawn_transcoder(cfg)
}

async fn push(
    c: &mut Client,
    seq: u64,
    up: Upload,
    on_chunk: impl Fn(),
) -> Result<(PushOutcome, Renditions), ClientError> {
    push_collect(c, "live", seq, up, on_chunk).await
}

/// Waits until transcoder `id`, and no other, is linked; then pushes `data` as segment `seq`.
async fn push_when_linked(c: &mut Client, id: &str, seq: u64, data: Bytes) -> (PushOutcome, Renditions) {
    common::wait_until(&format!("{id} (alone) is linked"), common::EVENT, async || {
        let list = common::transcoder_list(c).await;
        list.len() == 1 && list[0]["name"] == id
    })
    .await;
    push(c, seq, Upload::Full(data), || {}).await.expect("push")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_transcoders_stream_identical_renditions_and_fail_over() {
    // Measures the retry counter and the transcoders' open-streams gauge: alone, as the other
    // tests here that run segments on transcoders move them too (the recorder is process-wide;
    // see `common::measuring_series`).
    let _measuring = common::measuring_series().await;
    let (node, fp) = orchestrator().await;
    let mut c = Client::connect(&node.local_addr().to_string(), &transport(&fp), None).await.expect("connect");

    // A wrong secret and a revoked id end the transcoder with a clear error, no retry loop.
    for (id, secret) in [("t-a", "wrong"), ("t-c", SECRET)] {
        let (rt, h) = spawn_transcoder(&node, &fp, id, secret);
        let r = tokio::time::timeout(Duration::from_secs(10), h).await.expect("no retry loop").expect("join");
        assert!(matches!(r, Err(LinkError::BadSecret { .. })), "{id}: {r:?}");
        rt.shutdown_background();
    }
    // A certificate that does not match the pin: refused, no retry loop.
    let (rt, h) = spawn_transcoder(&node, &tls::self_signed(&["x".into()]).expect("c").fingerprint(), "t-a", SECRET);
    let r = tokio::time::timeout(Duration::from_secs(10), h).await.expect("no retry loop").expect("join");
    assert!(matches!(r, Err(LinkError::CertificateMismatch)), "{r:?}");
    rt.shutdown_background();

    // Through a remote transcoder: byte-identical to the engine run locally.
    let (rt_a, _a) = spawn_transcoder(&node, &fp, "t-a", SECRET);
    let input = fixture("h264_720p30_main_slices_aac.ts");
    let (o, outs) = push_when_linked(&mut c, "t-a", 0, input.clone()).await;
    assert!(o.ok(), "{o:?}");
    let expected = local(input.clone());
    for (i, bytes) in &outs {
        assert!(bytes == &expected[usize::from(*i)], "rendition {i} differs from the local engine output");
    }

    // Streaming through the hop, proven by the order of events: a first rendition chunk reaches
    // the broadcaster while the second half of the upload is still held back.
    let (end, outs) =
        common::push_holding_back_the_end(&c, "live", 10, fixture("h264_1080p30_high_bframes_aac.ts")).await;
    assert_eq!(end["status"], "ok", "{end}");
    assert_eq!(decode_video(&outs[&0]).expect("decode").len(), 60);

    // Kill the transcoder before any result byte was sent: the segment completes on another.
    let (rt_b, _b) = spawn_transcoder(&node, &fp, "t-b", SECRET);
    common::wait_for_transcoders(&mut c, 2).await;
    let retries = common::series("zerohop_segment_retries_total");
    // A slow upload (a few KB per 50 ms) keeps the first picture from completing for a while.
    let slow = Upload::Paced { data: input.clone(), piece: 2048, interval: Duration::from_millis(50) };
    let pusher = {
        let addr = node.local_addr().to_string();
        let fp = fp.clone();
        tokio::spawn(async move {
            let mut c = Client::connect(&addr, &transport(&fp), None).await.expect("connect");
            push(&mut c, 1, slow, || {}).await
        })
    };
    // Stream affinity puts `live` on t-a; once the segment is there, kill t-a like a process.
    let on = common::wait_until("the segment is placed", common::EVENT, async || {
        let list = common::transcoder_list(&mut c).await;
        list.iter().find(|t| t["tasks"] == 1).map(|t| t["name"].clone())
    })
    .await;
    assert_eq!(on, "t-a", "stream affinity");
    rt_a.shutdown_background();
    let (o, outs) = pusher.await.expect("join").expect("push completes on the other transcoder");
    assert!(o.ok(), "{o:?}");
    for (i, bytes) in &outs {
        assert!(bytes == &expected[usize::from(*i)], "retried rendition {i} must be complete and identical");
        assert_eq!(decode_video(bytes).expect("decode").len(), 30);
    }
    let retried = common::series("zerohop_segment_retries_total") - retries;
    assert_eq!(retried, 1.0, "the segment was retried, once");

    // Kill the transcoder after result bytes were sent: an error record, never truncated output
    // passed off as complete.
    let (killed_tx, killed_rx) = std::sync::mpsc::channel::<()>();
    let rt_b = std::sync::Arc::new(parking_lot::Mutex::new(Some(rt_b)));
    let killer = rt_b.clone();
    let slow = Upload::Paced { data: input.clone(), piece: 8192, interval: Duration::from_millis(40) };
    let r = push(&mut c, 2, slow, move || {
        if let Some(rt) = killer.lock().take() {
            rt.shutdown_background();
            let _ = killed_tx.send(());
        }
    })
    .await;
    assert!(killed_rx.try_recv().is_ok(), "the transcoder was killed after the first chunk");
    match r {
        Ok((o, _)) => {
            assert!(!o.ok());
            let code = error_code(&o);
            assert_eq!(code, Some("transcoder_lost"), "{o:?}");
        }
        Err(e) => panic!("expected an in-band error, got {e}"),
    }
    // The orchestrator keeps serving once a transcoder is back.
    // (This one advertises outputs up to 1280x720 only, as a small GPU might.)
    let (rt_c, _c) = spawn_transcoder_max(&node, &fp, "t-a", SECRET, (1280, 720));
    let (o, _) = push_when_linked(&mut c, "t-a", 3, fixture("h264_360p25_baseline_noaudio.ts")).await;
    assert!(o.ok());
    // (Set by each transcoder of this process; this one is the only one left.)
    let open_streams = || common::series("zerohop_transcoder_streams_open");
    assert_eq!(open_streams(), 1.0, "the transcoder holds the stream's sessions");

    // Capabilities: no connected transcoder makes 1080p; a ladder asking for it is refused before
    // any upload is consumed, with a code that says why.
    let fhd = r#"[{"name":"1080p","width":1920,"height":1080,"bitrate":"6M"}]"#;
    let r = c.push("live", 4, Some(fhd), Upload::Full(input.clone()), |_| {}).await;
    match r {
        Err(ClientError::Status { status, code, message }) => {
            assert_eq!((status, code.as_str()), (http::StatusCode::UNPROCESSABLE_ENTITY, "no_capable_transcoder"));
            assert!(message.contains("1920x1080"), "{message}");
        }
        other => panic!("expected 422, got {other:?}"),
    }

    // End of stream reaches the remote transcoder, which frees the sessions at once.
    assert_eq!(c.end_stream("live").await.expect("delete"), http::StatusCode::OK);
    common::wait_until("DELETE /v1/streams/live frees the transcoder's sessions", common::EVENT, async || {
        open_streams() == 0.0
    })
    .await;
    rt_c.shutdown_background();
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_revokes_a_live_transcoder_and_failed_auth_is_rate_limited() {
    // Runs a segment on a transcoder (see the first test).
    let _moving = common::moving_series().await;
    let (node, fp) = orchestrator().await;
    let (rt, h) = spawn_transcoder(&node, &fp, "t-a", SECRET);
    let mut c = Client::connect(&node.local_addr().to_string(), &transport(&fp), None).await.expect("connect");
    let (o, _) = push_when_linked(&mut c, "t-a", 0, fixture("h264_360p25_baseline_noaudio.ts")).await;
    assert!(o.ok());
    // The operator removes t-a's line and sends SIGHUP: its live link is closed, its redial is
    // refused, and the transcoder stops with a clear error instead of retrying.
    let closed =
        node.reload_transcoders(TranscoderSecrets::parse_secrets(&format!("t-b {SECRET}\n")).expect("secrets"));
    assert_eq!(closed, 1);
    let r = tokio::time::timeout(Duration::from_secs(10), h).await.expect("stops").expect("join");
    assert!(matches!(r, Err(LinkError::BadSecret { .. })), "{r:?}");
    rt.shutdown_background();

    // Guessing secrets: five failures from one address (the revoked transcoder's redial was
    // one), then 429 with Retry-After, even for the right secret, until the minute has passed.
    let link = |secret: &'static str| {
        let req = c
            .request(http::Method::POST, "/v1/transcoders/link")
            .header(headers::TRANSCODER_ID, "t-b")
            .header(http::header::AUTHORIZATION, format!("Bearer {secret}"))
            .body(zerohop_control::body::ChannelBody::empty())
            .expect("request");
        c.send(req)
    };
    let mut refused = 0;
    let last = loop {
        let s = link("guess").await.expect("send").status();
        if s != http::StatusCode::UNAUTHORIZED {
            break s;
        }
        refused += 1;
        assert!(refused <= 5, "still checking secrets after {refused} failures");
    };
    assert_eq!(last, http::StatusCode::TOO_MANY_REQUESTS);
    assert!(refused >= 1);
    let r = link(SECRET).await.expect("send");
    assert_eq!(r.status(), http::StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get(http::header::RETRY_AFTER).is_some());
    node.shutdown().await;
}

/// SIGHUP with a malformed secrets file: the error names the file and the line, the old table
/// stays (its transcoders keep working), and a later good file is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_from_a_malformed_file_keeps_the_old_secrets() {
    // Runs a segment on a transcoder (see the first test).
    let _moving = common::moving_series().await;
    let (node, fp) = orchestrator().await;
    let dir = std::env::temp_dir().join(format!("zerohop-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("transcoders");
    std::fs::write(&file, format!("t-a {SECRET}\nt-b:{SECRET}\n")).expect("write");
    let e = node.reload_transcoders_from(Some(&file), None, None).expect_err("malformed");
    assert!(e.to_string().starts_with(&format!("{}, line 2: one field", file.display())), "{e}");
    assert!(!e.to_string().contains(SECRET), "{e}");
    // The old table still admits t-b.
    let (rt, h) = spawn_transcoder(&node, &fp, "t-b", SECRET);
    let mut c = Client::connect(&node.local_addr().to_string(), &transport(&fp), None).await.expect("connect");
    let (o, _) = push_when_linked(&mut c, "t-b", 0, fixture("h264_360p25_baseline_noaudio.ts")).await;
    assert!(o.ok(), "{o:?}");
    // A good file without t-b is taken: its live link is closed and its redial refused.
    std::fs::write(&file, format!("t-a {SECRET}\n")).expect("write");
    assert_eq!(node.reload_transcoders_from(Some(&file), None, None).expect("good file"), 1);
    let r = tokio::time::timeout(Duration::from_secs(10), h).await.expect("stops").expect("join");
    assert!(matches!(r, Err(LinkError::BadSecret { .. })), "{r:?}");
    rt.shutdown_background();
    let _ = std::fs::remove_dir_all(&dir);
    node.shutdown().await;
}

/// Mutual TLS instead of a secret: a transcoder whose client certificate is pinned for its id
/// registers and transcodes; another certificate, or none, is refused (no retry loop); removing
/// the pin and reloading closes the live link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_the_pinned_client_certificate() {
    // Runs a segment on a transcoder (see the first test).
    let _moving = common::moving_series().await;
    let (node, fp) = orchestrator().await;
    let mine = tls::self_signed(&["t-m".into()]).expect("client cert");
    let other = tls::self_signed(&["t-m".into()]).expect("another cert");
    let mut secrets = TranscoderSecrets::parse_secrets(&format!("t-a {SECRET}\n")).expect("secrets");
    secrets.certs =
        TranscoderSecrets::parse_certs_file(&format!("# mutual TLS\nt-m {}\n", mine.fingerprint())).expect("certs");
    assert_eq!(node.reload_transcoders(secrets.clone()), 0);
    let spawn_mtls = |identity: Option<&tls::Identity>| {
        let transport = match identity {
            Some(id) => Transport::MutualTls {
                trust: Trust::Pin(fp.clone()),
                server_name: "localhost".into(),
                identity: std::sync::Arc::new(id.clone()),
            },
            None => transport(&fp),
        };
        // No secret: the certificate is the credential.
        let cfg = TranscoderConfig { transport, ..transcoder_config(&node.local_addr().to_string(), &fp, "t-m", "") };
        common::spawn_transcoder(cfg)
    };
    // Another certificate, or none: refused, and the transcoder stops with a clear error.
    for identity in [Some(&other), None] {
        let (rt, h) = spawn_mtls(identity);
        let r = tokio::time::timeout(Duration::from_secs(10), h).await.expect("no retry loop").expect("join");
        assert!(matches!(r, Err(LinkError::BadSecret { .. })), "{r:?}");
        rt.shutdown_background();
    }
    // The pinned one: registers and transcodes, byte-identical to the local engine.
    let (rt, h) = spawn_mtls(Some(&mine));
    let mut c = Client::connect(&node.local_addr().to_string(), &transport(&fp), None).await.expect("connect");
    let input = fixture("h264_360p25_baseline_noaudio.ts");
    let (o, outs) = push_when_linked(&mut c, "t-m", 0, input.clone()).await;
    assert!(o.ok(), "{o:?}");
    let expected = local(input);
    for (i, bytes) in &outs {
        assert!(bytes == &expected[usize::from(*i)], "rendition {i} differs");
    }
    // The pin is removed (SIGHUP): the live link is closed and the redial refused.
    secrets.certs.clear();
    assert_eq!(node.reload_transcoders(secrets), 1);
    let r = tokio::time::timeout(Duration::from_secs(10), h).await.expect("stops").expect("join");
    assert!(matches!(r, Err(LinkError::BadSecret { .. })), "{r:?}");
    rt.shutdown_background();
    node.shutdown().await;
}

/// What a transcoder states it runs on reaches the orchestrator's `GET /v1/transcoders`: an
/// operator sees which boxes encode on the CPU because their GPUs have no NVENC. The factory
/// here is the CPU engine with a stated H100 (a description only: this test checks that the
/// statement travels, not a GPU).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcoders_state_their_gpus_and_where_they_encode() {
    use zerohop_control::relay::{DeviceCaps, SessionFactory};
    let (node, fp) = orchestrator().await;
    let h100 = DeviceCaps::gpu("cuda:0", "NVIDIA H100 80GB HBM3", false);
    let cfg = TranscoderConfig {
        max_sessions: 2,
        sessions: SessionFactory::cpu().with_devices(vec![h100.clone()]),
        ..transcoder_config(&node.local_addr().to_string(), &fp, "t-a", SECRET)
    };
    let (rt, _h) = common::spawn_transcoder(cfg);
    let mut c = Client::connect(&node.local_addr().to_string(), &transport(&fp), None).await.expect("connect");
    let listed = common::wait_until("the transcoder is linked", common::EVENT, async || {
        let list = common::transcoder_list(&mut c).await;
        (!list.is_empty()).then_some(list)
    })
    .await;
    let t = &listed[0];
    assert_eq!(t["name"], "t-a", "{listed:?}");
    assert_eq!(t["backend"], "cpu");
    assert_eq!(t["capacity"], 2);
    let gpus: Vec<DeviceCaps> = serde_json::from_value(t["gpus"].clone()).expect("gpus");
    assert_eq!(gpus, vec![h100]);
    rt.shutdown_background();
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_mismatch_is_retried_by_default_and_a_rotation_accepts_either_certificate() {
    // Runs a segment on a transcoder (see the first test).
    let _moving = common::moving_series().await;
    let (node, fp) = orchestrator().await;
    let stranger = tls::self_signed(&["x".into()]).expect("c").fingerprint();
    // By default a transcoder whose pin matches nothing keeps dialling (with backoff, logging an
    // error) instead of ending: the orchestrator can be fixed without touching the transcoder.
    let cfg = TranscoderConfig {
        on_pin_mismatch: transcoder::PinMismatch::Retry,
        ..transcoder_config(&node.local_addr().to_string(), &stranger, "t-a", SECRET)
    };
    let (rt, h) = common::spawn_transcoder(cfg);
    assert!(tokio::time::timeout(Duration::from_secs(3), h).await.is_err(), "still retrying after 3 s");
    rt.shutdown_background();
    // Two pins, the old one first: the orchestrator's certificate is one of them, so it links.
    let (rt, _h) = spawn_transcoder(&node, &format!("{stranger},{fp}"), "t-a", SECRET);
    let mut c = Client::connect(&node.local_addr().to_string(), &transport(&fp), None).await.expect("connect");
    let (o, _) = push_when_linked(&mut c, "t-a", 0, fixture("h264_360p25_baseline_noaudio.ts")).await;
    assert!(o.ok(), "{o:?}");
    rt.shutdown_background();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_takes_the_previous_and_next_link_version_and_names_both_when_it_refuses() {
    use http_body_util::BodyExt;
    let (node, fp) = orchestrator().await;
    let mut c = Client::connect(&node.local_addr().to_string(), &transport(&fp), None).await.expect("connect");
    let ours = zerohop_control::link::VERSION;
    for (theirs, taken) in [(Some(ours - 1), true), (Some(ours + 1), true), (None, true), (Some(ours + 2), false)] {
        let mut req = c
            .request(http::Method::POST, "/v1/transcoders/link")
            .header(headers::TRANSCODER_ID, "t-b")
            .header(http::header::AUTHORIZATION, format!("Bearer {SECRET}"))
            .header(headers::CAPACITY, 1);
        if let Some(v) = theirs {
            req = req.header(headers::LINK_VERSION, v);
        }
        let (_keep, body) = zerohop_control::body::ChannelBody::channel(1);
        let resp = c.send(req.body(body).expect("request")).await.expect("answer");
        let status = resp.status();
        if taken {
            assert_eq!(status, http::StatusCode::OK, "version {theirs:?}");
            drop((resp, _keep)); // the link ends; once it is gone the next one may take the id
            common::wait_for_transcoders(&mut c, 0).await;
        } else {
            let text =
                String::from_utf8_lossy(&resp.into_body().collect().await.expect("body").to_bytes()).into_owned();
            assert_eq!(status, http::StatusCode::BAD_REQUEST, "{text}");
            assert!(text.contains("link_version_unsupported"), "{text}");
            assert!(
                text.contains(&format!("version {}", ours + 2)) && text.contains(&format!("version {ours}")),
                "{text}"
            );
        }
    }
}
