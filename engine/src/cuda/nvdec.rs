//! NVDEC through the cuvid parser, in three layers, as cudarc does the driver: the SDK's
//! `cuviddec`/`nvcuvid` bindings (types only) and [`CuvidApi`] (the entry points resolved at run
//! time from `libnvcuvid.so.1`); `result` (one function per entry point, each returning
//! `Result<_, CudaError>` naming it and its `CUresult`); and the safe owners, which call only
//! `result`: [`NvDecoder`] (the parser, and the decoder of the current format) and
//! [`MappedFrame`] (one mapped picture).
//!
//! Ownership: the decoder holds an `Arc` of its [`DeviceContext`] and binds it on the calling
//! thread for every call that needs it (creating and destroying the decoder, as NVIDIA's
//! NvDecoder pushes its context) and in `Drop`, which destroys the parser (it calls back into
//! the decoder's state) before the decoder. A `MappedFrame<'_>` borrows the decoder it was
//! mapped from, is not `Copy`, and unmaps itself: it cannot outlive its mapping, nor the
//! decoder be destroyed under it. Failed releases are recorded on the context, never discarded.
//!
//! Flow (NVIDIA's decoder guide, AppDec): access units go to `cuvidParseVideoData` with their PTS
//! (90 kHz clock); the parser calls back on a new sequence (we check codec, chroma and depth and
//! create the decoder with the stream's DPB plus pipeline depth in surfaces), on each picture to
//! decode (`cuvidDecodePicture`) and on each picture to display (queued). After each parse call
//! the queued pictures are mapped (`cuvidMapVideoFrame64` on the scaling stream), lent to the
//! caller as a [`MappedFrame`], and unmapped as soon as the caller returns.

use std::collections::VecDeque;
use std::ffi::{c_int, c_uint, c_ulong, c_void};
use std::sync::Arc;

use nvidia_video_codec_sdk::sys::cuviddec as dec;
use nvidia_video_codec_sdk::sys::nvcuvid as cuvid;

use super::context::DeviceContext;
use super::error::CudaError;
use super::video_library::VideoLibrary;

pub(crate) mod result;

const LIB: &str = "libnvcuvid.so.1";

/// Extra decode surfaces beyond the stream's own need: pictures mapped or queued for display
/// while the decoder goes on.
const PIPELINE_SURFACES: u32 = 4;

// Entry points, declared with a plain `u32` CUresult (no invalid-enum hazard).
pub(crate) type CreateParserFn = unsafe extern "C" fn(*mut cuvid::CUvideoparser, *mut cuvid::CUVIDPARSERPARAMS) -> u32;
pub(crate) type ParseFn = unsafe extern "C" fn(cuvid::CUvideoparser, *mut cuvid::CUVIDSOURCEDATAPACKET) -> u32;
pub(crate) type DestroyParserFn = unsafe extern "C" fn(cuvid::CUvideoparser) -> u32;
pub(crate) type CreateDecoderFn =
    unsafe extern "C" fn(*mut dec::CUvideodecoder, *mut dec::CUVIDDECODECREATEINFO) -> u32;
pub(crate) type DecodeFn = unsafe extern "C" fn(dec::CUvideodecoder, *mut dec::CUVIDPICPARAMS) -> u32;
pub(crate) type MapFn =
    unsafe extern "C" fn(dec::CUvideodecoder, c_int, *mut u64, *mut c_uint, *mut dec::CUVIDPROCPARAMS) -> u32;
pub(crate) type UnmapFn = unsafe extern "C" fn(dec::CUvideodecoder, u64) -> u32;
pub(crate) type DestroyDecoderFn = unsafe extern "C" fn(dec::CUvideodecoder) -> u32;
pub(crate) type CapsFn = unsafe extern "C" fn(*mut dec::CUVIDDECODECAPS) -> u32;

/// The cuvid entry points zerohop uses.
#[derive(Clone, Copy)]
pub struct CuvidFns {
    pub(crate) create_parser: CreateParserFn,
    pub(crate) parse: ParseFn,
    pub(crate) destroy_parser: DestroyParserFn,
    pub(crate) create_decoder: CreateDecoderFn,
    pub(crate) decode: DecodeFn,
    pub(crate) map: MapFn,
    pub(crate) unmap: UnmapFn,
    pub(crate) destroy_decoder: DestroyDecoderFn,
    pub(crate) caps: CapsFn,
}

