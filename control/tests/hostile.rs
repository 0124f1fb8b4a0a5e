//! Untrusted bytes and misbehaving broadcasters through the real HTTP/2 + TLS API of a combined
//! node: every bad segment gets a typed code and a status that says whose fault it is, a good
//! segment in flight at the same time is unaffected, bursts beyond capacity are refused at once,
//! and a broadcaster that disconnects mid-response gives its session back.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{LADDER, Renditions, error_code, fixture, local, push_collect, start_node, transport};
use http::StatusCode;
use zerohop_control::framing::Kind;
use zerohop_control::{Client, ClientError, Node, PushOutcome, Transport, Upload};
use zerohop_engine::probe::decode_video;

async fn start(max_sessions: usize, max_bytes: u64) -> (Node, Transport) {
    let (node, fp) = start_node(|cfg| {
        cfg.max_sessions = max_sessions;
        cfg.max_segment_bytes = max_bytes;
    })
    .await;
    (node, transport(&fp))
}

async fn push(c: &mut Client, stream: &str, seq: u64, data: Upload) -> Result<(PushOutcome, Renditions), ClientError> {
    push_collect(c, stream, seq, data, || {}).await
}

/// The in-process engine's load on this node (`GET /v1/transcoders`: its own figure, not the
/// process-wide gauge that every node of this test binary sets).
async fn local_load(c: &mut Client) -> u64 {
    let list = common::transcoder_list(c).await;
    let local = list.iter().find(|t| t["local"] == true).unwrap_or_else(|| panic!("no local engine: {list:?}"));
    local["load"].as_u64().expect("load")
}

/// Waits until the node's sessions are all free again (a cut or abandoned segment's session
/// comes back), then pushes `data`, which must be served at once.
async fn push_when_free(c: &mut Client, data: Bytes) {
    common::wait_until("the node's sessions are free again", common::EVENT, async || local_load(c).await == 0).await;
    let (o, _) = push(c, "next", 0, Upload::Full(data)).await.expect("served once the node is free");
    assert!(o.ok(), "{o:?}");
}

const PACKET: usize = 188;

fn pid(p: &[u8]) -> u16 {
    (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2])
}

/// The segment without the packets of `pids`.
fn strip(data: &[u8], pids: &[u16]) -> Bytes {
    Bytes::from(data.chunks(PACKET).filter(|p| !pids.contains(&pid(p))).flatten().copied().collect::<Vec<u8>>())
}

fn read_ts(b: &[u8]) -> u64 {
    (u64::from(b[0] & 0x0e) << 29)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] & 0xfe) << 14)
        | (u64::from(b[3]) << 7)
        | (u64::from(b[4]) >> 1)
}

fn write_ts(b: &mut [u8], v: u64) {
    b[0] = (b[0] & 0xf1) | (((v >> 30) as u8 & 0x07) << 1);
    b[1] = (v >> 22) as u8;
    b[2] = (b[2] & 0x01) | (((v >> 15) as u8) << 1);
    b[3] = (v >> 7) as u8;
    b[4] = (b[4] & 0x01) | ((v as u8) << 1);
}

/// Every PTS, DTS and PCR moved by `offset` ticks modulo 2^33 (the 33-bit wrap).
fn shift_timestamps(data: &[u8], offset: u64) -> Bytes {
    const WRAP: u64 = 1 << 33;
    let mut out = data.to_vec();
    for p in out.chunks_mut(PACKET) {
        let afc = (p[3] >> 4) & 3;
        let mut at = 4;
        if afc & 2 != 0 {
            let len = usize::from(p[4]);
            if len > 0 && p[5] & 0x10 != 0 {
                // PCR base: 33 bits from byte 6.
                let b = &mut p[6..12];
                let base = (u64::from(b[0]) << 25)
                    | (u64::from(b[1]) << 17)
                    | (u64::from(b[2]) << 9)
                    | (u64::from(b[3]) << 1)
                    | (u64::from(b[4]) >> 7);
                let base = (base + offset) % WRAP;
                b[0] = (base >> 25) as u8;
                b[1] = (base >> 17) as u8;
                b[2] = (base >> 9) as u8;
                b[3] = (base >> 1) as u8;
                b[4] = (b[4] & 0x7f) | (((base & 1) as u8) << 7);
            }
            at = 5 + len;
        }
        let pusi = p[1] & 0x40 != 0;
        if afc & 1 == 0 || !pusi || at + 14 > PACKET || p[at..at + 3] != [0, 0, 1] || p[at + 3] < 0xbc {
            continue;
        }
        let flags = p[at + 7] >> 6;
        if flags & 2 != 0 {
            let v = (read_ts(&p[at + 9..]) + offset) % WRAP;
            write_ts(&mut p[at + 9..], v);
        }
        if flags == 3 {
            let v = (read_ts(&p[at + 14..]) + offset) % WRAP;
            write_ts(&mut p[at + 14..], v);
        }
    }
    Bytes::from(out)
}

