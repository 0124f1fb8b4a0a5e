//! Livepeer's own protocol (go-livepeer's wire), so zerohop nodes and go-livepeer nodes work
//! together: a zerohop transcoder in a go-livepeer orchestrator's pool ([`transcoder`]), and a
//! zerohop orchestrator serving go-livepeer gateways offchain (the node's `livepeer` module,
//! with [`sessions`]).
//!
//! Written from what go-livepeer does (`net/lp_rpc.proto`, `server/ot_rpc.go`,
//! `server/segment_rpc.go`, `core/capabilities.go`, LPMS's errors); no code or `.proto` copied.
//! Everything here but [`transcoder`] is sans-IO.

pub mod capabilities;
pub mod errors;
pub mod grpc;
pub mod ladder;
pub mod messages;
pub mod results;
pub mod sessions;
pub mod trace;
pub mod transcoder;
