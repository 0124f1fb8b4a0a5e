//! Helpers shared by the control plane's integration tests.
#![allow(dead_code)]

use bytes::Bytes;
use zerohop_engine::{Ladder, MemorySink, RenditionSink, Session, SessionConfig};

/// The ladder the tests push with.
pub const LADDER: &str = "P360p30fps16x9,P240p30fps16x9";

pub fn fixture(name: &str) -> Bytes {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name);
    Bytes::from(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

/// What the engine makes from `data` with [`LADDER`] in a fresh local session.
pub fn local(data: Bytes) -> Vec<Vec<u8>> {
    let ladder: Ladder = LADDER.parse().expect("ladder");
    let mut s = Session::open(SessionConfig::new(ladder.clone())).expect("session");
    let sinks: Vec<MemorySink> = (0..ladder.len()).map(|_| MemorySink::new()).collect();
    s.transcode(data, sinks.iter().map(|m| Box::new(m.clone()) as Box<dyn RenditionSink>).collect()).expect("local");
    sinks.iter().map(MemorySink::take).collect()
}
