//! NVRTC at run time, whichever major the host has: the fallback for GPUs with no embedded cubin
//! (architectures after sm_90) and for builds made without the NVIDIA compilers. cudarc's NVRTC
//! loader looks only for its own major's names (`libnvrtc.so.12`), and GPU hosts often have only
//! the driver, or CUDA 13's `libnvrtc.so.13`; this loads the first of `libnvrtc.so.13`,
//! `libnvrtc.so.12`, `libnvrtc.so` and calls the handful of entry points whose C signatures are
//! the same in both majors (nvrtc.h). A host with none gets a typed `NoDriver`, never a panic.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::OnceLock;

use super::error::CudaError;

/// The library names tried, newest major first.
const CANDIDATES: [&str; 3] = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"];

type Program = *mut c_void;
type CreateFn = unsafe extern "C" fn(
    *mut Program,
    *const c_char,
    *const c_char,
    c_int,
    *const *const c_char,
    *const *const c_char,
) -> c_int;
type CompileFn = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> c_int;
type SizeFn = unsafe extern "C" fn(Program, *mut usize) -> c_int;
type GetFn = unsafe extern "C" fn(Program, *mut c_char) -> c_int;
type DestroyFn = unsafe extern "C" fn(*mut Program) -> c_int;
type VersionFn = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;

struct Nvrtc {
    name: &'static str,
    version: (c_int, c_int),
    create: CreateFn,
    compile: CompileFn,
    ptx_size: SizeFn,
    ptx: GetFn,
    log_size: SizeFn,
    log: GetFn,
    destroy: DestroyFn,
    /// Keeps the entry points mapped (for the whole process: the value is never dropped).
    _lib: libloading::Library,
}

fn load() -> Result<&'static Nvrtc, CudaError> {
    static LOADED: OnceLock<Result<Nvrtc, String>> = OnceLock::new();
    let loaded = LOADED.get_or_init(|| {
        let mut tried = Vec::new();
        for name in CANDIDATES {
            // SAFETY: loading NVRTC runs its initialisers, which have no preconditions on our side.
            match unsafe { libloading::Library::new(name) } {
                // SAFETY: the symbols have these C signatures in nvrtc.h (CUDA 12 and 13); the
                // pointers are used only while `lib` lives (it is kept in the value).
                Ok(lib) => return unsafe { resolve(name, lib) },
                Err(e) => tried.push(format!("{name}: {e}")),
            }
        }
        Err(format!("none found by the dynamic loader ({})", tried.join("; ")))
    });
    loaded.as_ref().map_err(|why| CudaError::NoDriver { lib: "libnvrtc.so (13 or 12)", why: why.clone() })
}

/// # Safety
/// `lib` is an NVRTC library whose exports have nvrtc.h's signatures.
unsafe fn resolve(name: &'static str, lib: libloading::Library) -> Result<Nvrtc, String> {
    macro_rules! sym {
        ($s:literal) => {
            // SAFETY: the caller's contract.
            *unsafe { lib.get(concat!($s, "\0").as_bytes()) }.map_err(|e| format!("{name}: {}: {e}", $s))?
        };
    }
    let version_fn: VersionFn = sym!("nvrtcVersion");
    let mut version = (0, 0);
    // SAFETY: valid out-pointers for the call.
    unsafe { version_fn(&mut version.0, &mut version.1) };
    Ok(Nvrtc {
        name,
        version,
        create: sym!("nvrtcCreateProgram"),
        compile: sym!("nvrtcCompileProgram"),
        ptx_size: sym!("nvrtcGetPTXSize"),
        ptx: sym!("nvrtcGetPTX"),
        log_size: sym!("nvrtcGetProgramLogSize"),
        log: sym!("nvrtcGetProgramLog"),
        destroy: sym!("nvrtcDestroyProgram"),
        _lib: lib,
    })
}

/// Which NVRTC this host has ("libnvrtc.so.13 (NVRTC 13.0)"), or why none.
pub fn describe() -> Result<String, CudaError> {
    load().map(|n| format!("{} (NVRTC {}.{})", n.name, n.version.0, n.version.1))
}

/// Compiles `source` (named `name`) to PTX with `options`; the log is part of a failure.
pub fn compile_ptx(source: &str, name: &str, options: &[String]) -> Result<String, CudaError> {
    let n = load()?;
    let fail = |what: &str, st: c_int| CudaError::Nvrtc(format!("{what}: status {st} ({})", n.name));
    let src = CString::new(source).map_err(|_| CudaError::Nvrtc("a NUL in the kernel source".into()))?;
    let cname = CString::new(name).map_err(|_| CudaError::Nvrtc("a NUL in the program name".into()))?;
    let opts: Vec<CString> = options
        .iter()
        .map(|o| CString::new(o.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| CudaError::Nvrtc("a NUL in an option".into()))?;
    let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
    let mut prog: Program = std::ptr::null_mut();
    // SAFETY: valid C strings for the call; no headers.
    let st = unsafe { (n.create)(&mut prog, src.as_ptr(), cname.as_ptr(), 0, std::ptr::null(), std::ptr::null()) };
    if st != 0 {
        return Err(fail("nvrtcCreateProgram", st));
    }
    // SAFETY: a program just created; `opt_ptrs` points to live C strings for the call.
    let compiled = unsafe { (n.compile)(prog, opt_ptrs.len() as c_int, opt_ptrs.as_ptr()) };
    // SAFETY: the program is live; each buffer has the size NVRTC reported (its NUL included).
    let text = |size: SizeFn, get: GetFn| unsafe {
        let mut len = 0usize;
        if size(prog, &mut len) != 0 || len == 0 {
            return String::new();
        }
        let mut buf = vec![0 as c_char; len];
        if get(prog, buf.as_mut_ptr()) != 0 {
            return String::new();
        }
        CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
    };
    let result = if compiled != 0 {
        Err(CudaError::Nvrtc(format!(
            "nvrtcCompileProgram: status {compiled} ({}):\n{}",
            n.name,
            text(n.log_size, n.log)
        )))
    } else {
        let ptx = text(n.ptx_size, n.ptx);
        if ptx.is_empty() { Err(CudaError::Nvrtc(format!("nvrtcGetPTX gave nothing ({})", n.name))) } else { Ok(ptx) }
    };
    // SAFETY: destroyed once; nothing borrows it any more.
    unsafe { (n.destroy)(&mut prog) };
    result
}
