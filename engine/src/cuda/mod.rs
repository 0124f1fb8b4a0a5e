//! The CUDA backend: NVDEC -> CUDA scaling kernels -> NVENC, frames kept in device memory.
//!
//! Every NVIDIA library is loaded at run time (`dlopen`): a build with `--features cuda` has no
//! link-time dependency on CUDA, and on a machine without a driver every entry point returns
//! [`CudaError::NoDriver`] instead of panicking.
//!
//! Layers, as in cudarc: `sys` (bindings: cudarc's for the driver and NVRTC, the
//! `nvidia-video-codec-sdk` crate's for NVENC/NVDEC) -> result (function tables resolved at run
//! time, each call a `Result` naming the call and its status) -> safe owners with `Drop`.

pub mod driver;
mod error;
pub mod ladder_device;
pub mod nvdec;
pub mod nvenc;
mod rung_pools;

pub use error::CudaError;