impl std::fmt::Debug for CuvidFns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CuvidFns")
    }
}

/// The cuvid entry points, from the driver ([`CuvidApi::load`]) or a test double. `Send` and
/// `Sync` as its parts are: cuvid entry points may be called from any thread (each decoder's
/// calls are serialised through `&mut NvDecoder`).
#[derive(Debug)]
pub struct CuvidApi {
    fns: CuvidFns,
    /// Keeps the library mapped while `fns` are in use.
    _lib: VideoLibrary,
}

impl CuvidApi {
    /// Loads `libnvcuvid.so.1` and resolves the entry points. No driver: `NoDriver`.
    pub fn load() -> Result<Arc<CuvidApi>, CudaError> {
        let lib = VideoLibrary::open(LIB)?;
        // SAFETY: each symbol has this C signature in cuviddec.h / nvcuvid.h (SDK 12.1); the
        // pointers are used only while `lib` is open (it moves into the CuvidApi beside them).
        let fns = unsafe {
            CuvidFns {
                create_parser: lib.symbol("cuvidCreateVideoParser")?,
                parse: lib.symbol("cuvidParseVideoData")?,
                destroy_parser: lib.symbol("cuvidDestroyVideoParser")?,
                create_decoder: lib.symbol("cuvidCreateDecoder")?,
                decode: lib.symbol("cuvidDecodePicture")?,
                map: lib.symbol("cuvidMapVideoFrame64")?,
                unmap: lib.symbol("cuvidUnmapVideoFrame64")?,
                destroy_decoder: lib.symbol("cuvidDestroyDecoder")?,
                caps: lib.symbol("cuvidGetDecoderCaps")?,
            }
        };
        Ok(Arc::new(CuvidApi { fns, _lib: lib }))
    }

    /// Entry points from elsewhere: the recording fake in tests (a test double of the driver).
    #[cfg(test)]
    pub(crate) fn from_fns(fns: CuvidFns) -> Arc<CuvidApi> {
        Arc::new(CuvidApi { fns, _lib: VideoLibrary::none(LIB) })
    }

    /// What NVDEC on `ctx`'s GPU can do for 8-bit 4:2:0 H.264 (binds `ctx` on this thread).
    pub fn h264_caps(&self, ctx: &DeviceContext) -> Result<DecodeCaps, CudaError> {
        let _current = ctx.push()?;
        // SAFETY: CUVIDDECODECAPS is plain data whose enums have zero values (MPEG1, monochrome).
        let mut c: dec::CUVIDDECODECAPS = unsafe { std::mem::zeroed() };
        c.eCodecType = dec::cudaVideoCodec::cudaVideoCodec_H264;
        c.eChromaFormat = dec::cudaVideoChromaFormat::cudaVideoChromaFormat_420;
        c.nBitDepthMinus8 = 0;
        result::decoder_caps(self, &mut c)?;
        Ok(DecodeCaps {
            supported: c.bIsSupported != 0,
            engines: u32::from(c.nNumNVDECs),
            max_width: c.nMaxWidth,
            max_height: c.nMaxHeight,
        })
    }
}

/// NVDEC's H.264 capabilities on one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeCaps {
    pub supported: bool,
    pub engines: u32,
    pub max_width: u32,
    pub max_height: u32,
}

/// The stream's format, from the parser's sequence callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoFormat {
    pub coded_width: u32,
    pub coded_height: u32,
    /// Visible area (left, top, right, bottom) inside the coded picture.
    pub display: (i32, i32, i32, i32),
    pub decode_surfaces: u32,
}

impl VideoFormat {
    pub fn width(&self) -> u32 {
        (self.display.2 - self.display.0).max(0) as u32
    }
    pub fn height(&self) -> u32 {
        (self.display.3 - self.display.1).max(0) as u32
    }
}

/// One NVDEC decoder (for one stream format): the only owner of its handle. `Drop` binds its
/// context and destroys it (nothing of it can be mapped then: mapped pictures borrow it).
struct Decoder {
    api: Arc<CuvidApi>,
    ctx: Arc<DeviceContext>,
    handle: dec::CUvideodecoder,
    format: VideoFormat,
}

