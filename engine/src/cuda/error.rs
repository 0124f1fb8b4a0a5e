//! Errors of the CUDA backend: every driver, NVDEC and NVENC failure as a value naming the API
//! call and its status. A missing driver is `NoDriver`, never a panic.
//!
//! Releases in `Drop` cannot return their status, so they record it (as cudarc's context records
//! its own): [`release_failures`] is the process-wide count and the latest failure, and
//! each device context counts those of its children.

/// A CUDA-backend failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CudaError {
    /// The library could not be loaded (no NVIDIA driver on this machine, or not this part).
    #[error("{lib} could not be loaded ({why}): no NVIDIA driver here (the CPU backend needs none)")]
    NoDriver { lib: &'static str, why: String },
    /// The CUDA driver is here but not its video part: `libnvidia-encode` or `libnvcuvid` is
    /// missing, as in a container started without `video` in `NVIDIA_DRIVER_CAPABILITIES`.
    #[error(
        "{lib} could not be loaded ({why}): the NVIDIA driver is here but not its video part \
         (NVENC/NVDEC); in a container, set NVIDIA_DRIVER_CAPABILITIES to include `video` \
         (e.g. compute,utility,video)"
    )]
    NoVideoCapability { lib: &'static str, why: String },
    /// An entry point the driver library should export is missing (driver too old).
    #[error("{lib} has no {symbol}: the NVIDIA driver is too old for zerohop (needs R530+ for NVENC API 12.1)")]
    MissingSymbol { lib: &'static str, symbol: &'static str },
    /// A CUDA driver API call failed.
    #[error("{api} failed: {status}")]
    Driver { api: &'static str, status: String },
    /// An NVENC call failed.
    #[error("{api} failed: {status}")]
    Nvenc { api: &'static str, status: String },
    /// An NVDEC (cuvid) call failed.
    #[error("{api} failed: CUresult {code}")]
    Cuvid { api: &'static str, code: u32 },
    /// The GPU has no NVENC (H100, H200, A100...) or cannot encode H.264 at this size.
    #[error("GPU {ordinal} cannot encode: {why}")]
    NoEncoder { ordinal: usize, why: String },
    /// The GPU is too old for zerohop (before Turing, compute capability 7.5).
    #[error("GPU {ordinal} is not supported: {why}")]
    Unsupported { ordinal: usize, why: String },
    /// The GPU's NVDEC cannot decode this stream.
    #[error("GPU {ordinal} cannot decode {what}")]
    NoDecoder { ordinal: usize, what: String },
    /// NVENC refused another session (consumer GPUs cap concurrent sessions).
    #[error("NVENC session limit reached on GPU {ordinal} ({api}: {status})")]
    SessionLimit { ordinal: usize, api: &'static str, status: String },
    /// Compiling the kernels at run time failed.
    #[error("kernel compilation (NVRTC): {0}")]
    Nvrtc(String),
    /// A call made with arguments the layer refuses before reaching the driver.
    #[error("{0}")]
    Invalid(String),
}

impl CudaError {
    /// A stable code, as the engine's other errors have.
    pub fn code(&self) -> &'static str {
        match self {
            // The message tells a missing video part from a missing driver.
            CudaError::NoDriver { .. }
            | CudaError::MissingSymbol { .. }
            | CudaError::NoVideoCapability { .. }
            | CudaError::Unsupported { .. } => "gpu_unavailable",
            CudaError::Driver { .. } => "cuda_error",
            CudaError::Nvenc { .. } => "nvenc_error",
            CudaError::Cuvid { .. } => "nvdec_error",
            CudaError::NoEncoder { .. } => "no_nvenc",
            CudaError::NoDecoder { .. } => "no_nvdec",
            CudaError::SessionLimit { .. } => "gpu_session_limit",
            CudaError::Nvrtc(_) => "kernel_compile",
            CudaError::Invalid(_) => "invalid_gpu_call",
        }
    }
}

/// What a failed `dlopen` of a video library (`libnvidia-encode`, `libnvcuvid`) means: with
/// the CUDA driver present, its video part is missing (a container without the `video`
/// capability); without it, there is no driver at all.
pub(crate) fn video_library_missing(lib: &'static str, why: String, cuda_driver_present: bool) -> CudaError {
    if cuda_driver_present { CudaError::NoVideoCapability { lib, why } } else { CudaError::NoDriver { lib, why } }
}

/// Whether `libcuda` can be loaded here.
pub(crate) fn cuda_driver_present() -> bool {
    // SAFETY: only tries to dlopen the library candidates; nothing is called through them.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

pub(crate) fn driver_error(api: &'static str) -> impl FnOnce(cudarc::driver::DriverError) -> CudaError {
    move |e| CudaError::Driver { api, status: format!("{e:?}") }
}

/// Failed releases (unmap, unregister, destroy, free) seen in `Drop` anywhere in the process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReleaseFailures {
    pub count: u64,
    /// The most recent one.
    pub last: Option<CudaError>,
}

static RELEASE_COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static RELEASE_LAST: std::sync::Mutex<Option<CudaError>> = std::sync::Mutex::new(None);

#[cfg(test)]
thread_local! {
    static THREAD_RELEASE_COUNT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Every release that failed in `Drop` so far, process-wide.
pub fn release_failures() -> ReleaseFailures {
    let last = RELEASE_LAST.lock().map(|l| l.clone()).unwrap_or_else(|p| p.into_inner().clone());
    ReleaseFailures { count: RELEASE_COUNT.load(std::sync::atomic::Ordering::Relaxed), last }
}

/// Records a release's failure (no-op on success): logged, counted process-wide and kept as the
/// latest.
pub(crate) fn record_release(r: Result<(), CudaError>) -> bool {
    let Err(e) = r else { return true };
    tracing::warn!(error = %e, "a GPU resource could not be released");
    RELEASE_COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    #[cfg(test)]
    THREAD_RELEASE_COUNT.with(|c| c.set(c.get() + 1));
    match RELEASE_LAST.lock() {
        Ok(mut l) => *l = Some(e),
        Err(p) => *p.into_inner() = Some(e),
    }
    false
}

/// Failed releases recorded on this thread (tests run in parallel; the process count is shared).
#[cfg(test)]
pub(crate) fn thread_release_failures() -> u64 {
    THREAD_RELEASE_COUNT.with(|c| c.get())
}
