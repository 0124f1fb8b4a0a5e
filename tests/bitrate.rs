//! Rate control at every frame rate: each rung's video bitrate, measured from the PES payloads
//! of what zerohop wrote (not the file size, which counts TS and PES headers and the copied
//! streams), is within 10% of the rung's target, at 25, 50 and 60 fps input, at the input's
//! rate and at a profile's reduced one, and when one stream's rate changes between segments.
//! On every backend: the CPU session, and the accelerated session over the emulated device
//! (which encodes through the host encoders of NVENC-less GPUs).
//!
//! The fixtures are 2 s of a test pattern with fresh grain in every picture, so every encoder
//! is held by its bitrate, not by the content (an easy picture undershoots any target).

#[macro_use]
mod common;

use common::{Backend, fixture, transcode_in};
use zerohop_engine::probe::demux_all;
use zerohop_engine::{Ladder, StreamSession};

/// Within this fraction of the target.
const TOLERANCE: f64 = 0.10;

/// Every rung keeps the input's rate except `half`, which asks for `half_fps` (for 25 fps
/// input, a rate above the input's: the rung keeps 25).
fn ladder(half_fps: u32) -> Ladder {
    format!(
        r#"[{{"name":"full","width":640,"height":360,"bitrate":700000,"gop":"1"}},
            {{"name":"small","width":320,"height":180,"bitrate":250000,"gop":"1"}},
            {{"name":"half","width":320,"height":180,"bitrate":200000,"fps":{half_fps},"gop":"1"}}]"#
    )
    .parse()
    .expect("ladder")
}

/// A rendition's video: (bits per second over its pictures' time, pictures, pictures per second).
/// The time is the PTS span plus one picture interval (n pictures last n intervals).
fn video_bitrate(ts: &[u8]) -> (f64, usize, f64) {
    let (program, pes, _, fin) = demux_all(ts);
    fin.expect("demux");
    let vpid = program.expect("program").video().expect("video").pid;
    let video: Vec<_> = pes.iter().filter(|p| p.pid == vpid).collect();
    let bytes: usize = video.iter().map(|p| p.payload.len()).sum();
    let mut pts: Vec<u64> = video.iter().map(|p| p.pts.expect("video PES has a PTS")).collect();
    pts.sort_unstable();
    let n = pts.len();
    assert!(n >= 10, "{n} pictures are too few to measure a bitrate");
    let interval = (pts[n - 1] - pts[0]) as f64 / (n - 1) as f64 / 90_000.0;
    let seconds = interval * n as f64;
    (bytes as f64 * 8.0 / seconds, n, 1.0 / interval)
}

/// Transcodes `name` in `session`; checks every rung's bitrate and frame rate.
fn check(session: &mut dyn StreamSession, backend: Backend, name: &str, in_fps: f64, half_fps: f64) {
    let (report, outputs) = transcode_in(session, fixture(name));
    let report = report.unwrap_or_else(|e| panic!("{backend:?} {name}: {e}"));
    let ladder = session.ladder().clone();
    let mut wrong = Vec::new();
    for ((out, stats), profile) in outputs.iter().zip(&report.renditions).zip(ladder.profiles()) {
        let (bps, pictures, fps) = video_bitrate(out);
        let want_fps = if profile.fps == 0 { in_fps } else { half_fps };
        let target = f64::from(profile.bitrate);
        let ratio = bps / target;
        let line = format!(
            "{backend:?} {name} {}: {:.0} kbps for {:.0} ({ratio:.3}x), {pictures} pictures at {fps:.2} fps (want {want_fps})",
            stats.name,
            bps / 1000.0,
            target / 1000.0
        );
        println!("{line}");
        if (fps - want_fps).abs() >= 0.05 || (ratio - 1.0).abs() > TOLERANCE {
            wrong.push(line);
        }
    }
    assert!(wrong.is_empty(), "off target (more than {TOLERANCE} away) or at the wrong rate:\n{}", wrong.join("\n"));
}

fn one_segment(backend: Backend, name: &str, in_fps: f64, half: u32) {
    let ladder = ladder(half);
    let mut session = backend.open(&ladder);
    check(&mut *session, backend, name, in_fps, f64::from(half).min(in_fps));
}

on_every_backend_and_encoder! {
fn every_rung_on_target_at_25_fps(backend) {
    one_segment(backend, "h264_360p25_grain.ts", 25.0, 30);
}

fn every_rung_on_target_at_50_fps(backend) {
    one_segment(backend, "h264_360p50_grain.ts", 50.0, 25);
}

fn every_rung_on_target_at_60_fps(backend) {
    one_segment(backend, "h264_360p60_grain.ts", 60.0, 30);
}
}

on_every_backend_and_encoder! {
/// One stream whose rate changes between segments: 25, then 60, then 25 fps again. Each
/// segment's rungs are on target (the encoders follow the rate; none stays at the first one).
/// Each segment's SPS declares its rate, so the rate is known at its first picture, an IDR:
/// x264 takes it by a new encoder there (retuned in place, its rate control carried the 60 fps
/// history into the next 25 fps segment: 0.73x), OpenH264 in place.
fn every_rung_on_target_when_the_rate_changes_between_segments(backend) {
    let ladder = ladder(30);
    let mut session = backend.open(&ladder);
    for (name, fps) in [("h264_360p25_grain.ts", 25.0), ("h264_360p60_grain.ts", 60.0), ("h264_360p25_grain.ts", 25.0)] {
        check(&mut *session, backend, name, fps, f64::min(30.0, fps));
    }
}
}

/// The measurement itself: a hand-made TS of known payloads and PTS.
#[test]
fn video_bitrate_counts_payload_bytes_over_the_pictures_time() {
    use zerohop_engine::ts::{Muxer, MuxerConfig};
    let mut m = Muxer::new(MuxerConfig { tracks: Vec::new() });
    let mut ts = Vec::new();
    let au = [0u8, 0, 0, 1, 0x65, 0x88, 0x84, 0x00];
    let mut payload = 0;
    for i in 0..25u64 {
        let mut data = au.to_vec();
        data.resize(1000, 0x55);
        m.write_video(&data, 3600 * i, 3600 * i, i == 0, &mut ts);
        payload += data.len();
    }
    let (bps, n, fps) = video_bitrate(&ts);
    assert_eq!(n, 25);
    assert!((fps - 25.0).abs() < 1e-9, "{fps}");
    // The muxer adds an access unit delimiter (6 bytes) to each picture's payload.
    let want = (payload + 25 * 6) as f64 * 8.0;
    assert!((bps - want).abs() < 1.0, "{bps} vs {want}");
}
