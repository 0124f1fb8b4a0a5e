//! [`DeviceAllocation`]: device memory NVENC can register, owned by zerohop instead of cudarc, and
//! [`DeviceNv12`], an NV12 picture in it; [`PinnedHost`]: page-locked host memory the CPU-encode
//! path downloads into ([`pinned_picture`]).
//!
//! cudarc's `CudaStream::alloc_zeros` allocates with `cuMemAllocAsync` (a stream-ordered memory
//! pool) wherever the device supports pools, which is the normal case on Linux, and NVENC
//! refuses to register stream-ordered memory (`NV_ENC_ERR_RESOURCE_REGISTER_FAILED`). NVIDIA's
//! own sample allocates NVENC inputs with `cuMemAllocPitch` inside a pushed context and frees
//! them with `cuMemFree` inside a pushed context after unregistering them
//! (NvEncoderCuda::AllocateInputBuffers / ReleaseCudaResources); so does this owner. NVENC
//! registrations keep an `Arc` of it, so it is freed only after the last one is unregistered.

use std::any::Any;
use std::ptr::NonNull;
use std::sync::Arc;

use super::context::DeviceContext;
use super::error::CudaError;
use super::nvenc::InputBuffer;
use crate::accel::host_nv12::{HostNv12, PinnedBytes};

/// A pitched device allocation in one context, freed (with that context pushed) on drop.
#[derive(Debug)]
pub struct DeviceAllocation {
    ctx: Arc<DeviceContext>,
    ptr: u64,
    bytes: usize,
    pitch: usize,
}

impl DeviceAllocation {
    /// `rows` rows of at least `width_bytes` bytes with the pitch the driver picks
    /// (`cuMemAllocPitch`), zeroed, in `ctx`.
    pub fn pitched(ctx: &Arc<DeviceContext>, width_bytes: usize, rows: usize) -> Result<DeviceAllocation, CudaError> {
        if width_bytes == 0 || rows == 0 {
            return Err(CudaError::Invalid(format!("a {width_bytes}-byte x {rows}-row device allocation")));
        }
        let _current = ctx.push()?;
        let (ptr, pitch) = ctx.mem_alloc_pitch(width_bytes, rows)?;
        // From here on `Drop` frees it.
        let a = DeviceAllocation { ctx: ctx.clone(), ptr, bytes: pitch * rows, pitch };
        // SAFETY: the whole allocation, just made in this (pushed) context.
        unsafe { ctx.mem_zero(ptr, a.bytes) }?;
        Ok(a)
    }

    /// The context it was allocated in.
    pub fn context(&self) -> &Arc<DeviceContext> {
        &self.ctx
    }

    /// Bytes per row, as the driver chose it (at least the width asked for).
    pub fn pitch(&self) -> usize {
        self.pitch
    }

    /// Size in bytes (pitch x rows).
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// Never empty (a zero-size allocation is refused).
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// The device address.
    ///
    /// # Safety
    /// Only for handing to the driver (or a kernel) while `self` is alive.
    pub unsafe fn device_ptr(&self) -> u64 {
        self.ptr
    }
}

impl Drop for DeviceAllocation {
    /// `cuMemFree` with the allocation's context pushed (whatever this thread had current is
    /// restored); a failure is recorded on the context.
    fn drop(&mut self) {
        let _current = self.ctx.push_for_release();
        // SAFETY: allocated by `pitched` in this context, freed once; NVENC registrations hold an
        // `Arc` of this owner, so none is left.
        let freed = unsafe { self.ctx.mem_free(self.ptr) };
        self.ctx.record_release(freed);
    }
}

