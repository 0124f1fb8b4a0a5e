//! [`DeviceContext`]: one GPU's CUDA context and the stream zerohop orders its work on, shared
//! (`Arc`) by everything made on it. Children (decoders, encoders, mapped pictures, buffers)
//! hold an `Arc` of their context, so it outlives them whatever the drop order of their owners,
//! and bind it on the dropping thread before they release anything (the NVIDIA samples push
//! their context around every release). Releases that fail in `Drop` are counted here (and
//! process-wide, see [`release_failures`](super::error::release_failures)) instead of being
//! dropped.
//!
//! In tests the context is a double (`double`): made-up handles, and "current on this thread"
//! kept in a thread-local that the NVDEC and NVENC doubles check as the driver would.

use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cudarc::driver::{CudaContext, CudaStream};

use super::error::{CudaError, driver_error, record_release};

/// One GPU's CUDA context and its scaling stream (NVDEC maps on it, NVENC reads after it).
pub struct DeviceContext {
    ordinal: usize,
    kind: Kind,
    release_failures: AtomicU64,
}

enum Kind {
    Cuda {
        ctx: Arc<CudaContext>,
        stream: Arc<CudaStream>,
    },
    #[cfg(test)]
    Double {
        ctx: usize,
        stream: usize,
    },
}

impl std::fmt::Debug for DeviceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceContext")
            .field("ordinal", &self.ordinal)
            .field("release_failures", &self.release_failures())
            .finish()
    }
}

impl DeviceContext {
    /// The context of GPU `ordinal` with its stream (made by `driver::Gpu`).
    pub(crate) fn cuda(ordinal: usize, ctx: Arc<CudaContext>, stream: Arc<CudaStream>) -> Arc<DeviceContext> {
        Arc::new(DeviceContext { ordinal, kind: Kind::Cuda { ctx, stream }, release_failures: AtomicU64::new(0) })
    }

    /// The GPU's ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// Makes the context current on the calling thread (a no-op when it already is).
    pub fn bind(&self) -> Result<(), CudaError> {
        match &self.kind {
            Kind::Cuda { ctx, .. } => ctx.bind_to_thread().map_err(driver_error("cuCtxSetCurrent")),
            #[cfg(test)]
            Kind::Double { ctx, .. } => {
                double::set_current(*ctx);
                Ok(())
            }
        }
    }

    /// The raw `CUcontext`, for the result layers only (NVENC's open takes it).
    pub(crate) fn raw_context(&self) -> *mut c_void {
        match &self.kind {
            Kind::Cuda { ctx, .. } => ctx.cu_ctx().cast(),
            #[cfg(test)]
            Kind::Double { ctx, .. } => *ctx as *mut c_void,
        }
    }

    /// The raw scaling `CUstream`, for the result layers only (NVDEC maps on it, NVENC is
    /// ordered after it).
    pub(crate) fn raw_stream(&self) -> *mut c_void {
        match &self.kind {
            Kind::Cuda { stream, .. } => stream.cu_stream().cast(),
            #[cfg(test)]
            Kind::Double { stream, .. } => *stream as *mut c_void,
        }
    }

    /// Releases of this context's children that failed in `Drop`.
    pub fn release_failures(&self) -> u64 {
        self.release_failures.load(Ordering::Relaxed)
    }

    /// Binds the context for a release in `Drop`; a failure to bind is recorded, and the
    /// release goes on (it then fails in the driver and is recorded too).
    pub(crate) fn bind_for_release(&self) {
        self.record_release(self.bind());
    }

    /// Records a failed release of one of this context's children (no-op on success).
    pub(crate) fn record_release(&self, r: Result<(), CudaError>) {
        if !record_release(r) {
            self.release_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The context double for tests: "current" is a thread-local handle, as in the driver.
#[cfg(test)]
pub(crate) mod double {
    use std::cell::Cell;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use super::{DeviceContext, Kind};

    thread_local! {
        static CURRENT: Cell<usize> = const { Cell::new(0) };
    }

    /// A context double with handle `ctx` and stream `stream` on GPU 0.
    pub fn context(ctx: usize, stream: usize) -> Arc<DeviceContext> {
        Arc::new(DeviceContext { ordinal: 0, kind: Kind::Double { ctx, stream }, release_failures: AtomicU64::new(0) })
    }

    /// The context current on this thread (0: none).
    pub fn current() -> usize {
        CURRENT.with(Cell::get)
    }

    pub(super) fn set_current(ctx: usize) {
        CURRENT.with(|c| c.set(ctx));
    }

    /// No context current on this thread any more (as on a thread that never bound one).
    pub fn unbind() {
        set_current(0);
    }
}
