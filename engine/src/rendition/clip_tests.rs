//! Segment clipping ([`Clip`]) on every backend: the CPU session and the accelerated session
//! over the emulated device (a test double) keep exactly the pictures and copied PES of the
//! clip's span, through the one rendition back half. Expected outcomes are computed from the
//! input's own pictures and PES, never hard-coded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Rendition, RenditionOutput};
use crate::accel::AccelSession;
use crate::accel::emulated::EmulatedDevice;
use crate::cadence::{Cadence, Decision};
use crate::h264::inspect_access_unit;
use crate::intake::CopiedPes;
use crate::probe::{decode_video, demux_all, probe};
use crate::stream::{Clip, SegmentOptions};
use crate::ts::{AudioTrack, Pes, TICKS_PER_SECOND, Unwrapper};
use crate::{ChannelSink, Ladder, MemorySink, RenditionEvent, SegmentReport, Session, SessionConfig};
use crate::{StreamSession, TranscodeError};

/// A 30 fps rung at the source's rate and a 15 fps rung with a short GOP, so frame-rate
/// reduction and the keyframe grid both act inside a clip.
const LADDER: &str = r#"[{"name":"full","width":320,"height":180,"bitrate":300000,"gop":"1"},
    {"name":"half","width":256,"height":144,"bitrate":200000,"fps":15,"gop":"0.2"}]"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Cpu,
    Emulated,
}

const BACKENDS: [Backend; 2] = [Backend::Cpu, Backend::Emulated];

