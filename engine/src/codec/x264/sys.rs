//! libx264's C interface for `X264_BUILD` 164 (Debian's `libx264-164`), written by hand from
//! its `x264.h`, and the library opened at run time (`dlopen`, as the CUDA backend opens
//! NVIDIA's): nothing of x264 is linked, so a build without it runs without it.
//!
//! x264 names its open function after the build (`x264_encoder_open_164`): finding that
//! symbol is what proves the library's structures are the ones declared here. A library of
//! another build is refused by name, never called.
//!
//! `x264_param_t` (1024 bytes, 8-aligned in build 164: `sizeof` from a C program with x264.h)
//! is only ever touched through x264's own functions, so here it is an opaque buffer, larger
//! and more aligned than that. `x264_picture_t` and `x264_nal_t` are read and written field by
//! field: their layouts are checked against the C compiler's in the tests below.

use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

/// The build whose structures this file declares.
pub const X264_BUILD: u32 = 164;
/// The library file of that build (Debian's `libx264-164`).
pub const DEFAULT_LIB: &str = "libx264.so.164";
/// Overrides the library to open (a file name or a path); tests point it at a file that does
/// not exist to take the "x264 absent" path on a machine that has x264.
pub const LIB_ENV: &str = "ZEROHOP_X264_LIB";

pub const X264_CSP_I420: c_int = 0x0002;
pub const X264_TYPE_AUTO: c_int = 0x0000;
pub const X264_TYPE_IDR: c_int = 0x0001;

/// Opaque `x264_t`.
#[repr(C)]
#[derive(Debug)]
pub struct X264T {
    _private: [u8; 0],
}

/// `x264_param_t`: 1024 bytes in build 164, held in twice that, 16-aligned (see the module
/// documentation); only x264's functions read or write it.
#[repr(C, align(16))]
pub struct X264Param {
    bytes: [u8; 2048],
}

/// Offsets in `x264_param_t` (build 164) of the fields `x264_param_parse` cannot set
/// (`offsetof` from a C program with x264.h; every one an `int` or `uint32_t`).
const PARAM_I_WIDTH: usize = 28;
const PARAM_I_HEIGHT: usize = 32;
const PARAM_I_CSP: usize = 36;

// x264_param_t is 1024 bytes, 8-aligned, in build 164 (sizeof/alignof from a C program with
// x264.h): the buffer holds it, and the fields written directly lie inside it (where they lie is
// checked by encoding: codec::open's tests decode pictures of the size set).
const _: () = assert!(
    std::mem::size_of::<X264Param>() >= 1024 && std::mem::align_of::<X264Param>() >= 8 && PARAM_I_CSP + 4 <= 1024
);

impl std::fmt::Debug for X264Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("x264_param_t")
    }
}

impl X264Param {
    /// An all-zero buffer, for `x264_param_default_preset` to fill.
    pub fn zeroed() -> Box<X264Param> {
        Box::new(X264Param { bytes: [0; 2048] })
    }

    fn put(&mut self, offset: usize, v: u32) {
        self.bytes[offset..offset + 4].copy_from_slice(&v.to_ne_bytes());
    }

    /// `i_width`, `i_height` and `i_csp` (I420).
    pub fn set_picture(&mut self, width: u32, height: u32) {
        self.put(PARAM_I_WIDTH, width);
        self.put(PARAM_I_HEIGHT, height);
        self.put(PARAM_I_CSP, X264_CSP_I420 as u32);
    }
}

/// `x264_nal_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct X264Nal {
    pub i_ref_idc: c_int,
    pub i_type: c_int,
    pub b_long_startcode: c_int,
    pub i_first_mb: c_int,
    pub i_last_mb: c_int,
    /// Bytes of `p_payload` (Annex B, start code included).
    pub i_payload: c_int,
    pub p_payload: *mut u8,
    pub i_padding: c_int,
}

/// `x264_image_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct X264Image {
    pub i_csp: c_int,
    pub i_plane: c_int,
    pub i_stride: [c_int; 4],
    pub plane: [*mut u8; 4],
}

/// `x264_image_properties_t`: not used; its layout only places the fields after it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct X264ImageProperties {
    pub quant_offsets: *mut f32,
    pub quant_offsets_free: Option<unsafe extern "C" fn(*mut c_void)>,
    pub mb_info: *mut u8,
    pub mb_info_free: Option<unsafe extern "C" fn(*mut c_void)>,
    pub f_ssim: f64,
    pub f_psnr_avg: f64,
    pub f_psnr: [f64; 3],
    pub f_crf_avg: f64,
}

