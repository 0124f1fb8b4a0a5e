//! `zerohop push`'s handling of what a node sends back (src/push_output.rs, included as it is):
//! arbitrary bytes in arbitrary pieces through the record reader into the segment's files.
//! Never a panic, nothing created outside the output directory, no `.part` left behind, and
//! files only under safe names.
#![no_main]

#[path = "../../src/part_file.rs"]
#[allow(dead_code)]
mod part_file;
#[path = "../../src/push_output.rs"]
#[allow(dead_code)]
mod push_output;

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use push_output::{SegmentOutput, check_name};
use zerohop_control::framing::RecordReader;

/// `<tmp>/zerohop-fuzz-push-output-<pid>`, holding only `out` between runs.
fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| std::env::temp_dir().join(format!("zerohop-fuzz-push-output-{}", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    // First byte: piece size and whether the node says the segment completed.
    let Some((&first, body)) = data.split_first() else { return };
    let (piece, server_ok) = (usize::from(first >> 1) + 1, first & 1 == 1);
    let out = root().join("out");
    let _ = std::fs::remove_dir_all(root());
    std::fs::create_dir_all(&out).expect("output dir");
    let mut output = SegmentOutput::new(&out, "s_0");
    let mut reader = RecordReader::new();
    'records: for p in body.chunks(piece) {
        reader.push(p);
        while let Some(rec) = reader.poll() {
            let Ok(rec) = rec else { break 'records };
            output.record(&rec);
        }
    }
    let written = output.finish(server_ok).expect("no local I/O error in a fresh directory");
    let beside: Vec<_> = std::fs::read_dir(root()).expect("root").flatten().map(|e| e.file_name()).collect();
    assert_eq!(beside, ["out"], "nothing beside the output directory");
    let files: Vec<String> =
        std::fs::read_dir(&out).expect("out").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(files.len(), written.files.len(), "{files:?}");
    for f in &files {
        let name = f.strip_prefix("s_0_").and_then(|n| n.strip_suffix(".ts"));
        assert!(name.is_some_and(|n| check_name(n).is_ok()), "unsafe file {f:?}");
        assert!(out.join(f).is_file(), "{f:?} is a plain file");
    }
    if !(server_ok && written.problems.is_empty()) {
        assert!(files.is_empty(), "a failed segment leaves no file: {files:?}");
    }
});
