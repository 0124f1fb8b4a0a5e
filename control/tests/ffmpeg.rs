//! ffmpeg as a live encoder: its HLS muxer pushes two segments of a stream (real time) into a combined node over
//! HTTP/1.1 (`PUT /live/{stream}/{n}.ts`, chunked; its playlist PUTs are ignored), in cleartext
//! and over TLS; then ffprobe reads the node's HLS playback (master and every rendition
//! playlist): every pushed segment is there, every frame decodes, timestamps rise across
//! segments, each segment starts with a keyframe, and the input's audio is kept. Skips, saying
//! so, where ffmpeg or ffprobe is not installed.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use zerohop_control::{Client, Node, NodeConfig, Transport};

fn have(tool: &str) -> bool {
    zerohop_testkit::require(&[tool], "ffmpeg")
}

/// Runs `tool args` off the runtime's threads: exit status, stdout, stderr.
async fn run(tool: &'static str, args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let o = Command::new(tool).args(&args).output().expect("runs");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (o.status.success(), text(&o.stdout), text(&o.stderr))
    })
    .await
    .expect("task")
}

fn fixture_path(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name);
    p.to_string_lossy().into_owned()
}

/// ffprobe's `-show_entries ... -of csv=p=0` lines for `url`, and its warnings.
async fn probe(url: &str, entries: &str, select: &str) -> (Vec<String>, String) {
    let args = ["-v", "warning", "-select_streams", select, "-show_entries", entries, "-of", "csv=p=0", url];
    let (ok, out, err) = run("ffprobe", args.map(String::from).to_vec()).await;
    assert!(ok, "ffprobe {url}: {err}");
    (out.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect(), err)
}

