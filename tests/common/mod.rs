//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use bytes::Bytes;
use zerohop_engine::{Ladder, MemorySink, RenditionSink, SegmentReport, Session, SessionConfig, TranscodeError};

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn fixture(name: &str) -> Bytes {
    Bytes::from(std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}")))
}

/// Transcodes one segment in a fresh session; returns the report and each rendition's bytes.
pub fn transcode(data: Bytes, ladder: &Ladder) -> (Result<SegmentReport, TranscodeError>, Vec<Vec<u8>>) {
    let mut session = Session::open(SessionConfig::new(ladder.clone())).expect("session");
    transcode_in(&mut session, data)
}

pub fn transcode_in(session: &mut Session, data: Bytes) -> (Result<SegmentReport, TranscodeError>, Vec<Vec<u8>>) {
    let sinks: Vec<MemorySink> = (0..session.ladder().len()).map(|_| MemorySink::new()).collect();
    let boxed = sinks.iter().map(|s| Box::new(s.clone()) as Box<dyn RenditionSink>).collect();
    let r = session.transcode(data, boxed);
    (r, sinks.iter().map(MemorySink::take).collect())
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("-version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
