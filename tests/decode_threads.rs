//! OpenH264's decoder threads: with 1, 2 and 3 threads every fixture gives the same number of
//! pictures, in display order, with each PTS carried through the reordering and the B-frame
//! drain at the end. The samples are another matter: the bundled OpenH264's frame threads give
//! pictures that differ from its single-threaded decode (which is bit-exact with ffmpeg's) in
//! every picture, the IDR included (PSNR-Y 35.8 dB on the 1080p fixture, the same every run),
//! and the decode sometimes never returns (two of a few dozen decoders created one after the
//! other deadlocked on a futex, 2 cores, loaded machine), so the engine decodes with one
//! thread. These tests run threads only with `--ignored`: to check a newer OpenH264 before the
//! engine uses them.

#[macro_use]
mod common;

use bytes::Bytes;
use common::fixture;
use zerohop_engine::Frame;
use zerohop_engine::codec::H264Decoder;
use zerohop_engine::probe::demux_all;

/// A fixture's access units with their PTS (x264 writes one per PES), in decode order.
fn access_units(ts: &[u8]) -> Vec<(Bytes, i64)> {
    let (program, pes, _, fin) = demux_all(ts);
    fin.expect("demux");
    let vpid = program.expect("program").video().expect("video").pid;
    pes.into_iter().filter(|p| p.pid == vpid).map(|p| (p.payload, p.pts.expect("pts") as i64)).collect()
}

/// Every picture, as a fresh decoder per segment gives them (the CPU session's way).
fn decode(aus: &[(Bytes, i64)], threads: u16) -> Vec<Frame> {
    let mut d = H264Decoder::with_threads(threads).expect("decoder");
    let mut frames = Vec::new();
    for (au, pts) in aus {
        d.decode(au, *pts, &mut |f| frames.push(f)).expect("decode");
    }
    d.flush(&mut |f| frames.push(f)).expect("flush");
    frames
}

#[test]
fn one_thread_gives_every_picture_in_display_order() {
    for (name, count) in FIXTURES {
        let aus = access_units(&fixture(name));
        let mut want_pts: Vec<i64> = aus.iter().map(|(_, p)| *p).collect();
        want_pts.sort_unstable();
        let pts: Vec<i64> = decode(&aus, 1).iter().map(|f| f.pts).collect();
        assert_eq!(pts.len(), count, "{name}");
        assert_eq!(pts, want_pts, "{name}: every picture, in display order");
    }
}

/// Passes with the bundled OpenH264 when it does not hang (see the top of this file).
#[test]
#[ignore = "OpenH264's frame-threaded decode can deadlock"]
fn every_thread_count_gives_every_picture_in_display_order() {
    for name in FIXTURES.map(|(n, _)| n) {
        let aus = access_units(&fixture(name));
        let mut want_pts: Vec<i64> = aus.iter().map(|(_, p)| *p).collect();
        want_pts.sort_unstable();
        for threads in [1, 2, 3] {
            let pts: Vec<i64> = decode(&aus, threads).iter().map(|f| f.pts).collect();
            assert_eq!(pts, want_pts, "{name}, {threads} threads: every picture, in display order");
        }
    }
}

const FIXTURES: [(&str, usize); 4] = [
    ("h264_1080p30_high_bframes_aac.ts", 60),
    ("h264_720p30_main_slices_aac.ts", 30),
    ("h264_360p60_grain.ts", 120),
    ("h264_360p25_baseline_noaudio.ts", 25),
];

/// Fails with the bundled OpenH264 (see the top of this file).
#[test]
#[ignore = "OpenH264's frame-threaded decode differs from its single-threaded one, and can deadlock"]
fn every_thread_count_gives_the_same_pictures() {
    for (name, count) in FIXTURES {
        let aus = access_units(&fixture(name));
        let mut want_pts: Vec<i64> = aus.iter().map(|(_, p)| *p).collect();
        want_pts.sort_unstable();
        let one = decode(&aus, 1);
        assert_eq!(one.len(), count, "{name}: 1 thread");
        for threads in [2, 3] {
            let many = decode(&aus, threads);
            let pts: Vec<i64> = many.iter().map(|f| f.pts).collect();
            assert_eq!(pts, want_pts, "{name}, {threads} threads: every picture, in display order");
            for (a, b) in one.iter().zip(&many) {
                assert!(a.y == b.y && a.u == b.u && a.v == b.v, "{name}, {threads} threads: picture {} differs", a.pts);
            }
        }
    }
}

#[test]
fn a_decoder_asks_for_at_most_three_threads() {
    assert_eq!(H264Decoder::with_threads(0).expect("decoder").threads(), 1);
    assert_eq!(H264Decoder::with_threads(8).expect("decoder").threads(), 3);
}
