//! TS demux and PES reassembly on arbitrary bytes, fed in pieces whose sizes come from the input
//! itself: never a panic, and every PES the demuxer hands out lies inside what was pushed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerohop_engine::ts::{DemuxEvent, Demuxer};

fuzz_target!(|data: &[u8]| {
    let (split, body) = data.split_first().map_or((1usize, data), |(s, b)| (usize::from(*s) * 7 + 1, b));
    let mut d = Demuxer::new();
    let mut payload_bytes = 0usize;
    for piece in body.chunks(split) {
        d.push(piece);
        while let Some(ev) = d.poll() {
            if let DemuxEvent::Pes(p) = ev {
                payload_bytes += p.payload.len();
            }
        }
    }
    let _ = d.finish();
    while let Some(ev) = d.poll() {
        if let DemuxEvent::Pes(p) = ev {
            payload_bytes += p.payload.len();
        }
    }
    assert!(payload_bytes <= body.len(), "more PES payload than input");
});
