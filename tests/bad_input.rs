//! Unsupported, corrupt and garbage inputs: a typed error (or complete output), never a panic,
//! never a hang, and the session goes on to transcode the next good segment. Every test runs on
//! the CPU session and on the accelerated session over the emulated device.

#[macro_use]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Backend, fixture, transcode_in, transcode_with};
use zerohop_engine::probe::{decode_video, probe};
use zerohop_engine::{Ladder, StreamSession, TranscodeError};

fn session(backend: Backend) -> Box<dyn StreamSession> {
    backend.open(&"P240p30fps16x9".parse::<Ladder>().expect("ladder"))
}

/// Runs `f` on a thread and fails the test if it takes longer than a minute (a hang).
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        tx.send(f()).ok();
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("finished within a minute (no hang, no panic)")
}

on_every_backend! {
fn unsupported_inputs_get_typed_errors_that_say_what_was_found(backend) {
    for (name, code, says) in [
        ("hevc_320x240.ts", "unsupported_codec", "H.265/HEVC"),
        ("h264_10bit.ts", "unsupported_bit_depth", "10-bit"),
        ("h264_422.ts", "unsupported_chroma", "4:2:2"),
        ("h264_interlaced.ts", "unsupported_interlaced", "interlaced"),
        ("audio_only.ts", "no_video", "AAC"),
        ("garbage.ts", "not_transport_stream", "sync byte"),
    ] {
        let result = within_a_minute(move || {
            let mut s = session(backend);
            let (r, _) = transcode_in(&mut *s, fixture(name));
            // The same session transcodes a good segment afterwards.
            let (good, outs) = transcode_in(&mut *s, fixture("h264_360p25_baseline_noaudio.ts"));
            (r, good.map(|g| g.renditions[0].frames_out), outs)
        });
        let (r, good, outs) = result;
        let err = r.expect_err(name);
        assert_eq!(err.code(), code, "{name}: {err}");
        assert!(err.is_input_error(), "{name}: the input is at fault");
        assert!(err.to_string().contains(says), "{name}: message {err:?} should mention {says:?}");
        assert_eq!(good.expect("good segment after a bad one"), 25, "after {name}");
        assert_eq!(decode_video(&outs[0]).expect("decode").len(), 25);
        // probe agrees with the transcoder.
        assert_eq!(probe(&fixture(name)).verdict.expect_err(name).code(), code, "probe of {name}");
    }
}

fn empty_input(backend) {
    let (r, _) = within_a_minute(move || transcode_in(&mut *session(backend), Bytes::new()));
    assert!(matches!(r, Err(TranscodeError::Demux(_))), "{r:?}");
}

fn corrupt_inputs_fail_cleanly_or_come_out_complete(backend) {
    for name in ["corrupt_truncated.ts", "corrupt_bitflips.ts"] {
        let (r, outs) = within_a_minute(move || transcode_in(&mut *session(backend), fixture(name)));
        match r {
            Ok(report) => {
                // Accepted only when nothing was lost.
                assert_eq!(report.frames_decoded, report.access_units, "{name}");
                assert_eq!(decode_video(&outs[0]).expect("decode").len() as u64, report.access_units);
            }
            Err(e) => {
                assert!(e.is_input_error(), "{name}: {e}");
                eprintln!("{name}: {e}");
            }
        }
    }
    // The bit-flipped fixture damages pictures: the error must say frames were lost and why.
    let (r, _) = within_a_minute(move || transcode_in(&mut *session(backend), fixture("corrupt_bitflips.ts")));
    let e = r.expect_err("bit flips in slice data are detected");
    assert!(matches!(e, TranscodeError::FramesLost { .. } | TranscodeError::Codec(_)), "{e:?}");
    if let TranscodeError::FramesLost { expected, decoded, .. } = e {
        assert!(decoded < expected);
        assert!(e.to_string().contains("next IDR"));
    }
}

fn random_garbage_and_mutations_never_panic(backend) {
    let good = fixture("h264_360p25_baseline_noaudio.ts");
    within_a_minute(move || {
        let mut s = session(backend);
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..12 {
            let mut data = good.to_vec();
            // Mutate headers too this time: sync bytes, PIDs, adaptation fields, PES headers.
            for _ in 0..(1 + round * 5) {
                let i = (next() as usize) % data.len();
                data[i] = next() as u8;
            }
            if round % 3 == 0 {
                data.truncate((next() as usize) % data.len());
            }
            // Any outcome but a panic or a hang will do, from the session and from probe.
            let data = Bytes::from(data);
            drop(transcode_in(&mut *s, data.clone()));
            drop(probe(&data));
        }
        let (r, _) = transcode_in(&mut *s, good.clone());
        assert_eq!(r.expect("session still works").renditions[0].frames_out, 25);
    });
}
}

/// A sink that panics on its first chunk: a stand-in for any bug met in a rendition worker.
struct PanickingSink;

impl zerohop_engine::RenditionSink for PanickingSink {
    fn chunk(&mut self, _data: Bytes) -> std::io::Result<()> {
        panic!("sink exploded");
    }
}

on_every_backend! {
fn a_panic_in_a_worker_fails_that_segment_only_and_the_session_goes_on(backend) {
    within_a_minute(move || {
        let ladder: Ladder = "P240p30fps16x9,P144p30fps16x9".parse().expect("ladder");
        let mut s = backend.open(&ladder);
        let good = zerohop_engine::MemorySink::new();
        let sinks: Vec<Box<dyn zerohop_engine::RenditionSink>> = vec![Box::new(PanickingSink), Box::new(good.clone())];
        let e = transcode_with(&mut *s, fixture("h264_360p25_baseline_noaudio.ts"), sinks)
            .expect_err("the panic fails the segment");
        assert_eq!(e.code(), "internal_error", "{e}");
        assert!(e.to_string().contains("sink exploded") && e.to_string().contains("P240p30fps16x9"), "{e}");
        // The same session, same workers: the next segment is complete and correct.
        let (r, outs) = transcode_in(&mut *s, fixture("h264_360p25_baseline_noaudio.ts"));
        r.expect("next segment");
        let frames = decode_video(&fixture("h264_360p25_baseline_noaudio.ts")).expect("source").len();
        assert!(frames > 0);
        for out in outs {
            assert_eq!(decode_video(&out).expect("decodable").len(), frames, "a full rendition after the panic");
        }
    });
}
}