impl Decoder {
    fn create(
        api: &Arc<CuvidApi>,
        ctx: &Arc<DeviceContext>,
        ci: &mut dec::CUVIDDECODECREATEINFO,
        format: VideoFormat,
    ) -> Result<Decoder, CudaError> {
        let _current = ctx.push()?;
        let handle = result::create_decoder(api, ci)?;
        Ok(Decoder { api: api.clone(), ctx: ctx.clone(), handle, format })
    }

    /// Maps picture `index` on the context's stream.
    fn map(&self, index: c_int, pts: i64) -> Result<MappedFrame<'_>, CudaError> {
        // SAFETY: CUVIDPROCPARAMS is plain data (no enums); reserved fields must be zero.
        let mut vpp: dec::CUVIDPROCPARAMS = unsafe { std::mem::zeroed() };
        vpp.progressive_frame = 1;
        vpp.output_stream = self.ctx.raw_stream().cast();
        // SAFETY: a live decoder; `index` came from the parser's display callback.
        let (ptr, pitch) = unsafe { result::map_video_frame(&self.api, self.handle, index, &mut vpp) }?;
        Ok(MappedFrame { decoder: self, ptr, pitch, pts, unmapped: false })
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        let ctx = self.ctx.clone();
        let _current = ctx.push_for_release();
        // SAFETY: the handle came from cuvidCreateDecoder and is destroyed once; no picture of it
        // is mapped (a MappedFrame borrows its decoder).
        self.ctx.record_release(unsafe { result::destroy_decoder(&self.api, self.handle) });
    }
}

/// One decoded picture, mapped: NV12 in device memory, `pitch` bytes per row, chroma after
/// `surface_height` rows of luma. It borrows its decoder and is unmapped when dropped (or by
/// [`unmap`](MappedFrame::unmap), which returns the status).
pub struct MappedFrame<'a> {
    decoder: &'a Decoder,
    ptr: u64,
    pitch: u32,
    pts: i64,
    unmapped: bool,
}

impl std::fmt::Debug for MappedFrame<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFrame")
            .field("width", &self.width())
            .field("height", &self.height())
            .field("pitch", &self.pitch)
            .field("pts", &self.pts)
            .finish()
    }
}

impl MappedFrame<'_> {
    /// Visible width.
    pub fn width(&self) -> u32 {
        self.decoder.format.width()
    }
    /// Visible height.
    pub fn height(&self) -> u32 {
        self.decoder.format.height()
    }
    /// Bytes per row.
    pub fn pitch(&self) -> u32 {
        self.pitch
    }
    /// Rows of the surface (the decoder's target height): where chroma starts.
    pub fn surface_height(&self) -> u32 {
        self.decoder.format.height()
    }
    pub fn pts(&self) -> i64 {
        self.pts
    }

    /// Surfaces of the decoder that made it (what one parse call can release at most).
    pub fn decode_surfaces(&self) -> u32 {
        self.decoder.format.decode_surfaces
    }
    /// The context the picture lives in.
    pub fn context(&self) -> &Arc<DeviceContext> {
        &self.decoder.ctx
    }

    /// The picture's device address.
    ///
    /// # Safety
    /// Only for reading, by work that completes before this frame is unmapped (dropped).
    pub(crate) unsafe fn device_ptr(&self) -> u64 {
        self.ptr
    }

    /// Unmaps the picture, returning the status (a drop unmaps too, and records a failure).
    /// Work reading it must be complete.
    pub fn unmap(mut self) -> Result<(), CudaError> {
        self.unmapped = true;
        // SAFETY: mapped on this (borrowed, so live) decoder and unmapped once (flagged).
        unsafe { result::unmap_video_frame(&self.decoder.api, self.decoder.handle, self.ptr) }
    }
}

impl Drop for MappedFrame<'_> {
    fn drop(&mut self) {
        if !self.unmapped {
            // SAFETY: mapped on this (borrowed, so live) decoder and unmapped once.
            let r = unsafe { result::unmap_video_frame(&self.decoder.api, self.decoder.handle, self.ptr) };
            self.decoder.ctx.record_release(r);
        }
    }
}

/// State the parser's callbacks work on (boxed: its address is the parser's user data).
struct Callbacks {
    api: Arc<CuvidApi>,
    ctx: Arc<DeviceContext>,
    decoder: Option<Decoder>,
    /// Decoders replaced by a format change while pictures they decoded were still queued for
    /// display: kept until those are delivered (mapped on the decoder that decoded them).
    retired: Vec<Decoder>,
    /// Pictures to display: picture index, PTS, and the handle of the decoder that decoded it
    /// (a new sequence replaces the decoder in the middle of a parse call).
    display: VecDeque<(c_int, i64, usize)>,
    error: Option<CudaError>,
    pictures_decoded: u64,
}

