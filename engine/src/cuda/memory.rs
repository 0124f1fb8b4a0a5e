//! [`DeviceAllocation`]: device memory NVENC can register, owned by zerohop instead of cudarc.
//!
//! cudarc's `CudaStream::alloc_zeros` allocates with `cuMemAllocAsync` (a stream-ordered memory
//! pool) wherever the device supports pools, which is the normal case on Linux, and NVENC
//! refuses to register stream-ordered memory (`NV_ENC_ERR_RESOURCE_REGISTER_FAILED`). NVIDIA's
//! own sample allocates NVENC inputs with `cuMemAllocPitch` inside a pushed context and frees
//! them with `cuMemFree` inside a pushed context after unregistering them
//! (NvEncoderCuda::AllocateInputBuffers / ReleaseCudaResources); so does this owner. NVENC
//! registrations keep an `Arc` of it, so it is freed only after the last one is unregistered.

use std::sync::Arc;

use super::context::DeviceContext;
use super::error::CudaError;

/// A pitched device allocation in one context, freed (with that context pushed) on drop.
pub struct DeviceAllocation {
    ctx: Arc<DeviceContext>,
    ptr: u64,
    bytes: usize,
    pitch: usize,
}

impl std::fmt::Debug for DeviceAllocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAllocation").field("bytes", &self.bytes).field("pitch", &self.pitch).finish()
    }
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
