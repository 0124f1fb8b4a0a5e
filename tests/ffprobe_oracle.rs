//! ffprobe (an independent demuxer and decoder) reads every rendition zerohop writes.
//! Skipped, with the reason printed, where ffprobe is not installed (CI installs it).

mod common;

use std::process::Command;

use common::{fixture, fixture_path, transcode};
use zerohop_engine::Ladder;

fn ffprobe_json(path: &std::path::Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(out.status.success(), "ffprobe failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("ffprobe json")
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_f64()).unwrap_or(f64::NAN)
}

#[test]
fn ffprobe_reads_every_rendition() {
    if !zerohop_testkit::require(&["ffprobe"], "ffmpeg") {
        return;
    }
    let name = "h264_1080p30_high_bframes_aac.ts";
    let input = ffprobe_json(&fixture_path(name));
    let in_start = num(&input["streams"][0]["start_time"]);
    let ladder = Ladder::default_ladder();
    let (report, outputs) = transcode(fixture(name), &ladder);
    let report = report.expect("transcode");
    let dir = std::env::temp_dir().join(format!("zerohop-ffprobe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let expected = [(1280, 720), (854, 480), (640, 360), (426, 240)];
    for ((out, stats), (w, h)) in outputs.iter().zip(&report.renditions).zip(expected) {
        let path = dir.join(format!("{}.ts", stats.name));
        std::fs::write(&path, out).expect("write");
        let j = ffprobe_json(&path);
        let streams = j["streams"].as_array().expect("streams");
        assert_eq!(streams.len(), 2, "{}: video + audio", stats.name);
        let v = streams.iter().find(|s| s["codec_type"] == "video").expect("video stream");
        let a = streams.iter().find(|s| s["codec_type"] == "audio").expect("audio stream");
        assert_eq!(v["codec_name"], "h264");
        assert_eq!((v["width"].as_u64(), v["height"].as_u64()), (Some(w), Some(h)), "{}", stats.name);
        assert_eq!(v["pix_fmt"], "yuv420p");
        assert_eq!(num(&v["nb_read_frames"]), 60.0, "{}: frames ffprobe decoded", stats.name);
        assert_eq!(a["codec_name"], "aac");
        // Video timestamps carried over: ffprobe sees the same start time as in the input.
        assert!(
            (num(&v["start_time"]) - in_start).abs() < 0.001,
            "{}: start {} vs {in_start}",
            stats.name,
            v["start_time"]
        );
        let fps = v["avg_frame_rate"].as_str().unwrap_or("");
        assert!(fps == "30/1" || fps == "30000/1000", "{}: avg_frame_rate {fps}", stats.name);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
