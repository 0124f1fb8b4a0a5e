//! # zerohop-control
//!
//! The control plane: exposes the engine as an orchestrator, a transcoder or both, over HTTP/2.
//! Knows nothing of CUDA; turns the engine's plain stats into Prometheus series.
//!
//! This crate is a placeholder until the control-plane issue lands; it only re-exports the
//! engine version it is built against so the workspace layout is in place.

/// Version of the engine this control plane drives.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");