fn fixture(name: &str) -> Bytes {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name);
    Bytes::from(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

fn ladder() -> Ladder {
    LADDER.parse().expect("ladder")
}

fn open(backend: Backend, ladder: &Ladder) -> Box<dyn StreamSession> {
    match backend {
        Backend::Cpu => Box::new(Session::open(SessionConfig::new(ladder.clone())).expect("cpu session")),
        Backend::Emulated => Box::new(AccelSession::new(EmulatedDevice::new(ladder.len()), ladder.clone())),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn ticks(d: Duration) -> i64 {
    (d.as_nanos() * u128::from(TICKS_PER_SECOND) / 1_000_000_000) as i64
}

/// One segment in network-sized pieces: the report and each rendition's bytes.
fn run(
    session: &mut dyn StreamSession,
    input: &Bytes,
    options: Option<SegmentOptions>,
) -> (Result<SegmentReport, TranscodeError>, Vec<Vec<u8>>) {
    let n = session.ladder().len();
    let (out, sinks) = MemorySink::ladder(n);
    let mut seg = match options {
        Some(o) => session.begin_segment_with(sinks, o),
        None => session.begin_segment(sinks),
    }
    .expect("begin");
    for piece in input.chunks(16 * 1024) {
        if seg.push(input.slice_ref(piece)).is_err() {
            break;
        }
    }
    let r = seg.finish();
    (r, out.iter().map(MemorySink::take).collect())
}

/// What a TS segment holds: its pictures' PTS (decoded, display order), whether its first video
/// access unit is an IDR, and its copied PES' PTS (extended timeline).
#[derive(Debug)]
struct Parsed {
    pictures: Vec<i64>,
    first_au_idr: bool,
    copied: Vec<i64>,
}

fn parse(ts: &[u8]) -> Parsed {
    let (program, pes, _, fin) = demux_all(ts);
    fin.expect("demux");
    let video = program.expect("a program").video().expect("video").pid;
    let first_au_idr = pes.iter().find(|p| p.pid == video).is_some_and(|p| inspect_access_unit(&p.payload).idr);
    let mut unwrap = Unwrapper::new();
    let copied = pes.iter().filter(|p| p.pid != video).filter_map(|p| p.pts).map(|p| unwrap.unwrap(p)).collect();
    let pictures = decode_video(ts).expect("decode").iter().map(|f| f.pts).collect();
    Parsed { pictures, first_au_idr, copied }
}

/// The span `clip` keeps of `input`: its PTS bounds, both included.
fn span(input: &Parsed, clip: Clip) -> (i64, i64) {
    let start = input.pictures[0];
    // A clip from 0 has no lower bound, as LPMS's `clip_from` of 0 (copied PES stamped before the
    // first picture stay).
    let lo = if clip.from.is_zero() { i64::MIN } else { start + ticks(clip.from) };
    (lo, clip.to.map_or(i64::MAX, |t| start + ticks(t)))
}

/// What rung `i` keeps of `pictures` (the clip's, in order) by the cadence: PTS kept, keyframes.
fn cadence_oracle(ladder: &Ladder, i: usize, input: &Bytes, pictures: &[i64]) -> (Vec<i64>, Vec<i64>) {
    let mut c = Cadence::new(&ladder.profiles()[i]);
    if let Some(fps) = probe(input).sps.and_then(|s| s.fps) {
        c.declare_rate(fps);
    }
    let (mut kept, mut keys) = (Vec::new(), Vec::new());
    for &p in pictures {
        if let Decision::Keep { keyframe } = c.decide(p, kept.is_empty()) {
            kept.push(p);
            if keyframe {
                keys.push(p);
            }
        }
    }
    (kept, keys)
}

/// Runs `clip` on every backend over `name`: each rendition keeps exactly the input's pictures in
/// the span (as the cadence thins them), starts with an IDR at the first of them, carries exactly
/// the input's copied PES in the span, and counts the rest as clipped. Returns each backend's
/// kept PTS per rendition.
fn check_clip(name: &str, clip: Clip) -> Vec<Vec<Vec<i64>>> {
    let ladder = ladder();
    let input = fixture(name);
    let src = parse(&input);
    let (lo, hi) = span(&src, clip);
    let inside: Vec<i64> = src.pictures.iter().copied().filter(|p| (lo..=hi).contains(p)).collect();
    assert!(!inside.is_empty() && inside.len() < src.pictures.len(), "{name} {clip:?}: a clip that cuts");
    let copied_inside: Vec<i64> = src.copied.iter().copied().filter(|p| (lo..=hi).contains(p)).collect();
    if !src.copied.is_empty() {
        let n = (copied_inside.len(), src.copied.len());
        assert!(n.0 > 0 && n.0 < n.1, "{name} {clip:?}: the clip cuts the audio too ({n:?})");
    }
    let mut per_backend = Vec::new();
    for backend in BACKENDS {
        let what = format!("{name} {clip:?} on {backend:?}");
        let mut session = open(backend, &ladder);
        let (r, outs) = run(&mut *session, &input, Some(SegmentOptions { clip: Some(clip), ..Default::default() }));
        let report = r.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(report.frames_decoded as usize, src.pictures.len(), "{what}: every picture decoded");
        let mut kept_per_rung = Vec::new();
        for (i, (st, ts)) in report.renditions.iter().zip(&outs).enumerate() {
            let what = format!("{what}, rendition {}", st.name);
            let out = parse(ts);
            let (want, keys) = cadence_oracle(&ladder, i, &input, &inside);
            assert_eq!(out.pictures, want, "{what}: the pictures kept");
            assert!(out.first_au_idr, "{what}: the first access unit is an IDR");
            assert_eq!(out.pictures.first(), inside.first(), "{what}: the first PTS >= start + from");
            assert_eq!(st.keyframe_pts, keys, "{what}: the keyframe grid inside the clip");
            assert_eq!(st.keyframe_pts.first(), inside.first(), "{what}: the first kept picture is a keyframe");
            assert_eq!(st.frames_in as usize, src.pictures.len(), "{what}: every picture offered");
            assert_eq!(st.frames_clipped as usize, src.pictures.len() - inside.len(), "{what}: clipped");
            assert_eq!(st.frames_out as usize, want.len(), "{what}");
            assert_eq!(st.frames_dropped as usize, inside.len() - want.len(), "{what}: frame-rate drops");
            assert_eq!(st.frames_clipped + st.frames_out + st.frames_dropped, st.frames_in, "{what}");
            assert!(out.copied.iter().all(|p| (lo..=hi).contains(p)), "{what}: copied PES {:?}", out.copied);
            assert_eq!(out.copied, copied_inside, "{what}: every copied PES of the span, and only those");
            assert_eq!(st.copied_pes as usize, copied_inside.len(), "{what}");
            kept_per_rung.push(out.pictures);
        }
        assert!(report.renditions[1].frames_dropped > 0, "{name}: the 15 fps rung thins the clip");
        per_backend.push(kept_per_rung);
    }
    assert_eq!(per_backend[0], per_backend[1], "{name} {clip:?}: both backends keep the same pictures");
    per_backend
}

#[test]
fn a_clip_keeps_exactly_its_span_on_every_backend() {
    let from_500_to_1000 = Clip { from: ms(500), to: Some(ms(1000)) };
    check_clip("h264_720p30_main_slices_aac.ts", from_500_to_1000);
    // Cut at both ends, audio on both sides of the span.
    check_clip("h264_720p30_main_slices_aac.ts", Clip { from: ms(200), to: Some(ms(700)) });
    // B-pictures: decode order is not display order; the clip is by PTS.
    check_clip("h264_1080p30_high_bframes_aac.ts", from_500_to_1000);
}

#[test]
fn a_clip_from_a_time_or_to_a_time() {
    for name in ["h264_720p30_main_slices_aac.ts", "h264_360p25_baseline_noaudio.ts"] {
        let kept = check_clip(name, Clip { from: ms(400), to: None });
        let src = parse(&fixture(name));
        assert_eq!(kept[0][0].last(), src.pictures.last(), "{name}: from only keeps to the end");
        let kept = check_clip(name, Clip { from: Duration::ZERO, to: Some(ms(300)) });
        assert_eq!(kept[0][0].first(), src.pictures.first(), "{name}: to only keeps from the start");
    }
}

#[test]
fn a_clip_that_keeps_no_picture_fails_with_empty_clip_and_the_session_goes_on() {
    let ladder = ladder();
    let input = fixture("h264_720p30_main_slices_aac.ts");
    for backend in BACKENDS {
        let mut session = open(backend, &ladder);
        for (clip, to_ms) in [
            (Clip { from: ms(5_000), to: None }, None),
            (Clip { from: ms(5_000), to: Some(ms(6_000)) }, Some(6_000)),
            (Clip { from: ms(600), to: Some(ms(100)) }, Some(100)),
        ] {
            let what = format!("{clip:?} on {backend:?}");
            let (txs, rxs): (Vec<_>, Vec<_>) = (0..ladder.len()).map(|_| crossbeam_channel::unbounded()).unzip();
            let sinks = txs.into_iter().map(|t| Box::new(ChannelSink(t)) as Box<dyn crate::RenditionSink>).collect();
            let mut seg = session
                .begin_segment_with(sinks, SegmentOptions { clip: Some(clip), ..Default::default() })
                .expect("begin");
            seg.push(input.clone()).expect(&what);
            let e = seg.finish().expect_err(&what);
            assert_eq!(e.code(), "empty_clip", "{what}: {e}");
            assert_eq!(e, TranscodeError::EmptyClip { from_ms: clip.from.as_millis() as u64, to_ms }, "{what}");
            assert!(e.is_input_error(), "{what}");
            for rx in &rxs {
                let events: Vec<RenditionEvent> = rx.try_iter().collect();
                assert!(matches!(events.as_slice(), [RenditionEvent::Failed(_)]), "{what}: only told: {events:?}");
            }
        }
        let (r, outs) = run(&mut *session, &input, None);
        let r = r.unwrap_or_else(|e| panic!("{backend:?}: the next segment: {e}"));
        assert_eq!(r.renditions[0].frames_clipped, 0);
        assert_eq!(parse(&outs[0]).pictures, parse(&input).pictures, "{backend:?}: the whole next segment");
    }
}

#[test]
fn default_options_give_the_same_bytes_as_begin_segment() {
    let ladder = ladder();
    let input = fixture("h264_720p30_main_slices_aac.ts");
    for backend in BACKENDS {
        let mut plain = open(backend, &ladder);
        let mut with = open(backend, &ladder);
        let mut whole = open(backend, &ladder);
        // Two segments each: what carries over between them (muxer, encoder) carries the same.
        for seq in 0..2 {
            let (a, a_out) = run(&mut *plain, &input, None);
            let (b, b_out) = run(&mut *with, &input, Some(SegmentOptions::default()));
            // A clip of everything keeps everything.
            let all = SegmentOptions { clip: Some(Clip { from: Duration::ZERO, to: None }), ..Default::default() };
            let (c, c_out) = run(&mut *whole, &input, Some(all));
            let (a, b, c) = (a.expect("plain"), b.expect("default options"), c.expect("whole clip"));
            assert!(a_out.iter().all(|o| !o.is_empty()), "{backend:?} {seq}");
            assert!(a_out == b_out, "{backend:?} {seq}: SegmentOptions::default() changes no byte");
            for r in [&a, &b, &c] {
                assert!(r.renditions.iter().all(|s| s.frames_clipped == 0), "{backend:?} {seq}");
            }
            // A clip from 0 to the end keeps every picture and every copied PES (from 0 has no
            // lower bound, as in LPMS).
            let src = parse(&input);
            let copied: Vec<i64> = src.copied.clone();
            for (i, (plain, whole)) in a_out.iter().zip(&c_out).enumerate() {
                let (plain, whole) = (parse(plain), parse(whole));
                assert_eq!(whole.pictures, plain.pictures, "{backend:?} {seq} rendition {i}");
                assert_eq!(whole.copied, copied, "{backend:?} {seq} rendition {i}");
                assert_eq!(a.renditions[i].keyframe_pts, c.renditions[i].keyframe_pts, "{backend:?} {seq}");
            }
        }
    }
}

/// The back half alone: pictures outside the clip are counted and never reach the cadence; copied
/// PES outside it are discarded, one without a timestamp goes with the video as before.
#[test]
fn the_back_half_clips_pictures_and_copied_pes_by_pts() {
    let profile = ladder().profiles()[0].clone();
    let mut rendition = Rendition::new(profile);
    let (tx, rx) = crossbeam_channel::unbounded();
    let clip = Clip { from: ms(100), to: Some(ms(200)) }; // 9000..=18000 ticks after the start
    let mut out = RenditionOutput::new(
        "full",
        0,
        Box::new(ChannelSink(tx)),
        Instant::now(),
        &SegmentOptions { clip: Some(clip), ..Default::default() },
    );
    out.set_tracks(vec![AudioTrack { stream_type: 0x0F, descriptors: Vec::new() }]);
    let pes = |ext_pts: Option<i64>| CopiedPes {
        index: 0,
        pes: Arc::new(Pes {
            pid: 257,
            stream_id: 0xC0,
            pts: ext_pts.map(|p| p as u64),
            dts: None,
            random_access: false,
            damaged: false,
            payload: Bytes::from_static(&[0xFF, 0xF1, 0, 0]),
        }),
        ext_pts,
    };
    let start = 1_000_000;
    // Copied PES before, inside and after the span, and one without a timestamp.
    for p in [Some(start), Some(start + 8_999), Some(start + 9_000), None, Some(start + 18_000), Some(start + 18_001)] {
        out.copy(pes(p));
    }
    let mut decisions = Vec::new();
    for i in 0..10 {
        let pts = start + i * 3_000; // 30 fps
        decisions.push((pts, out.keep(&mut rendition, pts)));
    }
    let kept: Vec<(i64, bool)> = decisions.iter().filter_map(|&(p, k)| Some((p, k?))).collect();
    assert_eq!(
        kept,
        [(start + 9_000, true), (start + 12_000, false), (start + 15_000, false), (start + 18_000, false)]
    );
    assert_eq!((out.stats.frames_in, out.stats.frames_clipped, out.stats.frames_dropped), (10, 6, 0));
    let stats = out.finish(&mut rendition).expect("finish");
    // start + 9000, the one without a timestamp, start + 18000.
    assert_eq!(stats.copied_pes, 3, "{stats:?}");
    assert!(matches!(rx.try_iter().last(), Some(RenditionEvent::Done(_))));

    // Nothing kept: the rendition fails, its sink is told, nothing is muxed.
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut out = RenditionOutput::new(
        "full",
        0,
        Box::new(ChannelSink(tx)),
        Instant::now(),
        &SegmentOptions { clip: Some(clip), ..Default::default() },
    );
    out.copy(pes(Some(start)));
    assert_eq!(out.keep(&mut rendition, start), None);
    assert_eq!(out.keep(&mut rendition, start + 3_000), None);
    let e = out.finish(&mut rendition).expect_err("an empty clip");
    assert_eq!(e, TranscodeError::EmptyClip { from_ms: 100, to_ms: Some(200) });
    let events: Vec<RenditionEvent> = rx.try_iter().collect();
    assert!(matches!(events.as_slice(), [RenditionEvent::Failed(_)]), "{events:?}");
}