/// Page-locked host memory (`cuMemHostAlloc`) of one context, freed (`cuMemFreeHost`, with that
/// context pushed) on drop. A device-to-host `cuMemcpy2DAsync` into it is queued and returns at
/// once; into pageable memory the driver copies synchronously (the CUDA driver API reference,
/// "API synchronization behavior": a transfer from device to pageable host memory returns only
/// once the copy has completed). Page-locking is costly and the driver API reference for
/// cuMemHostAlloc advises using it "sparingly ... for staging areas", so the CPU encoders recycle
/// these buffers: one allocation per rung per size, not per picture.
#[derive(Debug)]
pub struct PinnedHost {
    ctx: Arc<DeviceContext>,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `PinnedHost` owns its bytes exclusively (they are reached only through `&self` /
// `&mut self`), and the driver frees page-locked memory from any thread once the context is
// pushed, which `Drop` does.
unsafe impl Send for PinnedHost {}
// SAFETY: shared references only read the bytes.
unsafe impl Sync for PinnedHost {}

impl PinnedHost {
    /// `len` bytes of page-locked memory of `ctx`, zeroed.
    pub fn alloc(ctx: &Arc<DeviceContext>, len: usize) -> Result<PinnedHost, CudaError> {
        if len == 0 {
            return Err(CudaError::Invalid("a 0-byte page-locked allocation".into()));
        }
        let _current = ctx.push()?;
        let ptr = ctx.mem_host_alloc(len)?;
        let Some(ptr) = NonNull::new(ptr) else {
            return Err(CudaError::Invalid("cuMemHostAlloc returned a null pointer".into()));
        };
        // From here on `Drop` frees it.
        let p = PinnedHost { ctx: ctx.clone(), ptr, len };
        // SAFETY: `len` writable bytes just allocated for this owner alone; the driver does not
        // clear them, and they are read as `u8` only once written.
        unsafe { p.ptr.as_ptr().write_bytes(0, len) };
        Ok(p)
    }
}

impl PinnedBytes for PinnedHost {
    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` initialised bytes owned by `self` (zeroed in `alloc`), borrowed with it.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `bytes`, borrowed exclusively with `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PinnedHost {
    /// `cuMemFreeHost` with the context pushed (whatever this thread had current is restored);
    /// a failure is recorded on the context.
    fn drop(&mut self) {
        let _current = self.ctx.push_for_release();
        // SAFETY: allocated by `alloc` in this context, freed once; every copy into it was
        // synchronised by the download that queued it before the buffer was handed on.
        let freed = unsafe { self.ctx.mem_free_host(self.ptr.as_ptr()) };
        self.ctx.record_release(freed);
    }
}

/// An NV12 picture in device memory (an NVENC input buffer or a test picture): the owner of its
/// allocation, which NVENC registrations share (see [`InputBuffer`]).
#[derive(Debug)]
pub struct DeviceNv12 {
    buf: Arc<DeviceAllocation>,
    width: u32,
    height: u32,
    pitch: usize,
}

impl DeviceNv12 {
    /// An NV12 buffer of `width` x `height` in `ctx`, zeroed: `cuMemAllocPitch` (as
    /// NvEncoderCuda::AllocateInputBuffers), with the pitch the driver chose; chroma starts
    /// `pitch * height` bytes in. Never from a stream-ordered pool: NVENC registers it.
    pub fn alloc(ctx: &Arc<DeviceContext>, width: u32, height: u32) -> Result<DeviceNv12, CudaError> {
        let rows = height as usize + height.div_ceil(2) as usize;
        // A chroma row holds 2 x ceil(width / 2) bytes: one more than the width when it is odd.
        let buf = DeviceAllocation::pitched(ctx, HostNv12::row_bytes(width), rows)?;
        let pitch = buf.pitch();
        Ok(DeviceNv12 { buf: Arc::new(buf), width, height, pitch })
    }

    /// The allocation (tests look it up in the memory double).
    pub fn allocation(&self) -> &Arc<DeviceAllocation> {
        &self.buf
    }

    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
    /// Bytes per row (chroma starts `pitch * height` bytes in).
    pub fn pitch(&self) -> usize {
        self.pitch
    }
}

// SAFETY: `device_ptr` is the start of the allocation, pitch x (height + ceil(height / 2))
// bytes in its context; it is freed only when the last clone of its `Arc` (the buffer's own, and
// one per NVENC registration) is dropped.
unsafe impl InputBuffer for DeviceNv12 {
    fn dims(&self) -> (u32, u32, usize) {
        (self.width, self.height, self.pitch)
    }
    fn allocation(&self) -> Arc<dyn Any + Send + Sync> {
        self.buf.clone()
    }
    fn made_on(&self, ctx: &DeviceContext) -> bool {
        self.buf.context().raw_context() == ctx.raw_context()
    }
    unsafe fn device_ptr(&self) -> u64 {
        // SAFETY: the caller's contract (handed to the driver while the allocation is held).
        unsafe { self.buf.device_ptr() }
    }
}

/// A host picture of `width` x `height` in page-locked memory of `ctx`, rows packed (pitch
/// [`HostNv12::row_bytes`]): what [`download_ladder`] copies a rung picture into.
pub fn pinned_picture(ctx: &Arc<DeviceContext>, width: u32, height: u32) -> Result<HostNv12, CudaError> {
    let pitch = HostNv12::row_bytes(width);
    let bytes = PinnedHost::alloc(ctx, HostNv12::len(pitch, height))?;
    Ok(HostNv12::pinned(width, height, pitch, Box::new(bytes)))
}
