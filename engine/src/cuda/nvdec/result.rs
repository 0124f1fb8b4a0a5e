//! cuvid's result layer: one function per entry point zerohop calls, each returning
//! `Result<_, CudaError>` that names the call and its `CUresult`. The safe owners
//! ([`NvDecoder`](super::NvDecoder), its decoder and [`MappedFrame`](super::MappedFrame)) call
//! only these. Functions that take a parser or decoder handle are `unsafe`: the handle must be
//! live.

use nvidia_video_codec_sdk::sys::cuviddec as dec;
use nvidia_video_codec_sdk::sys::nvcuvid as cuvid;

use super::CuvidApi;
use crate::cuda::error::CudaError;

fn check(api: &'static str, code: u32) -> Result<(), CudaError> {
    if code == 0 { Ok(()) } else { Err(CudaError::Cuvid { api, code }) }
}

/// A create call that writes the new handle through its out-pointer: the handle.
fn created<H>(api: &'static str, call: impl FnOnce(*mut *mut H) -> u32) -> Result<*mut H, CudaError> {
    let mut handle = std::ptr::null_mut();
    check(api, call(&mut handle))?;
    Ok(handle)
}

/// `cuvidCreateVideoParser`.
///
/// # Safety
/// `params.pUserData` stays valid for the callbacks until the parser is destroyed.
pub(crate) unsafe fn create_parser(
    api: &CuvidApi,
    params: &mut cuvid::CUVIDPARSERPARAMS,
) -> Result<cuvid::CUvideoparser, CudaError> {
    // SAFETY: valid out-pointer and parameters; the user data outlives the parser (contract).
    created("cuvidCreateVideoParser", |parser| unsafe { (api.fns.create_parser)(parser, params) })
}

/// `cuvidCreateDecoder` on the context current on this thread (it must be current: NVIDIA's
/// NvDecoder pushes its context around this call).
pub(crate) fn create_decoder(
    api: &CuvidApi,
    ci: &mut dec::CUVIDDECODECREATEINFO,
) -> Result<dec::CUvideodecoder, CudaError> {
    // SAFETY: valid out-pointer and create-info for the call; no handle is involved (without a
    // current context the driver answers an error).
    created("cuvidCreateDecoder", |decoder| unsafe { (api.fns.create_decoder)(decoder, ci) })
}

/// `cuvidMapVideoFrame64`: the picture's device address and pitch, valid until unmapped.
///
/// # Safety
/// `decoder` is live and `index` a picture the parser handed to the display callback.
pub(crate) unsafe fn map_video_frame(
    api: &CuvidApi,
    decoder: dec::CUvideodecoder,
    index: i32,
    vpp: &mut dec::CUVIDPROCPARAMS,
) -> Result<(u64, u32), CudaError> {
    let (mut ptr, mut pitch) = (0u64, 0u32);
    // SAFETY: live decoder (contract), valid out-pointers and processing parameters.
    check("cuvidMapVideoFrame64", unsafe { (api.fns.map)(decoder, index, &mut ptr, &mut pitch, vpp) })?;
    Ok((ptr, pitch))
}

/// The cuvid calls on a live parser or decoder that answer only a status. Each keeps its own
/// documentation and `# Safety`.
macro_rules! status_calls {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) => $entry:literal $field:ident;)*) => {$(
        $(#[$doc])*
        pub(crate) unsafe fn $name(api: &CuvidApi, $($arg: $ty),*) -> Result<(), CudaError> {
            // SAFETY: live handles and arguments valid for the call, as this function's `# Safety`
            // requires of its caller.
            check($entry, unsafe { (api.fns.$field)($($arg),*) })
        }
    )*};
}

status_calls! {
    /// `cuvidParseVideoData`: the parser's callbacks run inside this call.
    ///
    /// # Safety
    /// `parser` is live; its callbacks' user data is not borrowed elsewhere during the call;
    /// the packet's payload outlives the call (the parser copies what it keeps).
    fn parse_video_data(parser: cuvid::CUvideoparser, pkt: &mut cuvid::CUVIDSOURCEDATAPACKET)
        => "cuvidParseVideoData" parse;

    /// `cuvidDestroyVideoParser`.
    ///
    /// # Safety
    /// `parser` is live and destroyed once.
    fn destroy_parser(parser: cuvid::CUvideoparser) => "cuvidDestroyVideoParser" destroy_parser;

    /// `cuvidDecodePicture`.
    ///
    /// # Safety
    /// `decoder` is live; `pic` is the parser's picture parameters for it, valid for the call.
    fn decode_picture(decoder: dec::CUvideodecoder, pic: *mut dec::CUVIDPICPARAMS) => "cuvidDecodePicture" decode;

    /// `cuvidUnmapVideoFrame64`.
    ///
    /// # Safety
    /// `ptr` was mapped by [`map_video_frame`] on `decoder`, is unmapped once, and no work reading
    /// it is still queued.
    fn unmap_video_frame(decoder: dec::CUvideodecoder, ptr: u64) => "cuvidUnmapVideoFrame64" unmap;

    /// `cuvidDestroyDecoder` (its context current, nothing of it mapped).
    ///
    /// # Safety
    /// `decoder` is live and destroyed once.
    fn destroy_decoder(decoder: dec::CUvideodecoder) => "cuvidDestroyDecoder" destroy_decoder;
}

/// `cuvidGetDecoderCaps` on the context current on this thread.
pub(crate) fn decoder_caps(api: &CuvidApi, caps: &mut dec::CUVIDDECODECAPS) -> Result<(), CudaError> {
    // SAFETY: a valid in/out struct for the call; no handle is involved.
    check("cuvidGetDecoderCaps", unsafe { (api.fns.caps)(caps) })
}