/// `x264_hrd_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct X264Hrd {
    pub cpb_initial_arrival_time: f64,
    pub cpb_final_arrival_time: f64,
    pub cpb_removal_time: f64,
    pub dpb_output_time: f64,
}

/// `x264_sei_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct X264Sei {
    pub num_payloads: c_int,
    pub payloads: *mut c_void,
    pub sei_free: Option<unsafe extern "C" fn(*mut c_void)>,
}

/// `x264_picture_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct X264Picture {
    /// In: `X264_TYPE_IDR` forces an IDR, `X264_TYPE_AUTO` lets x264 choose.
    pub i_type: c_int,
    pub i_qpplus1: c_int,
    pub i_pic_struct: c_int,
    /// Out: whether the picture is a keyframe.
    pub b_keyframe: c_int,
    pub i_pts: i64,
    pub i_dts: i64,
    pub param: *mut X264Param,
    pub img: X264Image,
    pub prop: X264ImageProperties,
    pub hrd_timing: X264Hrd,
    pub extra_sei: X264Sei,
    pub opaque: *mut c_void,
}

type ParamDefaultPreset = unsafe extern "C" fn(*mut X264Param, *const c_char, *const c_char) -> c_int;
type ParamParse = unsafe extern "C" fn(*mut X264Param, *const c_char, *const c_char) -> c_int;
type ParamApplyProfile = unsafe extern "C" fn(*mut X264Param, *const c_char) -> c_int;
type PictureInit = unsafe extern "C" fn(*mut X264Picture);
type EncoderOpen = unsafe extern "C" fn(*mut X264Param) -> *mut X264T;
type EncoderReconfig = unsafe extern "C" fn(*mut X264T, *mut X264Param) -> c_int;
type EncoderEncode =
    unsafe extern "C" fn(*mut X264T, *mut *mut X264Nal, *mut c_int, *mut X264Picture, *mut X264Picture) -> c_int;
type EncoderDelayedFrames = unsafe extern "C" fn(*mut X264T) -> c_int;
type EncoderClose = unsafe extern "C" fn(*mut X264T);