/// A node with [`LADDER`], ffmpeg pushing 2 s of a stream to it, then the playback checked.
async fn ffmpeg_pushes_and_ffprobe_plays(tls: bool) {
    if !have("ffmpeg") || !have("ffprobe") {
        return;
    }
    let (mut cfg, fp) = tls_config();
    if !tls {
        cfg = NodeConfig::new("127.0.0.1:0".parse().expect("addr"), None);
    }
    cfg.default_ladder = LADDER.parse().expect("ladder");
    cfg.hls_window = 10;
    let node = Node::start(cfg).await.expect("node");
    let base = format!("{}://127.0.0.1:{}", if tls { "https" } else { "http" }, node.local_addr().port());
    let stream = "cam1";
    // The command form README and doc/operations.md give (Debian 12's ffmpeg 5.1). The input is two consecutive
    // segments of one stream (a keyframe each, timestamps continuing), so with `-c copy` the
    // muxer cuts two segments; `-stream_loop` is not used: Debian's ffmpeg 5.1 drops the video
    // of every loop after the first with these fixtures (the audio alone loops).
    let input = format!("concat:{}|{}", fixture_path("stream_seq0.ts"), fixture_path("stream_seq1.ts"));
    let args = [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "info",
        "-re",
        "-i",
        &input,
        "-c",
        "copy",
        "-f",
        "hls",
        "-hls_time",
        "1",
        "-hls_segment_filename",
        &format!("{base}/live/{stream}/%d.ts"),
        &format!("{base}/live/{stream}/index.m3u8"),
    ];
    let (ok, _, log) = run("ffmpeg", args.map(String::from).to_vec()).await;
    assert!(ok, "ffmpeg failed:\n{log}");
    let pushed = 2;

    // The last segment's answer may still be on its way when ffmpeg exits.
    let transport = if tls { transport(&fp) } else { Transport::H2c };
    let mut c = Client::connect(&node.local_addr().to_string(), &transport, None).await.expect("connect");
    let names: Vec<&str> = LADDER.split(',').collect();
    let mut media = String::new();
    for _ in 0..100 {
        let (_, body) = c.get(&format!("/stream/{stream}/{}.m3u8", names[1])).await.expect("get");
        media = String::from_utf8_lossy(&body).into_owned();
        if media.matches("#EXTINF").count() == pushed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if media.matches("#EXTINF").count() != pushed {
        let (_, m) = c.get("/metrics").await.expect("metrics");
        let m = String::from_utf8_lossy(&m).lines().filter(|l| l.contains("segments")).collect::<Vec<_>>().join("\n");
        panic!("not every pushed segment is playable:\n{media}\n{m}\n{log}");
    }
    for seq in 0..pushed {
        assert!(media.contains(&format!("\n{}/{seq}.ts\n", names[1])), "segment {seq}:\n{media}");
    }
    assert!(media.contains("#EXT-X-MEDIA-SEQUENCE:0\n") && !media.contains("DISCONTINUITY"), "{media}");
    c.end_stream(stream).await.expect("delete");
    let (_, body) = c.get(&format!("/stream/{stream}/{}.m3u8", names[1])).await.expect("get");
    assert!(String::from_utf8_lossy(&body).ends_with("#EXT-X-ENDLIST\n"));

    // The master playlist: one variant per rendition, as ffprobe reads it.
    let master = format!("{base}/stream/{stream}.m3u8");
    let (mut variants, _) = probe(&master, "stream=codec_name,width,height", "v").await;
    // (ffprobe lists a variant's streams once per program that holds them.)
    variants.sort();
    variants.dedup();
    assert_eq!(variants, ["h264,426,240", "h264,640,360"], "master playlist as ffprobe reads it");
    let (audio, _) = probe(&master, "stream=codec_name", "a").await;
    assert!(!audio.is_empty() && audio.iter().all(|a| a == "aac"), "audio kept: {audio:?}");
    for name in &names {
        let playlist = format!("{base}/stream/{stream}/{name}.m3u8");
        // Every frame decodes, timestamps rise across the segments.
        let (frames, warnings) = probe(&playlist, "frame=pts_time,key_frame", "v").await;
        assert!(!warnings.contains("onotonic"), "{name}: {warnings}");
        assert!(!warnings.to_lowercase().contains("error"), "{name}: {warnings}");
        let pts: Vec<f64> =
            frames.iter().map(|l| l.split(',').nth(1).and_then(|p| p.parse().ok()).expect("pts")).collect();
        assert!(pts.windows(2).all(|w| w[1] > w[0]), "{name}: PTS rise across segments: {pts:?}");
        let mut per_segment = 0;
        for seq in 0..pushed {
            let (f, _) =
                probe(&format!("{base}/stream/{stream}/{name}/{seq}.ts"), "frame=key_frame,pts_time", "v").await;
            assert!(
                f.first().is_some_and(|l| l.starts_with("1,")),
                "{name} segment {seq} starts with a keyframe: {f:?}"
            );
            per_segment += f.len();
            let (mut a, _) = probe(&format!("{base}/stream/{stream}/{name}/{seq}.ts"), "stream=codec_name", "a").await;
            a.dedup();
            assert_eq!(a, ["aac"], "{name} segment {seq} has the input's audio");
        }
        assert_eq!(frames.len(), per_segment, "{name}: the playlist plays every segment's frames");
        assert!(frames.len() >= 30 * pushed - 2, "{name}: {} frames for {pushed} segments", frames.len());
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_hls_push_over_cleartext_http1_then_ffprobe_plays_it() {
    ffmpeg_pushes_and_ffprobe_plays(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_hls_push_over_tls_then_ffprobe_plays_it() {
    ffmpeg_pushes_and_ffprobe_plays(true).await;
}

/// Private playback with a playback key: ffprobe, which can send no token, plays a stream from a
/// signed master URL (the signature rides on to the media playlists and segments it fetches);
/// an unsigned, tampered, expired or other stream's URL is refused with why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffprobe_plays_a_private_stream_from_a_signed_url_only() {
    use zerohop_control::broadcasters::BroadcasterTokens;
    use zerohop_control::signed_url::PlaybackKey;
    if !have("ffprobe") {
        return;
    }
    let key = PlaybackKey::from_file_contents(b"9f2c4e7a1b3d5f608192a3b4c5d6e7f8091a2b3c").expect("key");
    let mut cfg = NodeConfig::new("127.0.0.1:0".parse().expect("addr"), None);
    cfg.default_ladder = LADDER.parse().expect("ladder");
    cfg.private_playback = true;
    cfg.broadcasters = BroadcasterTokens::single("pushing-token".into());
    cfg.playback_key = Some(key.clone());
    let node = Node::start(cfg).await.expect("node");
    let addr = node.local_addr().to_string();
    let mut c = Client::connect(&addr, &Transport::H2c, Some("pushing-token".into())).await.expect("connect");
    for (seq, name) in ["stream_seq0.ts", "stream_seq1.ts"].iter().enumerate() {
        let o = c.push("cam1", seq as u64, None, zerohop_control::Upload::Full(fixture(name)), |_| {}).await;
        assert!(o.expect("push").ok(), "segment {seq}");
    }
    c.end_stream("cam1").await.expect("end"); // a finished playlist: ffprobe reads it once
    let base = format!("http://{addr}/stream");
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() + 600;
    let signed = format!("{base}/cam1.m3u8?{}", key.query("cam1", exp));

    // ffprobe follows the signed master to every variant and segment.
    let (mut variants, _) = probe(&signed, "stream=codec_name,width,height", "v").await;
    variants.sort();
    variants.dedup();
    assert_eq!(variants, ["h264,426,240", "h264,640,360"], "the signed master as ffprobe reads it");
    let name = LADDER.split(',').nth(1).expect("a rendition");
    let media = format!("{base}/cam1/{name}.m3u8?{}", key.query("cam1", exp));
    let (frames, _) = probe(&media, "frame=key_frame", "v").await;
    assert!(frames.len() >= 58, "every frame of both segments through signed URIs: {}", frames.len());

    // Without a token (as a player): the refusals say why.
    let mut viewer = Client::connect(&addr, &Transport::H2c, None).await.expect("connect");
    let refused = |why: &'static str| {
        move |(status, body): (http::StatusCode, bytes::Bytes)| {
            let body = String::from_utf8_lossy(&body).into_owned();
            assert_eq!(status, http::StatusCode::UNAUTHORIZED, "{why}: {body}");
            assert!(body.contains(why), "{why}: {body}");
        }
    };
    let q = key.query("cam1", exp);
    let tampered = q.replace(&format!("exp={exp}"), &format!("exp={}", exp + 1));
    let expired = key.query("cam1", exp - 700);
    for (path, why) in [
        ("/stream/cam1.m3u8".to_string(), "or a signed URL"),
        (format!("/stream/cam1.m3u8?{tampered}"), "not the node's"),
        (format!("/stream/cam2.m3u8?{q}"), "not the node's"),
        // A stream named `cam1.m3u8` is another stream than `cam1`.
        (format!("/stream/cam1.m3u8/{name}.m3u8?{q}"), "not the node's"),
        (format!("/stream/cam1/{name}/0.ts?{expired}"), "expired"),
        (format!("/stream/cam1.m3u8?{}", q.replace("sig=", "sig=x")), "malformed"),
    ] {
        refused(why)(viewer.get(&path).await.expect("answer"));
    }
    let (ok, _, _) = run("ffprobe", vec!["-v".into(), "quiet".into(), format!("{base}/cam1.m3u8")]).await;
    assert!(!ok, "ffprobe cannot play the private stream unsigned");
    // A segment with the signature: its bytes.
    let (status, ts) = viewer.get(&format!("/stream/cam1/{name}/1.ts?{q}")).await.expect("answer");
    assert!(status.is_success() && ts.len() > 188 && ts[0] == 0x47, "{status}, {} bytes", ts.len());
    node.shutdown().await;
}