impl Callbacks {
    /// Sequence callback: returns the decode surfaces to use, or 0 to fail the parse.
    fn sequence(&mut self, f: &cuvid::CUVIDEOFORMAT) -> c_int {
        let ordinal = self.ctx.ordinal();
        let refuse = |what: String| CudaError::NoDecoder { ordinal, what };
        if f.codec != dec::cudaVideoCodec::cudaVideoCodec_H264 {
            self.error = Some(refuse(format!("codec {:?} (zerohop decodes H.264)", f.codec)));
            return 0;
        }
        if f.chroma_format != dec::cudaVideoChromaFormat::cudaVideoChromaFormat_420
            || f.bit_depth_luma_minus8 != 0
            || f.bit_depth_chroma_minus8 != 0
        {
            self.error = Some(refuse(format!(
                "{:?} at {} bits (zerohop decodes 8-bit 4:2:0)",
                f.chroma_format,
                8 + f.bit_depth_luma_minus8
            )));
            return 0;
        }
        let surfaces = u32::from(f.min_num_decode_surfaces).max(1) + PIPELINE_SURFACES;
        let format = VideoFormat {
            coded_width: f.coded_width,
            coded_height: f.coded_height,
            display: (f.display_area.left, f.display_area.top, f.display_area.right, f.display_area.bottom),
            decode_surfaces: surfaces,
        };
        if self.decoder.as_ref().is_some_and(|d| d.format == format) {
            return surfaces as c_int; // same stream parameters: keep the warm decoder
        }
        // The old decoder goes first (nothing of it is mapped: pictures are delivered, and
        // unmapped, between parse calls).
        // Pictures of the old decoder still queued for display are mapped on it, not on the new
        // one (a mid-stream size change with pictures held back): it is retired, not destroyed,
        // until they are delivered.
        if let Some(old) = self.decoder.take()
            && self.display.iter().any(|&(_, _, d)| d == old.handle as usize)
        {
            self.retired.push(old);
        }
        // SAFETY: CUVIDDECODECREATEINFO's enums all have zero values (MPEG1, monochrome, NV12,
        // weave); reserved fields must be zero.
        let mut ci: dec::CUVIDDECODECREATEINFO = unsafe { std::mem::zeroed() };
        ci.ulWidth = c_ulong::from(f.coded_width);
        ci.ulHeight = c_ulong::from(f.coded_height);
        ci.ulMaxWidth = c_ulong::from(f.coded_width);
        ci.ulMaxHeight = c_ulong::from(f.coded_height);
        ci.ulNumDecodeSurfaces = c_ulong::from(surfaces);
        ci.CodecType = f.codec;
        ci.ChromaFormat = f.chroma_format;
        ci.ulCreationFlags = dec::cudaVideoCreateFlags::cudaVideoCreate_PreferCUVID as c_ulong;
        ci.OutputFormat = dec::cudaVideoSurfaceFormat::cudaVideoSurfaceFormat_NV12;
        ci.DeinterlaceMode = dec::cudaVideoDeinterlaceMode::cudaVideoDeinterlaceMode_Weave;
        ci.display_area.left = f.display_area.left as i16;
        ci.display_area.top = f.display_area.top as i16;
        ci.display_area.right = f.display_area.right as i16;
        ci.display_area.bottom = f.display_area.bottom as i16;
        ci.ulTargetWidth = c_ulong::from(format.width());
        ci.ulTargetHeight = c_ulong::from(format.height());
        ci.ulNumOutputSurfaces = 2;
        match Decoder::create(&self.api, &self.ctx, &mut ci, format) {
            Ok(d) => {
                self.decoder = Some(d);
                surfaces as c_int
            }
            Err(e) => {
                self.error = Some(e);
                0
            }
        }
    }