/// Drops every `n`th packet of `pid` (continuity-counter gaps, lost slices).
fn drop_packets(data: &[u8], of: u16, n: usize) -> Bytes {
    let mut seen = 0;
    Bytes::from(
        data.chunks(PACKET)
            .filter(|p| {
                if pid(p) != of {
                    return true;
                }
                seen += 1;
                seen % n != 0
            })
            .flatten()
            .copied()
            .collect::<Vec<u8>>(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_segment_gets_a_typed_code_and_a_good_one_beside_it_is_unaffected() {
    let (node, t) = start(4, 8 << 20).await;
    let addr = node.local_addr().to_string();
    let good_input = fixture("h264_720p30_main_slices_aac.ts");
    let expected = local(good_input.clone());
    // A good segment streams slowly on its own stream for the whole test.
    let good = {
        let (addr, t, data) = (addr.clone(), t.clone(), good_input.clone());
        tokio::spawn(async move {
            let mut c = Client::connect(&addr, &t, None).await.expect("connect");
            let paced = Upload::Paced { data, piece: 4096, interval: Duration::from_millis(25) };
            push(&mut c, "good", 0, paced).await
        })
    };
    let mut c = Client::connect(&addr, &t, None).await.expect("connect");
    let video_pid = 256; // ffmpeg's default video PID in the fixtures
    let truncated = fixture("h264_720p30_main_slices_aac.ts").slice(..100 * PACKET);
    let cases: Vec<(&str, Bytes, StatusCode, &[&str])> = vec![
        ("empty", Bytes::new(), StatusCode::UNPROCESSABLE_ENTITY, &["not_transport_stream"]),
        ("garbage", fixture("garbage.ts"), StatusCode::UNPROCESSABLE_ENTITY, &["not_transport_stream"]),
        ("HEVC", fixture("hevc_320x240.ts"), StatusCode::UNSUPPORTED_MEDIA_TYPE, &["unsupported_codec"]),
        ("10-bit", fixture("h264_10bit.ts"), StatusCode::UNSUPPORTED_MEDIA_TYPE, &["unsupported_bit_depth"]),
        ("4:2:2", fixture("h264_422.ts"), StatusCode::UNSUPPORTED_MEDIA_TYPE, &["unsupported_chroma"]),
        ("interlaced", fixture("h264_interlaced.ts"), StatusCode::UNSUPPORTED_MEDIA_TYPE, &["unsupported_interlaced"]),
        ("no video", fixture("audio_only.ts"), StatusCode::UNPROCESSABLE_ENTITY, &["no_video"]),
        ("no PAT/PMT", strip(&good_input, &[0, 4096]), StatusCode::UNPROCESSABLE_ENTITY, &["no_program"]),
    ];
    for (what, data, status, codes) in cases {
        match push(&mut c, "bad", 0, Upload::Full(data)).await {
            Err(ClientError::Status { status: s, code, message }) => {
                assert_eq!(s, status, "{what}: {code}: {message}");
                assert!(codes.contains(&code.as_str()), "{what}: got {code} ({message}), expected one of {codes:?}");
                assert!(s.is_client_error(), "{what}: the broadcaster's fault, a 4xx");
            }
            other => panic!("{what}: expected {status}, got {other:?}"),
        }
    }

    // Cut mid-GOP after the first pictures were encoded: the response had begun, so the error
    // comes in band (an E record and the trailer), never as output passed off as complete.
    match push(&mut c, "cut", 0, Upload::Full(truncated)).await {
        Ok((o, _)) => {
            assert!(!o.ok());
            let code = error_code(&o);
            assert_eq!(code, Some("frames_lost"), "{:?}", o.errors);
        }
        Err(ClientError::Status { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "frames_lost"))
        }
        Err(e) => panic!("truncated: {e}"),
    }

    // Damaged but decodable: either complete and correct, or a typed error; never silently short.
    for (what, data) in [
        ("bit flips", fixture("corrupt_bitflips.ts")),
        ("lost video packets", drop_packets(&good_input, video_pid, 97)),
    ] {
        match push(&mut c, "damaged", 0, Upload::Full(data)).await {
            Ok((o, outs)) if o.ok() => {
                for bytes in outs.values() {
                    let n = decode_video(bytes).expect("decodable").len() as u64;
                    assert_eq!(
                        Some(n),
                        o.end.as_ref().and_then(|e| e["frames"].as_u64()),
                        "{what}: frames as reported"
                    );
                }
            }
            Ok((o, _)) => assert!(!o.errors.is_empty(), "{what}: a failure says why: {o:?}"),
            Err(ClientError::Status { status, code, .. }) => {
                assert!(status.is_client_error(), "{what}: {status} {code}")
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }

    // Timestamps wrapping at 2^33 inside the segment: transcoded completely.
    // (The fixture starts at PTS 132000, ffmpeg's 1.4 s offset: move its first picture to 0.5 s
    // before the wrap.)
    let wrap = shift_timestamps(&good_input, (1 << 33) - 132_000 - 45_000);
    let (o, outs) = match push(&mut c, "wrap", 0, Upload::Full(wrap)).await {
        Ok(r) => r,
        Err(ClientError::Status { status, code, message }) => panic!("wrapping PTS: {status} {code} {message}"),
        Err(e) => panic!("wrapping PTS: {e}"),
    };
    assert!(o.ok(), "{o:?}");
    for bytes in outs.values() {
        assert_eq!(decode_video(bytes).expect("decode").len(), 30, "every frame across the wrap");
    }

    // Oversize: refused from Content-Length before the body, or when the streamed body crosses
    // the limit.
    let (small, t2) = start(1, 1 << 20).await;
    let mut c2 = Client::connect(&small.local_addr().to_string(), &t2, None).await.expect("connect");
    let big = Bytes::from(vec![0x47u8; 3 << 20]);
    match push(&mut c2, "big", 0, Upload::Full(big.clone())).await {
        Err(ClientError::Status { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "too_large"))
        }
        other => panic!("expected 413, got {other:?}"),
    }
    // Streamed without a length, the upload is cut off as it crosses the limit: the engine (which
    // has seen no picture of these bytes, so no answer has begun) ends with that upload failure,
    // and the node answers it as the same 413.
    let streamed = Upload::Paced { data: big, piece: 256 * 1024, interval: Duration::from_millis(1) };
    match push(&mut c2, "big", 1, streamed).await {
        Err(ClientError::Status { status, code, message }) => {
            assert_eq!((status, code.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "too_large"), "{message}");
            assert!(message.contains("1048576-byte limit"), "{message}");
        }
        other => panic!("expected 413 too_large for the streamed upload, got {other:?}"),
    }
    // The small node still serves, once the cut segment's session is released (a refusal in the
    // meantime would be a 503 with Retry-After, as for any busy node).
    push_when_free(&mut c2, fixture("h264_360p25_baseline_noaudio.ts")).await;
    small.shutdown().await;

    // The good segment, in flight the whole time, is complete and byte-identical.
    let (o, outs) = good.await.expect("join").expect("good push");
    assert!(o.ok(), "{o:?}");
    for (i, bytes) in &outs {
        assert!(bytes == &expected[usize::from(*i)], "rendition {i} of the good segment changed");
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_ten_times_capacity_is_refused_at_once_and_disconnects_give_capacity_back() {
    let (node, t) = start(1, 8 << 20).await;
    let addr = node.local_addr().to_string();
    let input = fixture("h264_720p30_main_slices_aac.ts");
    // Ten concurrent streams against one session, each uploading slowly.
    let mut pushes = Vec::new();
    for i in 0..10 {
        let (addr, t, data) = (addr.clone(), t.clone(), input.clone());
        pushes.push(tokio::spawn(async move {
            let mut c = Client::connect(&addr, &t, None).await.expect("connect");
            let paced = Upload::Paced { data, piece: 8192, interval: Duration::from_millis(20) };
            push(&mut c, &format!("burst{i}"), 0, paced).await
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for p in pushes {
        match p.await.expect("join") {
            Ok((o, _)) if o.ok() => ok += 1,
            Err(ClientError::Status { status, code, .. })
                if status == StatusCode::SERVICE_UNAVAILABLE && code == "at_capacity" =>
            {
                refused += 1
            }
            other => panic!("neither served nor refused: {other:?}"),
        }
    }
    assert!(ok >= 1 && refused >= 1 && ok + refused == 10, "served {ok}, refused {refused}");

    // A broadcaster that goes away after the first result bytes: its task is cancelled and the
    // one session is free again for the next broadcaster.
    let mut c = Client::connect(&addr, &t, None).await.expect("connect");
    let paced = Upload::Paced { data: input.clone(), piece: 4096, interval: Duration::from_millis(30) };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = std::sync::Mutex::new(Some(tx));
    let quitter = tokio::spawn(async move {
        let _ = c
            .push("quitter", 0, Some(LADDER), paced, |r| {
                if r.kind == Kind::Chunk
                    && let Some(tx) = tx.lock().ok().and_then(|mut t| t.take())
                {
                    let _ = tx.send(());
                }
            })
            .await;
    });
    rx.await.expect("first chunk");
    quitter.abort(); // drops the connection mid-response
    let mut c = Client::connect(&addr, &t, None).await.expect("connect");
    push_when_free(&mut c, input.clone()).await;
    // Released before the answer ended: this node's load is back to 0 (its own figure; the
    // `zerohop_load_sessions` gauge is shared with the other tests' nodes in this process).
    assert_eq!(local_load(&mut c).await, 0, "load back to 0");
    node.shutdown().await;
}
