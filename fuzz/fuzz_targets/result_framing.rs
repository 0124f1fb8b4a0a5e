//! The result-stream record parser on arbitrary bytes in arbitrary pieces: never a panic, and
//! records re-encode to the bytes they came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerohop_control::framing::{RecordReader, record};

fuzz_target!(|data: &[u8]| {
    let (split, body) = data.split_first().map_or((1usize, data), |(s, b)| (usize::from(*s) + 1, b));
    let mut r = RecordReader::new();
    let mut consumed = 0usize;
    'outer: for piece in body.chunks(split) {
        r.push(piece);
        while let Some(rec) = r.poll() {
            let Ok(rec) = rec else { break 'outer };
            let again = record(rec.kind, rec.rendition, &rec.payload);
            assert_eq!(&body[consumed..consumed + again.len()], &again[..], "re-encodes to its bytes");
            consumed += again.len();
        }
    }
    let _ = r.finish();
});
