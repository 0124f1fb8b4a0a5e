//! The CUDA backend: NVDEC -> CUDA scaling kernels -> NVENC, frames kept in device memory.
//!
//! Every NVIDIA library is loaded at run time (`dlopen`): a build with `--features cuda` has no
//! link-time dependency on CUDA, and on a machine without a driver every entry point returns
//! [`CudaError::NoDriver`] instead of panicking.
//!
//! Layers, as in cudarc: `sys` (bindings: cudarc's for the driver and NVRTC, the
//! `nvidia-video-codec-sdk` crate's for NVENC/NVDEC, function tables resolved at run time) ->
//! result (cudarc's `driver::result`, `nvenc::result`, `nvdec::result`: one function per call,
//! each a `Result` naming the call and its status) -> safe owners with `Drop`, which call only
//! the result layers.
//!
//! Ownership rules of the safe layer:
//! - safe functions take owned or borrowed device objects ([`driver::DeviceNv12`],
//!   [`nvdec::MappedFrame`], [`context::DeviceContext`]), never addresses or raw handles; those
//!   appear only inside `unsafe` code;
//! - every child (decoder, encoder, registration, buffer) holds an `Arc` of its context and
//!   binds it on the dropping thread before it releases anything;
//! - release order is written out in each owner's `Drop` (NVIDIA's: unmap, unregister, destroy
//!   buffers, destroy the session; parser before decoder), and resources a child depends on are
//!   kept alive by it (an NVENC registration keeps its buffer's allocation);
//! - `Drop` records failed releases ([`release_failures`], and per context) instead of
//!   discarding them.

pub mod context;
pub mod driver;
mod error;
#[cfg(test)]
mod fake_calls;
pub mod ladder_device;
pub mod memory;
pub mod nvdec;
pub mod nvenc;
pub mod nvrtc;
mod rung_pools;
mod video_library;

pub use error::{CudaError, ReleaseFailures, release_failures};
