//! End-to-end transcodes of the committed fixtures, checked by decoding what zerohop wrote. The
//! transcodes run on the CPU session and on the accelerated session over the emulated device.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use common::{fixture, transcode_in, transcode_on};
use zerohop_engine::h264::inspect_access_unit;
use zerohop_engine::probe::{decode_video, demux_all, probe};
use zerohop_engine::quality::psnr_frame;
use zerohop_engine::scale::{ScaleFilter, reference};
use zerohop_engine::{ChannelSink, Ladder, MemorySink, RenditionEvent, RenditionSink};

const MAIN: &str = "h264_1080p30_high_bframes_aac.ts";

fn ladder(s: &str) -> Ladder {
    s.parse().expect("ladder")
}

/// Video PTS of a TS in display order.
fn video_pts(ts: &[u8]) -> Vec<u64> {
    let (program, pes, _, fin) = demux_all(ts);
    fin.expect("demux");
    let vpid = program.expect("program").video().expect("video").pid;
    let mut v: Vec<u64> = pes.iter().filter(|p| p.pid == vpid).filter_map(|p| p.pts).collect();
    v.sort_unstable();
    v
}

/// (stream_id, pts, payload) of every non-video PES.
fn audio_pes(ts: &[u8]) -> Vec<(u8, Option<u64>, Bytes)> {
    let (program, pes, _, _) = demux_all(ts);
    let vpid = program.expect("program").video().map(|v| v.pid);
    pes.into_iter().filter(|p| Some(p.pid) != vpid).map(|p| (p.stream_id, p.pts, p.payload)).collect()
}

#[test]
fn fixtures_decode_completely() {
    // Frame counts as ffprobe -count_frames reports them for the fixtures.
    for (name, frames, w, h) in [
        (MAIN, 60, 1920, 1080),
        ("h264_720p30_main_slices_aac.ts", 30, 1280, 720),
        ("h264_360p25_baseline_noaudio.ts", 25, 640, 360),
        ("h264_480p30_4x3_mp3.ts", 30, 640, 480),
    ] {
        let r = probe(&fixture(name));
        assert!(r.verdict.is_ok(), "{name}: {:?}", r.verdict);
        assert_eq!(r.access_units, frames, "{name}");
        assert_eq!(r.frames_decoded, frames, "{name}: decoded pictures");
        let sps = r.sps.expect("sps");
        assert_eq!((sps.width, sps.height), (w, h), "{name}");
    }
}

