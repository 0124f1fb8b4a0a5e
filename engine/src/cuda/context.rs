//! [`DeviceContext`]: one GPU's CUDA context and the stream zerohop orders its work on, shared
//! (`Arc`) by everything made on it. Children (decoders, encoders, mapped pictures, buffers)
//! hold an `Arc` of their context, so it outlives them whatever the drop order of their owners,
//! and bind it on the dropping thread before they release anything (the NVIDIA samples push
//! their context around every release). Releases that fail in `Drop` are counted here (and
//! process-wide, see [`release_failures`](super::error::release_failures)) instead of being
//! dropped.
//!
//! Every call that needs the context current pushes it for its scope and pops it after
//! ([`DeviceContext::push`]), as NVIDIA's NvDecoder and NvEncoderCuda and FFmpeg's nvenc.c do:
//! whatever the calling thread had current (nothing, or another GPU's context) is restored, so
//! a session may be used or dropped on any thread.
//!
//! Device memory that NVENC registers is allocated here with `cuMemAllocPitch`, never from a
//! stream-ordered pool (`cuMemAllocAsync`, which cudarc's `alloc_zeros` uses where the device
//! supports pools): NVENC cannot register stream-ordered memory. See
//! [`DeviceAllocation`](super::memory::DeviceAllocation).
//!
//! In tests the context is a double (`double`): made-up handles, "current on this thread" kept
//! in a thread-local stack that the NVDEC and NVENC doubles check as the driver would, and
//! device memory as host memory at made-up addresses that records how it was allocated.

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

    /// Makes the context current on this thread until the returned guard is dropped, which
    /// restores what was current before (`cuCtxPushCurrent` / `cuCtxPopCurrent`).
    pub fn push(&self) -> Result<Pushed<'_>, CudaError> {
        match &self.kind {
            // SAFETY: `ctx` is a live context (this value holds its `Arc`); the guard pops it on
            // this thread (it is not `Send`).
            Kind::Cuda { ctx, .. } => unsafe { cudarc::driver::sys::cuCtxPushCurrent_v2(ctx.cu_ctx()) }
                .result()
                .map_err(driver_error("cuCtxPushCurrent"))?,
            #[cfg(test)]
            Kind::Double { ctx, .. } => double::push(*ctx),
        }
        Ok(Pushed { ctx: self, _not_send: std::marker::PhantomData })
    }

    /// [`push`](Self::push) for a release in `Drop`: a failure to push is recorded, and the
    /// release goes on (it then fails in the driver and is recorded too).
    pub(crate) fn push_for_release(&self) -> Option<Pushed<'_>> {
        match self.push() {
            Ok(p) => Some(p),
            Err(e) => {
                self.record_release(Err(e));
                None
            }
        }
    }

    /// `cuMemAllocPitch` of `rows` rows of at least `width_bytes` bytes in this context (which
    /// the caller has pushed): the address and the pitch the driver chose.
    pub(crate) fn mem_alloc_pitch(&self, width_bytes: usize, rows: usize) -> Result<(u64, usize), CudaError> {
        match &self.kind {
            Kind::Cuda { .. } => {
                let (mut ptr, mut pitch) = (0u64, 0usize);
                // SAFETY: valid out-pointers for the call; the context is current (caller).
                // Element size 16, as NvEncoderCuda::AllocateInputBuffers allocates NVENC inputs.
                unsafe { cudarc::driver::sys::cuMemAllocPitch_v2(&mut ptr, &mut pitch, width_bytes, rows, 16) }
                    .result()
                    .map_err(driver_error("cuMemAllocPitch"))?;
                Ok((ptr, pitch))
            }
            #[cfg(test)]
            Kind::Double { ctx, .. } => double::alloc_pitch(*ctx, width_bytes, rows),
        }
    }

    /// `cuMemsetD8` of `bytes` bytes at `ptr` to zero (the context pushed by the caller).
    ///
    /// # Safety
    /// `ptr..ptr + bytes` is device memory of this context.
    pub(crate) unsafe fn mem_zero(&self, ptr: u64, bytes: usize) -> Result<(), CudaError> {
        match &self.kind {
            Kind::Cuda { .. } => {
                // SAFETY: the caller's contract; synchronous.
                unsafe { cudarc::driver::result::memset_d8_sync(ptr, 0, bytes) }.map_err(driver_error("cuMemsetD8"))
            }
            #[cfg(test)]
            Kind::Double { .. } => double::with_bytes(ptr, |b| b[..bytes].fill(0)),
        }
    }

    /// `cuMemFree` of an allocation of this context (the context pushed by the caller).
    ///
    /// # Safety
    /// `ptr` came from [`mem_alloc_pitch`](Self::mem_alloc_pitch) on this context, is freed
    /// once, and nothing uses it any more.
    pub(crate) unsafe fn mem_free(&self, ptr: u64) -> Result<(), CudaError> {
        match &self.kind {
            // SAFETY: the caller's contract.
            Kind::Cuda { .. } => unsafe { cudarc::driver::result::free_sync(ptr) }.map_err(driver_error("cuMemFree")),
            #[cfg(test)]
            Kind::Double { ctx, .. } => double::free(*ctx, ptr),
        }
    }

    /// Makes the context current on this thread (a no-op when it already is); prefer
    /// [`push`](Self::push), which restores the thread's context after.
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

    /// Records a failed release of one of this context's children (no-op on success).
    pub(crate) fn record_release(&self, r: Result<(), CudaError>) {
        if !record_release(r) {
            self.release_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The context made current by [`DeviceContext::push`]; dropping it pops it (on the thread that
/// pushed it: not `Send`), restoring the thread's previous context. A failed pop is recorded.
#[must_use = "the context is popped when this is dropped"]
#[derive(Debug)]
pub struct Pushed<'a> {
    ctx: &'a DeviceContext,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for Pushed<'_> {
    fn drop(&mut self) {
        let popped = match &self.ctx.kind {
            Kind::Cuda { .. } => {
                let mut was = std::ptr::null_mut();
                // SAFETY: pops the context this guard pushed on this thread (the guard is not
                // `Send`, and guards drop in reverse order of their pushes).
                unsafe { cudarc::driver::sys::cuCtxPopCurrent_v2(&mut was) }
                    .result()
                    .map_err(driver_error("cuCtxPopCurrent"))
            }
            #[cfg(test)]
            Kind::Double { ctx, .. } => double::pop(*ctx),
        };
        self.ctx.record_release(popped);
    }
}

/// The context double for tests: "current" is a thread-local stack of handles, as in the
/// driver (cuCtxPushCurrent / cuCtxPopCurrent / cuCtxSetCurrent), and device memory is host
/// memory at made-up addresses, each block recording how it was allocated.
#[cfg(test)]
pub(crate) mod double {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use parking_lot::Mutex;

    use super::{DeviceContext, Kind};
    use crate::cuda::CudaError;

    thread_local! {
        static STACK: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    }

    /// A context double with handle `ctx` and stream `stream` on GPU 0.
    pub fn context(ctx: usize, stream: usize) -> Arc<DeviceContext> {
        Arc::new(DeviceContext { ordinal: 0, kind: Kind::Double { ctx, stream }, release_failures: AtomicU64::new(0) })
    }

    /// The context current on this thread (0: none).
    pub fn current() -> usize {
        STACK.with(|s| s.borrow().last().copied().unwrap_or(0))
    }

    /// cuCtxSetCurrent: replaces the top of the stack (or pushes onto an empty one).
    pub(super) fn set_current(ctx: usize) {
        STACK.with(|s| {
            let mut s = s.borrow_mut();
            match s.last_mut() {
                Some(top) => *top = ctx,
                None => s.push(ctx),
            }
        });
    }

    pub(super) fn push(ctx: usize) {
        STACK.with(|s| s.borrow_mut().push(ctx));
    }

    /// cuCtxPopCurrent: the popped context must be the one the guard pushed (a guard dropped
    /// out of order, or a stack someone else changed, is an error).
    pub(super) fn pop(ctx: usize) -> Result<(), CudaError> {
        match STACK.with(|s| s.borrow_mut().pop()) {
            Some(top) if top == ctx => Ok(()),
            other => Err(CudaError::Driver {
                api: "cuCtxPopCurrent",
                status: format!("popped {other:?}, pushed {ctx:#x} (CUDA_ERROR_INVALID_CONTEXT)"),
            }),
        }
    }

    /// No context current on this thread any more (as on a thread that never bound one).
    pub fn unbind() {
        STACK.with(|s| s.borrow_mut().clear());
    }

    /// How a block of the memory double was allocated.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Alloc {
        /// `cuMemAllocPitch`, with the pitch the driver chose.
        Pitched { pitch: usize },
        /// `cuMemAlloc`.
        Linear,
        /// `cuMemAllocAsync` / `cuMemAllocFromPoolAsync` (stream-ordered, from a memory pool).
        StreamOrdered,
    }

    /// One block of device memory: its context, how it was allocated, and its bytes.
    pub struct Block {
        pub ctx: usize,
        pub alloc: Alloc,
        pub bytes: Vec<u8>,
    }

    static NEXT: AtomicU64 = AtomicU64::new(0x7_0000_0000);

    fn blocks() -> &'static Mutex<HashMap<u64, Block>> {
        static BLOCKS: std::sync::OnceLock<Mutex<HashMap<u64, Block>>> = std::sync::OnceLock::new();
        BLOCKS.get_or_init(Default::default)
    }

    /// The pitch alignment of the double's `cuMemAllocPitch`. The driver picks the pitch (the
    /// CUDA driver API reference: "the function may pad the allocation"); 512 here, on purpose
    /// not the 256 zerohop used to assume, so code that ignores the returned pitch fails.
    pub const PITCH_ALIGNMENT: usize = 512;

    /// A block of `bytes` bytes of kind `alloc` in context `ctx` (addresses are never reused).
    pub fn allocate(ctx: usize, bytes: usize, alloc: Alloc) -> u64 {
        let addr = NEXT.fetch_add((bytes as u64).next_multiple_of(0x1_0000).max(0x1_0000), Ordering::Relaxed);
        blocks().lock().insert(addr, Block { ctx, alloc, bytes: vec![0; bytes] });
        addr
    }

    /// `cuMemAllocPitch` in the double: needs `ctx` current on this thread
    /// (CUDA_ERROR_INVALID_CONTEXT otherwise, as every driver allocation).
    pub(super) fn alloc_pitch(ctx: usize, width_bytes: usize, rows: usize) -> Result<(u64, usize), CudaError> {
        if current() != ctx {
            return Err(CudaError::Driver { api: "cuMemAllocPitch", status: "CUDA_ERROR_INVALID_CONTEXT".into() });
        }
        let pitch = width_bytes.next_multiple_of(PITCH_ALIGNMENT);
        Ok((allocate(ctx, pitch * rows, Alloc::Pitched { pitch }), pitch))
    }

    /// `cuMemFree` in the double: the block's context must be current (NvEncoderCuda's
    /// ReleaseInputBuffers pushes its context around cuMemFree), and the block live.
    pub(super) fn free(ctx: usize, addr: u64) -> Result<(), CudaError> {
        let mut b = blocks().lock();
        match b.get(&addr) {
            None => Err(CudaError::Driver { api: "cuMemFree", status: "CUDA_ERROR_INVALID_VALUE".into() }),
            Some(block) if block.ctx != current() || block.ctx != ctx => {
                Err(CudaError::Driver { api: "cuMemFree", status: "CUDA_ERROR_INVALID_CONTEXT".into() })
            }
            Some(_) => {
                b.remove(&addr);
                Ok(())
            }
        }
    }

    /// How the block at `addr` was allocated, its context and size; `None` when no live block
    /// starts there.
    pub fn block(addr: u64) -> Option<(usize, Alloc, usize)> {
        blocks().lock().get(&addr).map(|b| (b.ctx, b.alloc, b.bytes.len()))
    }

    /// Runs `f` on the bytes of the live block at `addr` (the double's device memory).
    pub fn with_bytes<R>(addr: u64, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, CudaError> {
        match blocks().lock().get_mut(&addr) {
            Some(b) => Ok(f(&mut b.bytes)),
            None => Err(CudaError::Driver { api: "memory double", status: format!("no block at {addr:#x}") }),
        }
    }
}
