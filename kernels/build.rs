//! Builds the kernels for the CPU (the emulation header runs the grid as loops) so `cargo test`
//! checks the very source the GPU runs, and embeds PTX when nvcc is at hand (NVCC or PATH);
//! without nvcc the CUDA source is compiled by NVRTC at run time. `zerohop --version` says which.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=scale_ladder.cu");
    println!("cargo:rerun-if-changed=emu/cuda_emu.h");
    println!("cargo:rerun-if-changed=emu/launch.cpp");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rustc-check-cfg=cfg(zh_ptx)");

    // The CPU build: no FMA contraction, so float results are those of the source as written
    // (NVRTC gets --fmad=false for the same reason).
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .file("emu/launch.cpp")
        .flag_if_supported("-ffp-contract=off")
        .flag_if_supported("-fno-fast-math")
        .opt_level(2)
        .warnings(true);
    // The kernel's explicit fmaf: one instruction where the building CPU has FMA (the same
    // single rounding as the software fmaf, so results are identical, about 4x faster); the
    // emulation only runs in tests on the machine that builds it.
    if host_has_fma() {
        build.flag_if_supported("-mfma");
    }
    build.compile("zerohop_kernels_emu");

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    let ptx = out.join("scale_ladder.ptx");
    let built = Command::new(&nvcc)
        .args(["-ptx", "-arch=compute_75", "--fmad=false", "-std=c++17", "-o"])
        .arg(&ptx)
        .arg("scale_ladder.cu")
        .status()
        .is_ok_and(|s| s.success());
    // Without nvcc (the usual case here) the source is embedded and NVRTC compiles it at run time.
    if built {
        println!("cargo:rustc-cfg=zh_ptx");
    }
}

/// Whether the CPU running this build (and, natively, the tests) has FMA.
fn host_has_fma() -> bool {
    let same = std::env::var("TARGET").ok() == std::env::var("HOST").ok();
    #[cfg(target_arch = "x86_64")]
    let fma = std::arch::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    let fma = false;
    same && fma
}
