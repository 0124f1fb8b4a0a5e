//! # zerohop-engine
//!
//! Transcodes live MPEG-TS segments (H.264 + any audio) into a ladder of H.264 renditions.
//!
//! ## Design principles
//! 1. **Sans-IO containers.** [`ts::Demuxer`] and [`ts::Muxer`] take and give bytes; no files,
//!    sockets or clocks. They are `forbid(unsafe_code)` and property-tested against each other.
//! 2. **Streaming in and out.** A [`Session`] takes a segment's bytes as they arrive and hands
//!    each rendition's TS packets to its [`RenditionSink`] as soon as each frame is encoded.
//! 3. **One decode, N branches.** Every decoded picture is shared (`Arc`) by the rendition
//!    workers, which scale, encode and mux in parallel behind bounded queues.
//! 4. **Sessions per stream.** Decoder and encoders outlive a segment, as the GPU backend needs.
//! 5. **Typed errors, no panics on input.** Unsupported or corrupt input fails its segment with a
//!    [`TranscodeError`] that says what was found and what is supported; the session lives on.
//! 6. **A reference beside every fast path.** [`scale::reference`] is the plain-Rust twin of the
//!    SIMD scaler; tests hold them together.
//! 7. **One path for a segment's bytes.** Every backend runs the same sans-IO [`intake`]
//!    (demux, program, SPS checks, access units with PTS, the verdict) and the same rendition
//!    back half (cadence, mux, stats, sink); a backend supplies only decode, scale and encode.
//! 8. **No HTTP here.** Stats are plain structs ([`stats`]); the control crate exports them.

pub mod accel;
pub mod build_info;
pub mod cadence;
pub mod codec;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod error;
pub mod frame;
pub mod h264;
pub mod intake;
pub mod priority;
pub mod probe;
pub mod profile;
pub mod quality;
mod rendition;
pub mod scale;
pub mod session;
pub mod sink;
pub mod stats;
pub mod stream;
pub mod timeline;
pub mod ts;

pub use error::{Fault, TranscodeError};
pub use frame::Frame;
pub use profile::{Gop, Ladder, Profile};
pub use session::{Segment, Session, SessionConfig};
pub use sink::{ChannelSink, MemorySink, RenditionEvent, RenditionSink, Sinks};
pub use stats::{InputInfo, RenditionStats, SegmentReport};
pub use stream::{Clip, SegmentInput, SegmentOptions, StreamSession};
pub use timeline::{Stage, Timeline};
