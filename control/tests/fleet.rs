//! A transcoder serving two orchestrators at once: one link each, one capacity shared between
//! them (a segment from one counts against what the other may send), and nothing lost when
//! either orchestrator dies.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{fixture, local, push_collect, transcoder_config, transcoders, transport};
use zerohop_control::transcoder::{self, Shared};
use zerohop_control::{Client, ClientError, Node, Upload};

const SECRET: &str = "fleet-secret";

async fn orchestrator() -> (Node, String) {
    common::orchestrator_admitting(&format!("t-fleet {SECRET}\n")).await
}

/// A push that waits out the 503s of a node whose transcoder has not linked yet.
async fn push_ok(c: &mut Client, stream: &str, seq: u64, data: Upload) -> common::Renditions {
    for _ in 0..200 {
        match push_collect(c, stream, seq, data.clone(), || {}).await {
            Err(ClientError::Status { status, .. }) if status == http::StatusCode::SERVICE_UNAVAILABLE => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Ok((o, outs)) => {
                assert!(o.ok(), "{o:?}");
                return outs;
            }
            Err(e) => panic!("push: {e}"),
        }
    }
    panic!("no capacity within 5 s");
}

/// The load `GET /v1/transcoders` reports for the transcoder.
async fn reported_load(c: &mut Client) -> u64 {
    let (_, body) = c.get("/v1/transcoders").await.expect("status");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    v["transcoders"][0]["load"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_transcoder_serves_two_orchestrators_with_one_capacity_and_survives_either_dying() {
    // A on its own runtime, so it can die like a killed process (its sockets closed at once).
    let rt_a = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    let (a, fp_a) = rt_a.spawn(orchestrator()).await.expect("A starts");
    let (b, fp_b) = orchestrator().await;
    let configs = vec![
        transcoder_config(&a.local_addr().to_string(), &fp_a, "t-fleet", SECRET),
        transcoder_config(&b.local_addr().to_string(), &fp_b, "t-fleet", SECRET),
    ];
    let shared = Shared::default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let links = rt.spawn(transcoder::run_all(configs, stop, shared.clone()));

    let mut ca = Client::connect(&a.local_addr().to_string(), &transport(&fp_a), None).await.expect("a");
    let mut cb = Client::connect(&b.local_addr().to_string(), &transport(&fp_b), None).await.expect("b");
    let input = fixture("h264_360p25_baseline_noaudio.ts");
    let expected = local(input.clone());
    for c in [&mut ca, &mut cb] {
        let outs = push_ok(c, "s", 0, Upload::Full(input.clone())).await;
        for (i, bytes) in &outs {
            assert!(bytes == &expected[usize::from(*i)], "identical to the local engine");
        }
    }
    assert_eq!(shared.linked(), 2);
    // The load report that B's segment ended may still be on its way to A (the load falls when
    // the results are answered): until A hears it, A sees no room.
    for _ in 0..200 {
        if reported_load(&mut ca).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A slow upload to A holds the transcoder's one session: B sees that load on its link.
    let slow = Upload::Paced { data: input.clone(), piece: 4096, interval: Duration::from_millis(20) };
    let mut ca2 = Client::connect(&a.local_addr().to_string(), &transport(&fp_a), None).await.expect("a");
    let running = tokio::spawn(async move { push_collect(&mut ca2, "slow", 0, slow, || {}).await });
    let mut seen = false;
    for _ in 0..200 {
        if reported_load(&mut cb).await == 1 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "B is told of the segment A sent");
    let (o, _) = running.await.expect("join").expect("slow push");
    assert!(o.ok(), "{o:?}");

    // A dies: B keeps its link and its service; the transcoder redials A on its own.
    drop(a);
    rt_a.shutdown_background();
    let outs = push_ok(&mut cb, "s", 1, Upload::Full(Bytes::clone(&input))).await;
    assert_eq!(outs.len(), expected.len());
    assert_eq!(transcoders(&mut cb).await, 1);
    for _ in 0..100 {
        if shared.linked() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(shared.linked(), 1, "A's link is gone, B's lives");

    stop_tx.send(true).expect("stop");
    let r = tokio::time::timeout(Duration::from_secs(10), links).await.expect("links end").expect("join");
    assert!(r.is_ok(), "{r:?}");
    b.shutdown().await;
    rt.shutdown_background();
}