/// libx264, opened, with the entry points zerohop calls.
pub struct Library {
    pub param_default_preset: ParamDefaultPreset,
    pub param_parse: ParamParse,
    pub param_apply_profile: ParamApplyProfile,
    pub picture_init: PictureInit,
    pub encoder_open: EncoderOpen,
    pub encoder_reconfig: EncoderReconfig,
    pub encoder_encode: EncoderEncode,
    pub encoder_delayed_frames: EncoderDelayedFrames,
    pub encoder_close: EncoderClose,
    /// What was opened (the name or path asked for).
    pub name: String,
    /// Keeps the code behind the pointers above mapped.
    _lib: libloading::Library,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("x264::Library").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Why libx264 cannot be used: the library tried (the name or path asked for) and what was
/// wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {why}")]
pub struct LoadError {
    pub name: String,
    pub why: LoadFailure,
}

/// What was wrong with the library tried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadFailure {
    /// The dynamic loader could not open it (its words).
    #[error("could not be opened ({0})")]
    NotFound(String),
    /// Another libx264 build: its entry points have other layouts.
    #[error("is libx264 build {0}, but zerohop has bindings for build {X264_BUILD}")]
    OtherBuild(u32),
    /// Not libx264, or a broken one.
    #[error("no {symbol} ({detail}): not a usable libx264 build {X264_BUILD}")]
    Missing { symbol: &'static str, detail: String },
}

impl LoadError {
    pub fn new(name: &str, why: LoadFailure) -> LoadError {
        LoadError { name: name.into(), why }
    }
}

impl Library {
    /// Opens `name` (a file name the dynamic loader searches for, or a path) and resolves the
    /// entry points of build [`X264_BUILD`].
    pub fn open(name: &str) -> Result<Library, LoadError> {
        // SAFETY: loading libx264 runs its initialisers, which only set up x264's own static
        // tables (no threads, no handlers); the library stays loaded while `Library` lives.
        let lib = unsafe { libloading::Library::new(name) }
            .map_err(|e| LoadError::new(name, LoadFailure::NotFound(e.to_string())))?;
        let open_symbol = format!("x264_encoder_open_{X264_BUILD}");
        // SAFETY: the symbol is looked up, not called; its type is checked by the build
        // number in its name (x264.h: "x264_encoder_open_##X264_BUILD").
        let encoder_open = unsafe { lib.get::<EncoderOpen>(open_symbol.as_bytes()) }.map(|s| *s);
        let Ok(encoder_open) = encoder_open else {
            let why = match other_build(&lib) {
                Some(found) => LoadFailure::OtherBuild(found),
                None => {
                    LoadFailure::Missing { symbol: "x264_encoder_open_<build>", detail: "not a libx264 at all".into() }
                }
            };
            return Err(LoadError::new(name, why));
        };
        macro_rules! get {
            ($symbol:literal) => {
                // SAFETY: a build-164 library (its open symbol says so) exports this function
                // with the signature declared above, from that build's x264.h.
                *unsafe { lib.get(concat!($symbol, "\0").as_bytes()) }.map_err(|e: libloading::Error| {
                    LoadError::new(name, LoadFailure::Missing { symbol: $symbol, detail: e.to_string() })
                })?
            };
        }
        Ok(Library {
            param_default_preset: get!("x264_param_default_preset"),
            param_parse: get!("x264_param_parse"),
            param_apply_profile: get!("x264_param_apply_profile"),
            picture_init: get!("x264_picture_init"),
            encoder_open,
            encoder_reconfig: get!("x264_encoder_reconfig"),
            encoder_encode: get!("x264_encoder_encode"),
            encoder_delayed_frames: get!("x264_encoder_delayed_frames"),
            encoder_close: get!("x264_encoder_close"),
            name: name.into(),
            _lib: lib,
        })
    }
}

/// The build of a libx264 that lacks build 164's open symbol, if it has another's.
fn other_build(lib: &libloading::Library) -> Option<u32> {
    (100..400).find(|b| {
        let symbol = format!("x264_encoder_open_{b}");
        // SAFETY: looked up only, never called.
        unsafe { lib.get::<*const c_void>(symbol.as_bytes()) }.is_ok()
    })
}

/// The library name to open: `ZEROHOP_X264_LIB`, or [`DEFAULT_LIB`].
pub fn library_name() -> String {
    std::env::var(LIB_ENV).ok().filter(|s| !s.is_empty()).unwrap_or_else(|| DEFAULT_LIB.to_string())
}

/// The process's libx264, opened once (from [`library_name`] at the first call).
pub fn library() -> Result<&'static Library, LoadError> {
    static LIB: OnceLock<Result<Library, LoadError>> = OnceLock::new();
    LIB.get_or_init(|| Library::open(&library_name())).as_ref().map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    /// Sizes and offsets as x264.h (build 164) gives them on x86-64 and aarch64 Linux
    /// (`sizeof`/`offsetof` printed by a C program including it).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn layouts_match_x264_h_of_build_164() {
        assert_eq!(size_of::<X264Nal>(), 40);
        assert_eq!(offset_of!(X264Nal, i_type), 4);
        assert_eq!(offset_of!(X264Nal, i_payload), 20);
        assert_eq!(offset_of!(X264Nal, p_payload), 24);
        assert_eq!(offset_of!(X264Nal, i_padding), 32);
        assert_eq!(size_of::<X264Image>(), 56);
        assert_eq!(offset_of!(X264Image, i_stride), 8);
        assert_eq!(offset_of!(X264Image, plane), 24);
        assert_eq!(size_of::<X264ImageProperties>(), 80);
        assert_eq!(size_of::<X264Hrd>(), 32);
        assert_eq!(size_of::<X264Sei>(), 24);
        assert_eq!(size_of::<X264Picture>(), 240);
        assert_eq!(offset_of!(X264Picture, i_type), 0);
        assert_eq!(offset_of!(X264Picture, b_keyframe), 12);
        assert_eq!(offset_of!(X264Picture, i_pts), 16);
        assert_eq!(offset_of!(X264Picture, i_dts), 24);
        assert_eq!(offset_of!(X264Picture, param), 32);
        assert_eq!(offset_of!(X264Picture, img), 40);
        assert_eq!(offset_of!(X264Picture, prop), 96);
        assert_eq!(offset_of!(X264Picture, hrd_timing), 176);
        assert_eq!(offset_of!(X264Picture, extra_sei), 208);
        assert_eq!(offset_of!(X264Picture, opaque), 232);
    }

    #[test]
    fn a_library_that_does_not_exist_is_an_error_naming_it() {
        let e = Library::open("/nonexistent/libx264.so.164").expect_err("no such file");
        assert!(matches!(e.why, LoadFailure::NotFound(_)), "{e}");
        assert!(e.to_string().contains("/nonexistent/libx264.so.164"), "{e}");
    }

    #[test]
    fn a_library_without_x264_symbols_is_refused() {
        // libc is on every Linux machine and has no x264_encoder_open_<build>.
        let e = Library::open("libc.so.6").expect_err("libc is not libx264");
        assert!(matches!(e.why, LoadFailure::Missing { .. } | LoadFailure::NotFound(_)), "{e}");
    }
}
