//! # zerohop-control
//!
//! The control plane: exposes the engine as a video-miner node over HTTP/1.1 and HTTP/2.
//!
//! ## Design principles
//! 1. **Stream every leg.** Uploads go into the engine as they arrive; each encoded chunk goes
//!    out at once in the result stream ([`framing`]), so a hop costs a round trip, not a segment.
//! 2. **Sans-IO where it can be.** The result-stream framing is a push parser with no I/O; the
//!    tokio tasks only move bytes.
//! 3. **TLS by default; HTTP/1.1 and HTTP/2 for clients.** ALPN `h2` or `http/1.1` (none:
//!    HTTP/1.1); cleartext (HTTP/1.1, or h2c with prior knowledge) only when asked for by name.
//!    The transcoder link is HTTP/2 only.
//! 4. **No CUDA here.** The engine's plain stats become Prometheus series in [`metrics`].
//! 5. **Whose fault.** Every failure is a typed [`fault::NodeError`] (a stable code, a message,
//!    and a [`fault::Fault`]: input, broadcaster, transcoder, node or capacity), built from the
//!    engine's error or its code off the wire; that type alone picks the HTTP status, the
//!    `Retry-After` and the metric reason.
//! 6. **One name per header.** Every `zerohop-*` header and trailer is named in [`headers`].
//!
//! Modes: combined (orchestrator with an in-process transcoder, which remote transcoders may
//! join), orchestrator only (`max_sessions` 0), and transcoder ([`transcoder`], dialling out).

pub mod body;
pub mod broadcasters;
pub mod client;
pub mod fault;
pub mod framing;
pub mod headers;
pub mod hls;
pub mod hop_log;
pub mod link;
pub mod livepeer;
pub mod metrics;
pub mod multipart;
pub mod node;
pub mod relay;
pub mod scheduler;
pub mod secret;
pub mod signed_url;
pub mod tls;
pub mod transcoder;

pub use client::{Client, ClientError, PushOutcome, Transport, Upload};
pub use node::{Node, NodeConfig};

/// Largest HTTP/2 DATA frame we accept (SETTINGS_MAX_FRAME_SIZE): 256 KiB instead of the
/// 16 KiB default cuts per-frame work on large relayed bodies (measured in `zerohop bench`).
pub(crate) const MAX_FRAME: u32 = 256 * 1024;
