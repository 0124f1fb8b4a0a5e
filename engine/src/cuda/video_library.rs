//! An NVIDIA video library (`libnvcuvid.so.1` for NVDEC, `libnvidia-encode.so.1` for NVENC)
//! opened at run time, and its entry points resolved: one way to load both tables.

use super::error::{CudaError, cuda_driver_present, video_library_missing};

/// An open video library, or none when the entry points come from a test double. Its owner
/// keeps it beside the function pointers taken from it.
pub(crate) struct VideoLibrary {
    name: &'static str,
    lib: Option<libloading::Library>,
}

impl std::fmt::Debug for VideoLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.lib.is_some() { self.name } else { "test double" })
    }
}

impl VideoLibrary {
    /// Opens `name`. Not there: `NoVideoCapability` when a CUDA driver is present (a GPU
    /// without that engine, or a driver install without it), `NoDriver` when none is.
    pub(crate) fn open(name: &'static str) -> Result<VideoLibrary, CudaError> {
        // SAFETY: loading an NVIDIA video library runs its initialisers, which need nothing from
        // us; the handle is kept as long as the function pointers (see the type's docs).
        let lib = unsafe { libloading::Library::new(name) }
            .map_err(|e| video_library_missing(name, e.to_string(), cuda_driver_present()))?;
        Ok(VideoLibrary { name, lib: Some(lib) })
    }

    /// No library: the entry points come from a test double.
    #[cfg(test)]
    pub(crate) fn none(name: &'static str) -> VideoLibrary {
        VideoLibrary { name, lib: None }
    }

    /// The entry point `symbol` as a `T`; one the library lacks is `MissingSymbol`.
    ///
    /// # Safety
    /// `T` is the symbol's C signature (a function pointer type), and what is returned is used
    /// only while this library is open.
    pub(crate) unsafe fn symbol<T: Copy>(&self, symbol: &'static str) -> Result<T, CudaError> {
        let missing = || CudaError::MissingSymbol { lib: self.name, symbol };
        let lib = self.lib.as_ref().ok_or_else(missing)?;
        // SAFETY: `T` is the symbol's signature and the pointer does not outlive the library
        // (the caller's contract).
        unsafe { lib.get::<T>(symbol.as_bytes()) }.map(|s| *s).map_err(|_| missing())
    }
}
