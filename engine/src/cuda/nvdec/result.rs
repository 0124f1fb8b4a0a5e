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

/// `cuvidCreateVideoParser`.
///
/// # Safety
/// `params.pUserData` stays valid for the callbacks until the parser is destroyed.
pub(crate) unsafe fn create_parser(
    api: &CuvidApi,
    params: &mut cuvid::CUVIDPARSERPARAMS,
) -> Result<cuvid::CUvideoparser, CudaError> {
    let mut parser = std::ptr::null_mut();
    // SAFETY: valid out-pointer and parameters; the user data outlives the parser (contract).
    check("cuvidCreateVideoParser", unsafe { (api.fns.create_parser)(&mut parser, params) })?;
    Ok(parser)
}

/// `cuvidParseVideoData`: the parser's callbacks run inside this call.
///
/// # Safety
/// `parser` is live; its callbacks' user data is not borrowed elsewhere during the call.
pub(crate) unsafe fn parse_video_data(
    api: &CuvidApi,
    parser: cuvid::CUvideoparser,
    pkt: &mut cuvid::CUVIDSOURCEDATAPACKET,
) -> Result<(), CudaError> {
    // SAFETY: live parser and a valid packet whose payload outlives the call (the parser copies
    // what it keeps) (contract).
    check("cuvidParseVideoData", unsafe { (api.fns.parse)(parser, pkt) })
}

/// `cuvidDestroyVideoParser`.
///
/// # Safety
/// `parser` is live and destroyed once.
pub(crate) unsafe fn destroy_parser(api: &CuvidApi, parser: cuvid::CUvideoparser) -> Result<(), CudaError> {
    // SAFETY: a live parser (contract).
    check("cuvidDestroyVideoParser", unsafe { (api.fns.destroy_parser)(parser) })
}

/// `cuvidCreateDecoder` on the context current on this thread (it must be current: NVIDIA's
/// NvDecoder pushes its context around this call).
pub(crate) fn create_decoder(
    api: &CuvidApi,
    ci: &mut dec::CUVIDDECODECREATEINFO,
) -> Result<dec::CUvideodecoder, CudaError> {
    let mut d = std::ptr::null_mut();
    // SAFETY: valid out-pointer and create-info for the call; no handle is involved (without a
    // current context the driver answers an error).
    check("cuvidCreateDecoder", unsafe { (api.fns.create_decoder)(&mut d, ci) })?;
    Ok(d)
}

/// `cuvidDecodePicture`.
///
/// # Safety
/// `decoder` is live; `pic` is the parser's picture parameters for it, valid for the call.
pub(crate) unsafe fn decode_picture(
    api: &CuvidApi,
    decoder: dec::CUvideodecoder,
    pic: *mut dec::CUVIDPICPARAMS,
) -> Result<(), CudaError> {
    // SAFETY: live decoder and parameters (contract).
    check("cuvidDecodePicture", unsafe { (api.fns.decode)(decoder, pic) })
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

/// `cuvidUnmapVideoFrame64`.
///
/// # Safety
/// `ptr` was mapped by [`map_video_frame`] on `decoder`, is unmapped once, and no work reading
/// it is still queued.
pub(crate) unsafe fn unmap_video_frame(
    api: &CuvidApi,
    decoder: dec::CUvideodecoder,
    ptr: u64,
) -> Result<(), CudaError> {
    // SAFETY: a live mapping of a live decoder (contract).
    check("cuvidUnmapVideoFrame64", unsafe { (api.fns.unmap)(decoder, ptr) })
}

/// `cuvidDestroyDecoder` (its context current, nothing of it mapped).
///
/// # Safety
/// `decoder` is live and destroyed once.
pub(crate) unsafe fn destroy_decoder(api: &CuvidApi, decoder: dec::CUvideodecoder) -> Result<(), CudaError> {
    // SAFETY: a live decoder (contract).
    check("cuvidDestroyDecoder", unsafe { (api.fns.destroy_decoder)(decoder) })
}

/// `cuvidGetDecoderCaps` on the context current on this thread.
pub(crate) fn decoder_caps(api: &CuvidApi, caps: &mut dec::CUVIDDECODECAPS) -> Result<(), CudaError> {
    // SAFETY: a valid in/out struct for the call; no handle is involved.
    check("cuvidGetDecoderCaps", unsafe { (api.fns.caps)(caps) })
}