on_every_backend_and_encoder! {
fn ladder_from_1080p_with_bframes_and_audio(backend) {
    let input = fixture(MAIN);
    let ladder = ladder("P720p30fps16x9,P360p30fps16x9,P240p30fps16x9");
    let (report, outputs) = transcode_on(backend, input.clone(), &ladder);
    let report = report.expect("transcode");
    assert_eq!(report.frames_decoded, 60);
    assert_eq!(report.access_units, 60);
    assert!((report.media_duration.as_secs_f64() - 2.0).abs() < 0.01, "{:?}", report.media_duration);

    let source = decode_video(&input).expect("decode source");
    let in_pts = video_pts(&input);
    let in_audio = audio_pes(&input);
    assert!(!in_audio.is_empty());
    let expected = [(1280, 720, 4_000_000u64), (640, 360, 1_200_000), (426, 240, 600_000)];

    for ((out, stats), &(w, h, bitrate)) in outputs.iter().zip(&report.renditions).zip(&expected) {
        let name = &stats.name;
        assert_eq!(out.len() % 188, 0, "{name}: whole TS packets");
        assert_eq!(stats.ts_bytes, out.len() as u64, "{name}");
        assert_eq!((stats.width, stats.height), (w, h), "{name}");
        assert_eq!(stats.frames_out, 60, "{name}");
        // Bitrate within 35% of target (OpenH264 rate control over only 2 s).
        let kbps = stats.video_bytes as f64 * 8.0 / 2.0;
        assert!((kbps / bitrate as f64 - 1.0).abs() < 0.35, "{name}: {kbps} bps for {bitrate}");

        let frames = decode_video(out).expect("decode rendition");
        assert_eq!(frames.len(), 60, "{name}: decoded frame count");
        assert!(frames.iter().all(|f| (f.width, f.height) == (w, h)), "{name}: size");
        assert_eq!(video_pts(out), in_pts, "{name}: PTS carried over from the input");
        let (_, pes, _, _) = demux_all(out);
        let first_video = pes.iter().find(|p| p.pid == 0x100).expect("video");
        assert!(inspect_access_unit(&first_video.payload).idr, "{name}: starts with an IDR");
        assert!(first_video.random_access, "{name}: random_access_indicator on the IDR");

        // Audio copied byte-exact, with its timestamps.
        assert_eq!(audio_pes(out), in_audio, "{name}: audio PES");

        // PSNR against the source scaled by the plain-Rust reference path.
        let mut worst = f64::MAX;
        for (src, got) in source.iter().zip(&frames) {
            assert_eq!(src.pts, got.pts);
            let reference = reference::scale(ScaleFilter::CatmullRom, src, w, h);
            worst = worst.min(psnr_frame(got, &reference).y);
        }
        // testsrc2 is synthetic: flat colours and sharp edges that OpenH264's Baseline keeps
        // at these bitrates well above 30 dB; a wrong scale, shift or frame order gives < 20 dB.
        assert!(worst >= 30.0, "{name}: worst luma PSNR {worst:.2} dB");
        eprintln!("{name}: {w}x{h}, worst luma PSNR {worst:.2} dB, {kbps:.0} bps");
    }
}

fn keyframes_align_across_renditions_and_fps_is_reduced(backend) {
    let ladder = Ladder::from_json(
        r#"[{"name":"hi","width":1280,"height":720,"bitrate":"2M","gop":0.5},
            {"name":"lo","width":640,"height":360,"bitrate":"600k","gop":0.5},
            {"name":"half","width":640,"height":360,"bitrate":"400k","fps":15,"gop":0.5}]"#,
    )
    .expect("ladder");
    let (report, outputs) = transcode_on(backend, fixture(MAIN), &ladder);
    let report = report.expect("transcode");
    let [hi, lo, half] = &report.renditions[..] else { panic!("three renditions") };
    // Keyframes every 0.5 s of PTS: 4 in 2 s, at the same PTS in every rendition, even the one
    // at 15 fps whose frame grid (1/15 s) does not divide 0.5 s: keyframes are never dropped.
    assert_eq!(hi.keyframes, 4, "{:?}", hi.keyframe_pts);
    assert_eq!(hi.keyframe_pts, lo.keyframe_pts);
    assert_eq!(hi.keyframe_pts, half.keyframe_pts);
    let steps: BTreeSet<i64> = hi.keyframe_pts.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(steps, BTreeSet::from([45_000]));
    // 30 -> 15 fps keeps every other frame counted from each keyframe: 8 of each 15.
    assert_eq!(half.frames_out, 32);
    assert_eq!(half.frames_dropped, 28);
    let pts = video_pts(&outputs[2]);
    let gaps: BTreeSet<u64> = pts.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, BTreeSet::from([3000, 6000]), "15 fps spacing, one short step before each keyframe");
    assert_eq!(decode_video(&outputs[2]).expect("decode").len(), 32);
}

fn four_by_three_input_keeps_its_aspect_ratio_and_mp3(backend) {
    let input = fixture("h264_480p30_4x3_mp3.ts");
    let (report, outputs) = transcode_on(backend, input.clone(), &ladder("P720p30fps16x9,P360p30fps16x9"));
    let report = report.expect("transcode");
    // Never upscaled; 4:3 inside a 16:9 box.
    assert_eq!((report.renditions[0].width, report.renditions[0].height), (640, 480));
    assert_eq!((report.renditions[1].width, report.renditions[1].height), (480, 360));
    assert_eq!(audio_pes(&outputs[1]), audio_pes(&input));
}

