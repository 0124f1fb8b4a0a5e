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
            .finish_non_exhaustive()
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

    /// `cuMemHostAlloc` of `bytes` bytes of page-locked host memory, owned by this context (which
    /// the caller has pushed). Not zeroed.
    pub(crate) fn mem_host_alloc(&self, bytes: usize) -> Result<*mut u8, CudaError> {
        match &self.kind {
            Kind::Cuda { .. } => {
                // SAFETY: the context is current (caller); flags 0: memory of this context,
                // freed with `cuMemFreeHost` by `mem_free_host`.
                let p =
                    unsafe { cudarc::driver::result::malloc_host(bytes, 0) }.map_err(driver_error("cuMemHostAlloc"))?;
                Ok(p.cast())
            }
            #[cfg(test)]
            Kind::Double { ctx, .. } => double::host_alloc(*ctx, bytes),
        }
    }

    /// `cuMemFreeHost` of page-locked memory of this context (the context pushed by the caller).
    ///
    /// # Safety
    /// `ptr` came from [`mem_host_alloc`](Self::mem_host_alloc) on this context, is freed once,
    /// nothing uses it any more, and no copy into it is still queued on the stream.
    pub(crate) unsafe fn mem_free_host(&self, ptr: *mut u8) -> Result<(), CudaError> {
        match &self.kind {
            Kind::Cuda { .. } => {
                // SAFETY: the caller's contract.
                unsafe { cudarc::driver::result::free_host(ptr.cast()) }.map_err(driver_error("cuMemFreeHost"))
            }
            #[cfg(test)]
            Kind::Double { ctx, .. } => double::host_free(*ctx, ptr),
        }
    }

    /// `cuMemcpy2DAsync` of `copy` (device to host) on this context's stream (the context pushed
    /// by the caller): queued after the work already on the stream, done by the next
    /// [`sync`](Self::sync). Into page-locked memory it returns at once; into pageable memory
    /// the driver copies synchronously (the driver API reference, "API synchronization
    /// behavior"), which the double refuses.
    ///
    /// # Safety
    /// The source rows are device memory of this context and the destination rows writable host
    /// memory, both live and the destination neither read nor written by the host until the
    /// stream has been synchronised.
    pub(crate) unsafe fn memcpy_2d_dtoh_async(&self, copy: &Copy2d) -> Result<(), CudaError> {
        match &self.kind {
            Kind::Cuda { stream, .. } => {
                let m = copy.descriptor();
                // SAFETY: the caller's contract; `m` outlives the call (the driver reads the
                // descriptor before returning), the stream is this context's.
                unsafe { cudarc::driver::sys::cuMemcpy2DAsync_v2(&m, stream.cu_stream()) }
                    .result()
                    .map_err(driver_error("cuMemcpy2DAsync"))
            }
            #[cfg(test)]
            Kind::Double { ctx, stream } => double::memcpy_2d_dtoh_async(*ctx, *stream, copy),
        }
    }

    /// `cuStreamSynchronize` of this context's stream: waits for every launch and copy queued on
    /// it.
    pub fn sync(&self) -> Result<(), CudaError> {
        match &self.kind {
            // SAFETY: the stream is live (this value holds its `Arc`).
            Kind::Cuda { stream, .. } => unsafe { cudarc::driver::result::stream::synchronize(stream.cu_stream()) }
                .map_err(driver_error("cuStreamSynchronize")),
            #[cfg(test)]
            Kind::Double { stream, .. } => double::sync(*stream),
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

impl Copy2d {
    /// The driver's descriptor of this copy. Written out whole: `CUDA_MEMCPY2D` cannot be
    /// zero-initialised in Rust, since its `CUmemorytype` fields have no zero value
    /// (`std::mem::zeroed` aborts the process there, as the first GPU run showed).
    fn descriptor(&self) -> cudarc::driver::sys::CUDA_MEMCPY2D {
        use cudarc::driver::sys::{CUDA_MEMCPY2D, CUmemorytype};
        CUDA_MEMCPY2D {
            srcXInBytes: 0,
            srcY: 0,
            srcMemoryType: CUmemorytype::CU_MEMORYTYPE_DEVICE,
            srcHost: std::ptr::null(),
            srcDevice: self.src,
            srcArray: std::ptr::null_mut(),
            srcPitch: self.src_pitch,
            dstXInBytes: 0,
            dstY: 0,
            dstMemoryType: CUmemorytype::CU_MEMORYTYPE_HOST,
            dstHost: self.dst.cast(),
            dstDevice: 0,
            dstArray: std::ptr::null_mut(),
            dstPitch: self.dst_pitch,
            WidthInBytes: self.width,
            Height: self.rows,
        }
    }
}

/// One pitched device-to-host copy (`cuMemcpy2DAsync`): `rows` rows of `width` bytes, from
/// device memory at `src` (rows `src_pitch` bytes apart) to host memory at `dst` (rows
/// `dst_pitch` bytes apart).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Copy2d {
    pub src: u64,
    pub src_pitch: usize,
    pub dst: *mut u8,
    pub dst_pitch: usize,
    pub width: usize,
    pub rows: usize,
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

    use super::{Copy2d, DeviceContext, Kind};
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

    // Host memory and the stream. Page-locked ("pinned") host memory is host memory the double
    // allocates itself and knows by address; any other host address is pageable. A
    // device-to-host copy is queued on its stream and done at the stream's next sync, as in the
    // driver, so code that reads a picture before synchronising reads stale bytes.

    /// One block of page-locked host memory: its context and where it is.
    struct HostBlock {
        ctx: usize,
        len: usize,
    }

    /// Live page-locked blocks by start address, and how many each context allocated in all.
    #[derive(Default)]
    struct Host {
        blocks: HashMap<usize, HostBlock>,
        allocated: HashMap<usize, u64>,
    }

    fn host() -> &'static Mutex<Host> {
        static HOST: std::sync::OnceLock<Mutex<Host>> = std::sync::OnceLock::new();
        HOST.get_or_init(Default::default)
    }

    /// What a stream has queued and done.
    #[derive(Default)]
    struct Stream {
        queued: Vec<Copy2d>,
        syncs: u64,
        copies: u64,
    }

    // SAFETY: the raw destination in a queued `Copy2d` is only dereferenced by `sync`, under the
    // streams' lock, while `host_free` refuses to free a block a queued copy writes into.
    unsafe impl Send for Stream {}

    fn streams() -> &'static Mutex<HashMap<usize, Stream>> {
        static STREAMS: std::sync::OnceLock<Mutex<HashMap<usize, Stream>>> = std::sync::OnceLock::new();
        STREAMS.get_or_init(Default::default)
    }

    /// A fresh handle for a context or stream double, so tests running at once on other
    /// threads never share one (the stream and host-memory records are process-wide, as the
    /// driver's are).
    pub fn handle() -> usize {
        static NEXT: AtomicU64 = AtomicU64::new(0x1_0000);
        NEXT.fetch_add(0x10, Ordering::Relaxed) as usize
    }

    /// `cuMemHostAlloc` in the double: needs `ctx` current (the driver API reference for
    /// cuMemHostAlloc: without CU_MEMHOSTALLOC_PORTABLE the memory is pinned only for "the
    /// [context] that performed the allocation", so there must be one); the bytes are garbage,
    /// as the driver's are (it does not clear them).
    pub(super) fn host_alloc(ctx: usize, bytes: usize) -> Result<*mut u8, CudaError> {
        if current() != ctx {
            return Err(CudaError::Driver { api: "cuMemHostAlloc", status: "CUDA_ERROR_INVALID_CONTEXT".into() });
        }
        let ptr = Box::into_raw(vec![0xA5u8; bytes].into_boxed_slice()).cast::<u8>();
        let mut h = host().lock();
        h.blocks.insert(ptr as usize, HostBlock { ctx, len: bytes });
        *h.allocated.entry(ctx).or_default() += 1;
        Ok(ptr)
    }

    /// `cuMemFreeHost` in the double: a live block, its context current (zerohop frees every
    /// child with its context pushed, as NvDecoder's destructor pushes its context around the
    /// frees of its frames), and no copy into it still queued: the driver API reference ("API
    /// synchronization behavior") lets an async copy into pinned memory return before it is
    /// done, so freeing the destination first would have the DMA write into freed memory.
    pub(crate) fn host_free(ctx: usize, ptr: *mut u8) -> Result<(), CudaError> {
        let mut h = host().lock();
        let Some(block) = h.blocks.get(&(ptr as usize)) else {
            return Err(CudaError::Driver { api: "cuMemFreeHost", status: "CUDA_ERROR_INVALID_VALUE".into() });
        };
        if block.ctx != ctx || current() != ctx {
            return Err(CudaError::Driver { api: "cuMemFreeHost", status: "CUDA_ERROR_INVALID_CONTEXT".into() });
        }
        let (start, end) = (ptr as usize, ptr as usize + block.len);
        let pending = streams().lock().values().flat_map(|s| &s.queued).any(|c| {
            let at = c.dst as usize;
            at >= start && at < end
        });
        if pending {
            return Err(CudaError::Driver {
                api: "cuMemFreeHost",
                status: "a queued copy still writes into this memory (synchronise the stream first)".into(),
            });
        }
        let len = block.len;
        h.blocks.remove(&start);
        // SAFETY: allocated by `host_alloc` as a boxed slice of `len` bytes at `ptr`, removed
        // from the registry above, so freed once.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
        Ok(())
    }

    /// Page-locked blocks context `ctx` has allocated since the process started.
    pub fn host_allocs(ctx: usize) -> u64 {
        host().lock().allocated.get(&ctx).copied().unwrap_or(0)
    }

    /// Page-locked blocks of context `ctx` not yet freed.
    pub fn host_live(ctx: usize) -> usize {
        host().lock().blocks.values().filter(|b| b.ctx == ctx).count()
    }

    /// `cuMemcpy2DAsync` (device to host) in the double. Refused: a context other than `ctx`
    /// current; a row wider than either pitch (the driver API reference for cuMemcpy2D:
    /// WidthInBytes of each of Height rows, srcPitch/dstPitch apart); a source outside one live
    /// device block of `ctx`; and a destination that is not page-locked memory. The last is
    /// stricter than the driver on purpose: the driver API reference ("API synchronization
    /// behavior") says a transfer from device to pageable host memory returns only once the copy
    /// has completed, so a ladder "queued" into pageable memory is one blocking copy per rung,
    /// the very cost of the old download; NvDecoder (Video Codec SDK) queues its planes with
    /// cuMemcpy2DAsync on one stream and synchronises once per picture. The copy is done at the
    /// stream's next [`sync`].
    pub(super) fn memcpy_2d_dtoh_async(ctx: usize, stream: usize, c: &Copy2d) -> Result<(), CudaError> {
        let refuse = |status: String| Err(CudaError::Driver { api: "cuMemcpy2DAsync", status });
        if current() != ctx {
            return refuse("CUDA_ERROR_INVALID_CONTEXT".into());
        }
        if c.rows == 0 || c.width == 0 || c.width > c.src_pitch || c.width > c.dst_pitch {
            return refuse(format!(
                "CUDA_ERROR_INVALID_VALUE ({} rows of {} bytes, pitches {} and {})",
                c.rows, c.width, c.src_pitch, c.dst_pitch
            ));
        }
        let src_span = (c.rows - 1) * c.src_pitch + c.width;
        let inside = blocks()
            .lock()
            .iter()
            .any(|(&at, b)| b.ctx == ctx && c.src >= at && c.src + src_span as u64 <= at + b.bytes.len() as u64);
        if !inside {
            return refuse(format!("CUDA_ERROR_INVALID_VALUE (source {:#x} + {src_span} bytes in no block)", c.src));
        }
        let dst_span = (c.rows - 1) * c.dst_pitch + c.width;
        let at = c.dst as usize;
        let pinned = host().lock().blocks.iter().any(|(&start, b)| at >= start && at + dst_span <= start + b.len);
        if !pinned {
            return refuse(
                "destination is pageable host memory: the driver would copy synchronously (allocate it \
                 with cuMemHostAlloc, PinnedHost)"
                    .into(),
            );
        }
        streams().lock().entry(stream).or_default().queued.push(*c);
        Ok(())
    }

    /// `cuStreamSynchronize` in the double: does the stream's queued copies, in order, and counts
    /// the sync. A copy whose source was freed before it ran is an error.
    pub(super) fn sync(stream: usize) -> Result<(), CudaError> {
        let mut streams = streams().lock();
        let s = streams.entry(stream).or_default();
        s.syncs += 1;
        let device = blocks().lock();
        for c in std::mem::take(&mut s.queued) {
            let Some((at, b)) = device.iter().find(|(at, b)| c.src >= **at && c.src < **at + b.bytes.len() as u64)
            else {
                return Err(CudaError::Driver {
                    api: "cuStreamSynchronize",
                    status: format!("the source of a queued copy ({:#x}) was freed before it ran", c.src),
                });
            };
            let offset = (c.src - at) as usize;
            for row in 0..c.rows {
                let from = &b.bytes[offset + row * c.src_pitch..][..c.width];
                // SAFETY: `memcpy_2d_dtoh_async` checked that every destination row lies inside a
                // live page-locked block, and `host_free` refuses a block while this copy is
                // queued; the host does not touch the destination until this sync returns (the
                // caller's contract with the driver).
                unsafe { std::ptr::copy_nonoverlapping(from.as_ptr(), c.dst.add(row * c.dst_pitch), c.width) };
            }
            s.copies += 1;
        }
        Ok(())
    }

    /// Syncs of `stream` so far, and the copies they completed.
    pub fn stream_syncs(stream: usize) -> (u64, u64) {
        streams().lock().get(&stream).map_or((0, 0), |s| (s.syncs, s.copies))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first GPU run aborted here: the descriptor was `mem::zeroed()`, which Rust refuses for
    /// a struct whose memory-type enums have no zero value. Built with no driver.
    #[test]
    fn the_copy_descriptor_is_device_to_host_with_both_pitches() {
        let mut host = [0u8; 64];
        let c = Copy2d { src: 0x7000, src_pitch: 512, dst: host.as_mut_ptr(), dst_pitch: 16, width: 12, rows: 3 };
        let m = c.descriptor();
        use cudarc::driver::sys::CUmemorytype::{CU_MEMORYTYPE_DEVICE, CU_MEMORYTYPE_HOST};
        assert_eq!((m.srcMemoryType, m.srcDevice, m.srcPitch), (CU_MEMORYTYPE_DEVICE, 0x7000, 512));
        assert_eq!((m.dstMemoryType, m.dstHost.cast::<u8>(), m.dstPitch), (CU_MEMORYTYPE_HOST, host.as_mut_ptr(), 16));
        assert_eq!((m.WidthInBytes, m.Height, m.srcXInBytes, m.srcY, m.dstXInBytes, m.dstY), (12, 3, 0, 0, 0, 0));
    }
}