    fn decode(&mut self, pic: *mut dec::CUVIDPICPARAMS) -> c_int {
        let Some(d) = &self.decoder else {
            self.error.get_or_insert(CudaError::Invalid("a picture before the sequence header".into()));
            return 0;
        };
        // SAFETY: a live decoder; the parser passes its own valid picture parameters for it.
        match unsafe { result::decode_picture(&d.api, d.handle, pic) } {
            Ok(()) => {
                self.pictures_decoded += 1;
                1
            }
            Err(e) => {
                self.error = Some(e);
                0
            }
        }
    }
}

/// Runs a callback body, turning a panic into a failed parse instead of unwinding into C.
fn guarded(user: *mut c_void, f: impl FnOnce(&mut Callbacks) -> c_int) -> c_int {
    // SAFETY: `user` is the boxed Callbacks the NvDecoder registered as pUserData; the parser
    // calls back only from inside cuvidParseVideoData, which NvDecoder calls with `&mut self`,
    // so no other reference to the Callbacks is live.
    let cb = unsafe { &mut *user.cast::<Callbacks>() };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(cb))) {
        Ok(v) => v,
        Err(_) => {
            cb.error = Some(CudaError::Invalid("panic in an NVDEC callback".into()));
            0
        }
    }
}

unsafe extern "C" fn on_sequence(user: *mut c_void, f: *mut cuvid::CUVIDEOFORMAT) -> c_int {
    // SAFETY: the parser passes a valid format for the duration of the callback.
    guarded(user, |cb| cb.sequence(unsafe { &*f }))
}

unsafe extern "C" fn on_decode(user: *mut c_void, pic: *mut dec::CUVIDPICPARAMS) -> c_int {
    guarded(user, |cb| cb.decode(pic))
}

unsafe extern "C" fn on_display(user: *mut c_void, d: *mut cuvid::CUVIDPARSERDISPINFO) -> c_int {
    guarded(user, |cb| {
        if !d.is_null() {
            // SAFETY: non-null display info from the parser, valid during the callback.
            let d = unsafe { &*d };
            let decoder = cb.decoder.as_ref().map_or(0, |d| d.handle as usize);
            cb.display.push_back((d.picture_index, d.timestamp, decoder));
        }
        1
    })
}

/// What receives each mapped picture; it must finish its reads of the picture on the context's
/// stream (or wait for them) before it returns: the picture is unmapped then.
pub type OnFrame<'f> = dyn FnMut(&MappedFrame<'_>) -> Result<(), CudaError> + 'f;

/// One H.264 decoder: parser + NVDEC decoder, reused across a stream's segments.
pub struct NvDecoder {
    api: Arc<CuvidApi>,
    ctx: Arc<DeviceContext>,
    parser: cuvid::CUvideoparser,
    cb: Box<Callbacks>,
}

// SAFETY: the handles may be used from any thread with the context current there (every call
// binds it); all calls go through `&mut self`, so they never overlap; the context is shared
// through an `Arc` of a `Send + Sync` type.
unsafe impl Send for NvDecoder {}

impl std::fmt::Debug for NvDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvDecoder")
            .field("format", &self.format())
            .field("decoded", &self.cb.pictures_decoded)
            .finish_non_exhaustive()
    }
}

impl NvDecoder {
    /// A parser for H.264 with a 90 kHz clock on `ctx`; pictures are mapped on its stream.
    pub fn new(api: Arc<CuvidApi>, ctx: &Arc<DeviceContext>) -> Result<NvDecoder, CudaError> {
        let mut cb = Box::new(Callbacks {
            api: api.clone(),
            ctx: ctx.clone(),
            decoder: None,
            retired: Vec::new(),
            display: VecDeque::new(),
            error: None,
            pictures_decoded: 0,
        });
        // SAFETY: CUVIDPARSERPARAMS's enum (codec) has a zero value; reserved fields must be zero.
        let mut p: cuvid::CUVIDPARSERPARAMS = unsafe { std::mem::zeroed() };
        p.CodecType = dec::cudaVideoCodec::cudaVideoCodec_H264;
        p.ulMaxNumDecodeSurfaces = 1; // the sequence callback returns the real number
        p.ulClockRate = 90_000;
        p.ulMaxDisplayDelay = 0; // low latency: pictures are displayed as soon as order allows
        p.pUserData = (&mut *cb as *mut Callbacks).cast();
        p.pfnSequenceCallback = Some(on_sequence);
        p.pfnDecodePicture = Some(on_decode);
        p.pfnDisplayPicture = Some(on_display);
        // SAFETY: `cb` is boxed, so the user-data address stays valid until the parser is
        // destroyed in Drop (before `cb` is freed).
        let parser = unsafe { result::create_parser(&api, &mut p) }?;
        Ok(NvDecoder { api, ctx: ctx.clone(), parser, cb })
    }