fn input_without_audio(backend) {
    let (report, outputs) = transcode_on(backend, fixture("h264_360p25_baseline_noaudio.ts"), &ladder("P240p30fps16x9"));
    let report = report.expect("transcode");
    assert_eq!(report.renditions[0].frames_out, 25);
    assert!(audio_pes(&outputs[0]).is_empty());
    assert_eq!(decode_video(&outputs[0]).expect("decode").len(), 25);
}

fn session_reuse_across_consecutive_segments(backend) {
    let mut session = backend.open(&ladder("P360p30fps16x9,P240p30fps16x9"));
    let mut last_pts = None;
    for name in ["stream_seq0.ts", "stream_seq1.ts"] {
        let input = fixture(name);
        let (report, outputs) = transcode_in(&mut *session, input.clone());
        let report = report.expect(name);
        assert_eq!(report.frames_decoded, 30, "{name}");
        for out in &outputs {
            assert_eq!(video_pts(out), video_pts(&input), "{name}");
            let frames = decode_video(out).expect("decode");
            assert_eq!(frames.len(), 30);
            if let Some(prev) = last_pts {
                assert!(frames[0].pts > prev, "{name}: timeline continues");
            }
        }
        last_pts = Some(report.last_pts.expect("pts"));
    }
}

fn output_is_independent_of_how_input_is_chunked(backend) {
    let input = fixture("h264_720p30_main_slices_aac.ts");
    let l = ladder("P240p30fps16x9");
    let (_, whole) = transcode_on(backend, input.clone(), &l);
    let mut session = backend.open(&l);
    let sink = MemorySink::new();
    let mut seg = session.begin_segment(vec![Box::new(sink.clone())]).expect("begin");
    // Odd piece sizes split packets, PES headers and start codes everywhere.
    let mut off = 0;
    for size in [1usize, 7, 187, 189, 1000, 3].iter().cycle() {
        if off >= input.len() {
            break;
        }
        let end = (off + size).min(input.len());
        seg.push(input.slice(off..end)).expect("push");
        off = end;
    }
    seg.finish().expect("finish");
    let chunked = sink.take();
    let differ = chunked.chunks(188).zip(whole[0].chunks(188)).position(|(a, b)| a != b);
    assert_eq!((chunked.len(), differ), (whole[0].len(), None), "bytes and the first TS packet that differs");
}

fn renditions_stream_out_before_the_input_ends(backend) {
    let input = fixture(MAIN);
    let mut session = backend.open(&ladder("P240p30fps16x9"));
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut seg = session.begin_segment(vec![Box::new(ChannelSink(tx)) as Box<dyn RenditionSink>]).expect("begin");
    let half = input.len() / 2;
    seg.push(input.slice(..half)).expect("push");
    // The first chunk must arrive while the second half has not been sent.
    let first = rx.recv_timeout(Duration::from_secs(60)).expect("a chunk before the input ended");
    let RenditionEvent::Chunk(first) = first else { panic!("expected a chunk, got {first:?}") };
    assert_eq!(first.len() % 188, 0);
    seg.push(input.slice(half..)).expect("push");
    let report = seg.finish().expect("finish");
    let mut bytes = first.to_vec();
    let mut done = None;
    while let Ok(ev) = rx.try_recv() {
        match ev {
            RenditionEvent::Chunk(c) => bytes.extend_from_slice(&c),
            RenditionEvent::Done(s) => done = Some(s),
            RenditionEvent::Failed(e) => panic!("{e}"),
        }
    }
    let done = done.expect("done event");
    assert!(done.chunks > 1, "one chunk per frame, got {}", done.chunks);
    assert_eq!(report.renditions[0].ts_bytes, bytes.len() as u64);
    assert_eq!(decode_video(&bytes).expect("decode").len(), 60);
}
}
