//! The transcoder link's messages (both directions, the capabilities header, the line splitter)
//! on arbitrary bytes: never a panic; a parsed task re-encodes to a line that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerohop_control::link::{LineReader, Report, ToTranscoder, parse_capabilities};

fuzz_target!(|data: &[u8]| {
    let mut lines = LineReader::default();
    lines.push(data);
    while let Some(Ok(line)) = lines.poll() {
        if let Some(m) = ToTranscoder::parse(&line) {
            assert_eq!(ToTranscoder::parse(&m.encode()), Some(m));
        }
        let _ = Report::parse(&line, 1);
    }
    let _ = parse_capabilities(data);
});
