//! Property: whatever access units and audio PES go into the muxer come back out of the demuxer
//! unchanged, in order, with their timestamps — however the bytes are split on the way.

use proptest::prelude::*;
use zerohop_engine::ts::{AudioTrack, DemuxEvent, Demuxer, Muxer, MuxerConfig, stream_type};

#[derive(Debug, Clone)]
enum Unit {
    Video { au: Vec<u8>, pts: u64, key: bool },
    Audio { payload: Vec<u8>, pts: u64 },
}

fn unit() -> impl Strategy<Value = Unit> {
    prop_oneof![
        (proptest::collection::vec(any::<u8>(), 1..3000), 0u64..(1 << 33), any::<bool>()).prop_map(
            |(mut au, pts, key)| {
                // An Annex B unit that does not start with an AUD (the muxer adds one).
                au.splice(0..0, [0, 0, 0, 1, 0x65]);
                Unit::Video { au, pts, key }
            }
        ),
        (proptest::collection::vec(any::<u8>(), 1..2000), 0u64..(1 << 33))
            .prop_map(|(payload, pts)| Unit::Audio { payload, pts }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn mux_then_demux_returns_the_same_units(units in proptest::collection::vec(unit(), 1..40), split in 1usize..5000) {
        let mut muxer = Muxer::new(MuxerConfig {
            tracks: vec![AudioTrack { stream_type: stream_type::AAC_ADTS, descriptors: vec![0x0a, 4, b'e', b'n', b'g', 0] }],
        });
        let mut ts = Vec::new();
        for u in &units {
            match u {
                Unit::Video { au, pts, key } => muxer.write_video(au, *pts, *pts, *key, &mut ts),
                Unit::Audio { payload, pts } => muxer.write_track(0, 0xC0, Some(*pts), None, payload, &mut ts),
            }
        }
        prop_assert_eq!(ts.len() % 188, 0);
        let mut demux = Demuxer::new();
        for piece in ts.chunks(split) {
            demux.push(piece);
        }
        demux.finish().expect("valid stream");
        let mut got = Vec::new();
        let mut program = None;
        while let Some(ev) = demux.poll() {
            match ev {
                DemuxEvent::Program(p) => program = Some(p),
                DemuxEvent::Pes(p) => got.push(p),
            }
        }
        let program = program.expect("PAT/PMT");
        prop_assert_eq!(program.streams.len(), 2);
        prop_assert_eq!(&program.streams[1].descriptors[..], &[0x0a, 4, b'e', b'n', b'g', 0][..]);
        prop_assert_eq!(got.len(), units.len());
        // Order is kept per PID (a video PES of unbounded length completes only when the next
        // one starts, so PES of different PIDs may come out in another interleaving).
        let (video, audio): (Vec<_>, Vec<_>) = got.iter().partition(|p| p.pid == 0x100);
        let (mut video, mut audio) = (video.into_iter(), audio.into_iter());
        for u in &units {
            match u {
                Unit::Video { au, pts, key } => {
                    let p = video.next().expect("video PES");
                    prop_assert!(!p.damaged);
                    prop_assert_eq!(p.pts, Some(*pts));
                    prop_assert_eq!(p.random_access, *key);
                    prop_assert_eq!(&p.payload[..6], &[0, 0, 0, 1, 9, 0xF0][..]);
                    prop_assert_eq!(&p.payload[6..], &au[..]);
                }
                Unit::Audio { payload, pts } => {
                    let p = audio.next().expect("audio PES");
                    prop_assert!(!p.damaged);
                    prop_assert_eq!(p.pid, 0x101);
                    prop_assert_eq!(p.stream_id, 0xC0);
                    prop_assert_eq!(p.pts, Some(*pts));
                    prop_assert_eq!(&p.payload[..], &payload[..]);
                }
            }
        }
        prop_assert_eq!(demux.stats().continuity_errors, 0);
    }
}

#[test]
fn timestamps_wrap_at_2_pow_33() {
    use zerohop_engine::ts::{Unwrapper, wrap33};
    let mut u = Unwrapper::new();
    let near = (1u64 << 33) - 3000;
    assert_eq!(u.unwrap(near), near as i64);
    assert_eq!(u.unwrap(0), 1i64 << 33);
    assert_eq!(u.unwrap(3000), (1i64 << 33) + 3000);
    // A B-frame slightly earlier, across the wrap, stays earlier.
    assert_eq!(u.unwrap(near + 1500), near as i64 + 1500);
    assert_eq!(wrap33((1i64 << 33) + 5), 5);
}
