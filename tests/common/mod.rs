//! Helpers shared by the integration tests.
#![allow(dead_code, unused_macros)]

use std::path::PathBuf;

use bytes::Bytes;
use zerohop_engine::accel::AccelSession;
use zerohop_engine::accel::emulated::EmulatedDevice;
use zerohop_engine::codec::{CpuEncoder, X264Preset};
use zerohop_engine::{Ladder, MemorySink, SegmentReport, Session, SessionConfig, Sinks, StreamSession, TranscodeError};

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn fixture(name: &str) -> Bytes {
    Bytes::from(std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}")))
}

/// A backend this build has, for tests that run one body on each (ripgrep's `rgtest!` habit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The CPU session (OpenH264, SIMD scaler, threads per rendition).
    Cpu,
    /// The accelerated session over the emulated device: a TEST DOUBLE of a GPU (the CPU codec and
    /// the CUDA ladder kernel compiled for the CPU), so the accelerated pipeline runs here.
    Emulated,
    /// The CPU session encoding with x264 (where libx264 build 164 loads).
    CpuX264,
    /// The emulated device's CPU encode (a GPU without NVENC) with x264.
    EmulatedX264,
}

/// What the x264 backends encode with.
pub const X264: CpuEncoder = CpuEncoder::X264 { preset: X264Preset::Superfast };

/// Whether x264 can run here; skips (saying why, see `zerohop_testkit::skip`) where not.
pub fn x264_ready(test: &str) -> bool {
    match zerohop_engine::codec::x264::sys::library() {
        Ok(_) => true,
        Err(e) => {
            zerohop_testkit::skip("libx264 build 164", format_args!("{test} on x264: {e}; Debian: libx264-164"));
            false
        }
    }
}

impl Backend {
    /// The CPU encoder its renditions are encoded with (named, never the machine's default).
    pub fn encoder(self) -> CpuEncoder {
        match self {
            Backend::Cpu | Backend::Emulated => CpuEncoder::OpenH264,
            Backend::CpuX264 | Backend::EmulatedX264 => X264,
        }
    }

    /// A new session for `ladder` on this backend.
    pub fn open(self, ladder: &Ladder) -> Box<dyn StreamSession> {
        match self {
            Backend::Cpu | Backend::CpuX264 => {
                let mut config = SessionConfig::new(ladder.clone());
                config.cpu_encoder = self.encoder();
                Box::new(Session::open(config).expect("CPU session"))
            }
            Backend::Emulated | Backend::EmulatedX264 => {
                Box::new(AccelSession::new(EmulatedDevice::with_encoder(ladder.len(), self.encoder()), ladder.clone()))
            }
        }
    }
}

/// Runs a test body on `backend`; an x264 backend is skipped (saying why) where libx264 does
/// not load.
#[allow(dead_code)]
pub fn run_on(backend: Backend, test: &str, body: fn(Backend)) {
    if !matches!(backend, Backend::CpuX264 | Backend::EmulatedX264) || x264_ready(test) {
        body(backend)
    }
}

/// The module of one test body with a `#[test]` per listed backend (`case => Backend`).
macro_rules! tests_on {
    ([$($case:ident => $variant:ident),*] $(#[doc = $doc:literal])* fn $name:ident($backend:ident) $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn body($backend: crate::common::Backend) $body
            $(
                #[test]
                fn $case() {
                    crate::common::run_on(crate::common::Backend::$variant, stringify!($name), body)
                }
            )*
        }
    };
}

/// One test body per backend: `on_every_backend! { fn name(backend) { ... } }` makes
/// `name::cpu` and `name::emulated`.
macro_rules! on_every_backend {
    ($(#[doc = $doc:literal])* fn $name:ident($backend:ident) $body:block $($rest:tt)*) => {
        tests_on! { [cpu => Cpu, emulated => Emulated] $(#[doc = $doc])* fn $name($backend) $body }
        on_every_backend! { $($rest)* }
    };
    () => {};
}

/// One test body per backend and CPU encoder: as `on_every_backend!`, plus `name::cpu_x264`
/// and `name::emulated_x264`, which skip (saying why) where libx264 does not load.
macro_rules! on_every_backend_and_encoder {
    ($(#[doc = $doc:literal])* fn $name:ident($backend:ident) $body:block $($rest:tt)*) => {
        tests_on! {
            [cpu => Cpu, emulated => Emulated, cpu_x264 => CpuX264, emulated_x264 => EmulatedX264]
            $(#[doc = $doc])* fn $name($backend) $body
        }
        on_every_backend_and_encoder! { $($rest)* }
    };
    () => {};
}

/// Transcodes one segment in a fresh CPU session; returns the report and each rendition's bytes.
pub fn transcode(data: Bytes, ladder: &Ladder) -> (Result<SegmentReport, TranscodeError>, Vec<Vec<u8>>) {
    transcode_on(Backend::Cpu, data, ladder)
}

/// Transcodes one segment in a fresh session on `backend`.
pub fn transcode_on(
    backend: Backend,
    data: Bytes,
    ladder: &Ladder,
) -> (Result<SegmentReport, TranscodeError>, Vec<Vec<u8>>) {
    transcode_in(&mut *backend.open(ladder), data)
}

/// Transcodes one segment in `session` into memory sinks.
pub fn transcode_in(
    session: &mut dyn StreamSession,
    data: Bytes,
) -> (Result<SegmentReport, TranscodeError>, Vec<Vec<u8>>) {
    let (sinks, boxed) = MemorySink::ladder(session.ladder().len());
    let r = transcode_with(session, data, boxed);
    (r, sinks.iter().map(MemorySink::take).collect())
}

/// Transcodes one segment in `session` into `sinks`, pushed in network-sized pieces; a report
/// must say which backend made it (device traffic on an accelerated one, none on the CPU).
pub fn transcode_with(
    session: &mut dyn StreamSession,
    data: Bytes,
    sinks: Sinks,
) -> Result<SegmentReport, TranscodeError> {
    let backend = session.backend();
    let mut seg = session.begin_segment(sinks)?;
    const PIECE: usize = 64 * 1024;
    for piece in (0..data.len()).step_by(PIECE) {
        if seg.push(data.slice(piece..(piece + PIECE).min(data.len()))).is_err() {
            break; // the error comes from finish()
        }
    }
    let r = seg.finish();
    if let Ok(report) = &r {
        assert_eq!(report.device_traffic.is_some(), backend != "cpu", "the report names its backend: {backend}");
    }
    r
}

/// A node process of the built binary; killed when dropped.
pub struct NodeProcess(pub std::process::Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback address (`127.0.0.1:PORT`) for a node to listen on.
pub fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").to_string()
}

/// Starts `node` (a `zerohop` command given `--service-addr addr`) and waits until it listens on
/// `addr`: an event, with a limit (20 s) far beyond its start-up here.
pub fn start_listening(node: &mut std::process::Command, addr: &str) -> NodeProcess {
    let node = NodeProcess(node.spawn().expect("start the node"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "the node did not listen on {addr}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    node
}