    /// The stream's format once the first sequence header was parsed.
    pub fn format(&self) -> Option<VideoFormat> {
        self.cb.decoder.as_ref().map(|d| d.format)
    }

    /// Pictures decoded so far.
    pub fn pictures_decoded(&self) -> u64 {
        self.cb.pictures_decoded
    }

    /// Feeds one access unit (Annex B) with its PTS; each picture that becomes displayable is
    /// mapped and lent to `out`, then unmapped when `out` returns.
    pub fn push(&mut self, au: &[u8], pts: i64, out: &mut OnFrame<'_>) -> Result<(), CudaError> {
        // The sequence callback creates (and destroys) decoders, and pictures are mapped, with
        // the context pushed (NvDecoder::HandleVideoSequence / HandlePictureDisplay push it).
        let ctx = self.ctx.clone();
        let _current = ctx.push()?;
        let flags = cuvid::CUvideopacketflags::CUVID_PKT_TIMESTAMP as c_ulong
            | cuvid::CUvideopacketflags::CUVID_PKT_ENDOFPICTURE as c_ulong;
        self.parse(au, flags, pts)?;
        self.deliver(out)
    }

    /// End of a segment: the parser releases every picture it still holds.
    pub fn flush(&mut self, out: &mut OnFrame<'_>) -> Result<(), CudaError> {
        let ctx = self.ctx.clone();
        let _current = ctx.push()?;
        self.parse(&[], cuvid::CUvideopacketflags::CUVID_PKT_ENDOFSTREAM as c_ulong, 0)?;
        self.deliver(out)
    }

    fn parse(&mut self, data: &[u8], flags: c_ulong, pts: i64) -> Result<(), CudaError> {
        // SAFETY: CUVIDSOURCEDATAPACKET is plain data (no enums).
        let mut pkt: cuvid::CUVIDSOURCEDATAPACKET = unsafe { std::mem::zeroed() };
        pkt.flags = flags;
        pkt.payload_size = data.len() as c_ulong;
        pkt.payload = if data.is_empty() { std::ptr::null() } else { data.as_ptr() };
        pkt.timestamp = pts;
        // SAFETY: a live parser; callbacks run inside this call on `self.cb`, which nothing else
        // borrows now (`&mut self`).
        let parsed = unsafe { result::parse_video_data(&self.api, self.parser, &mut pkt) };
        if let Some(e) = self.cb.error.take() {
            self.cb.display.clear();
            self.cb.retired.clear();
            return Err(e);
        }
        parsed
    }

    fn deliver(&mut self, out: &mut OnFrame<'_>) -> Result<(), CudaError> {
        let Callbacks { decoder, retired, display, .. } = &mut *self.cb;
        let mut r = Ok(());
        while let Some((index, pts, made_by)) = display.pop_front() {
            // Each picture is mapped on the decoder that decoded it (NvDecoder maps in the display
            // callback, before a later sequence callback can replace the decoder).
            let Some(d) = decoder.iter().chain(retired.iter()).find(|d| d.handle as usize == made_by) else {
                continue; // displayed before any decoder existed: nothing to map
            };
            r = d.map(index, pts).and_then(|frame| {
                let r = out(&frame);
                let unmapped = frame.unmap();
                r.and(unmapped)
            });
            if r.is_err() {
                display.clear();
                break;
            }
        }
        // Every picture of a replaced decoder has been delivered (or dropped): release it.
        retired.clear();
        r
    }
}

impl Drop for NvDecoder {
    /// The parser first (it calls back into the decoder's state), then the decoder, both with
    /// the context bound; failures are recorded on it.
    fn drop(&mut self) {
        let ctx = self.ctx.clone();
        let _current = ctx.push_for_release();
        // SAFETY: the parser came from cuvidCreateVideoParser and is destroyed once, before the
        // callbacks' state it points at.
        self.ctx.record_release(unsafe { result::destroy_parser(&self.api, self.parser) });
        self.cb.decoder = None;
        self.cb.retired.clear();
    }
}

#[cfg(test)]
pub(crate) mod fake;

#[cfg(test)]
mod tests;
