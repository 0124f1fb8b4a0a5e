//! Livepeer's results multipart parser (what go-livepeer transcoders POST to /transcodeResults)
//! on arbitrary bytes in arbitrary pieces: never a panic; the parts of a body zerohop wrote come
//! back whole however it is cut; go-livepeer's protobuf messages decode or fail, never panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use zerohop_control::livepeer::messages::{NotifySegment, SegData};
use zerohop_control::livepeer::results::{Part, PartsReader, Rendition, encode};

fuzz_target!(|data: &[u8]| {
    let (split, body) = data.split_first().map_or((1usize, data), |(s, b)| (usize::from(*s) + 1, b));
    let mut r = PartsReader::new("b0und");
    'outer: for piece in body.chunks(split) {
        r.push(piece);
        while let Some(p) = r.poll() {
            if p.is_err() {
                break 'outer;
            }
        }
    }
    let _ = r.finish();
    // The input as one rendition's bytes: it comes back as it went (a body holding the boundary
    // cannot be sent in multipart; zerohop's boundaries are 128 random bits).
    const BOUNDARY: &[u8] = b"zh-fuzz-boundary";
    if body.windows(BOUNDARY.len()).any(|w| w == BOUNDARY) {
        return;
    }
    let sent = vec![Rendition { data: Bytes::copy_from_slice(body), pixels: body.len() as i64 }];
    let wire = encode("zh-fuzz-boundary", &sent);
    let mut r = PartsReader::new("zh-fuzz-boundary");
    let mut got = Vec::new();
    for piece in wire.chunks(split) {
        r.push(piece);
        while let Some(p) = r.poll() {
            got.push(p.expect("zerohop's own body parses"));
        }
    }
    r.finish().expect("closed");
    assert_eq!(got, vec![Part::Rendition(sent[0].clone())]);
    let _ = NotifySegment::decode(body);
    let _ = SegData::decode(body);
});
